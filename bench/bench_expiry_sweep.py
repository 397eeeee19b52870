"""Time the expiry sweep over N due grants on PostgreSQL, against a plain SQL UPDATE of the same rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_bench \
    DJANGO_SETTINGS_MODULE=portal.settings.dev .venv/bin/python bench/bench_expiry_sweep.py --grants 100000

The database is migrated and its inventory tables emptied first: use a database of its own.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

SETUP = """
TRUNCATE governance_grant, governance_historicalgrant, audit_outboxmessage, jit_heartbeat RESTART IDENTITY CASCADE;
SET LOCAL session_replication_role = replica;
"""


def seed(n: int) -> None:
    """n due grants: identities x entitlements, all active and expired a minute ago (pure SQL: fast)."""
    per = 100
    identities = (n + per - 1) // per
    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM governance_identity WHERE name LIKE 'bench-%%'")
        if c.fetchone()[0] < identities + 1:
            c.execute(
                "INSERT INTO governance_identity (name, kind, status, email, team, description, credential_type,"
                " secret_location, may_self_request, created_at, updated_at)"
                " SELECT 'bench-' || g, 'human', 'active', '', 'bench', '', '', '', false, now(), now()"
                " FROM generate_series(0, %s) g",
                [identities],
            )
            c.execute("SELECT min(id) FROM governance_identity WHERE name LIKE 'bench-%%'")
            owner = c.fetchone()[0]
            c.execute(
                "INSERT INTO governance_system (name, description, owner_id, criticality, connector, connector_settings,"
                " status, created_at, updated_at) VALUES ('bench-system', '', %s, 'low', 'manual', '{}', 'active', now(), now())"
                " ON CONFLICT DO NOTHING",
                [owner],
            )
            c.execute("SELECT id FROM governance_system WHERE name = 'bench-system' AND status = 'active'")
            system = c.fetchone()[0]
            c.execute(
                "INSERT INTO governance_entitlement (system_id, name, owner_id, business_purpose, risk_tier, requestable,"
                " approval_stages, auto_approve_machines, break_glass_eligible, justification_required, ticket_required,"
                " allowed_identity_kinds, review_cadence_days, status, created_at, updated_at, auto_approve_kinds,"
                " auto_approve_max_risk, auto_approve_max_finding_severity, auto_approve_intent_fields)"
                " SELECT %s, 'bench-' || g, %s, '', 'low', true, '[]', false, false, true, false, '[]', 90, 'active', now(), now(),"
                " '[]', 'low', 'medium', '[]'"
                " FROM generate_series(1, %s) g",
                [system, owner, per],
            )
        c.execute(SETUP)
        c.execute(
            "INSERT INTO governance_grant (identity_id, entitlement_id, kind, status, granted_at, expires_at, reason,"
            " end_reason, no_renew, connector_reference, last_error, created_at, updated_at)"
            " SELECT i.id, e.id, 'jit', 'active', now() - interval '2 hours', now() - interval '1 minute', '', '', false,"
            " '', '', now(), now()"
            " FROM (SELECT id FROM governance_identity WHERE name LIKE 'bench-%%' ORDER BY id LIMIT %s) i"
            " CROSS JOIN (SELECT id FROM governance_entitlement WHERE name LIKE 'bench-%%' ORDER BY id LIMIT %s) e"
            " LIMIT %s",
            [identities, per, n],
        )
        c.execute("ANALYZE governance_grant")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grants", type=int, default=100_000)
    args = parser.parse_args()
    assert connection.vendor == "postgresql", "run against PostgreSQL (DATABASE_URL)"
    call_command("migrate", verbosity=0)

    from django.db import transaction

    from jit.services.expiry import grants_expire_due

    with transaction.atomic():
        seed(args.grants)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as c:
        c.execute(
            "UPDATE governance_grant SET status = 'revoking', end_reason = 'expired', updated_at = now()"
            " WHERE status = 'active' AND expires_at <= now()"
        )
        plain_rows = c.rowcount
    plain = time.perf_counter() - started

    with transaction.atomic():
        seed(args.grants)
    started = time.perf_counter()
    swept = grants_expire_due()
    sweep = time.perf_counter() - started
    print(f"plain SQL UPDATE: {plain_rows} rows in {plain:.2f} s")
    print(f"expiry sweep:     {swept} grants in {sweep:.2f} s (batches of 1000, audit chain + outbox rows)")
    print(f"ratio:            {sweep / plain:.1f}x the plain UPDATE")


if __name__ == "__main__":
    main()
