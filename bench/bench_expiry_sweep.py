"""Time the expiry sweep over N due grants on PostgreSQL, against a plain SQL UPDATE of the same rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_bench \
    DJANGO_SETTINGS_MODULE=portal.settings.dev .venv/bin/python bench/bench_expiry_sweep.py --grants 100000

The database is migrated and its inventory tables emptied first: use a database of its own.

`--trail-events N` first tops the audit trail up to N events, as a portal's trail looks after a while
(see `fill_trail`). Before the floor and before the sweep: VACUUM ANALYZE and CHECKPOINT, so each is
timed on a settled database, not during the load's autovacuum and checkpoint. The trail cannot be
emptied (append-only): compare a fresh database against one filled to 1,000,000 (each sweep adds N
events). `--rounds R` times floor and sweep R times (the machine is shared): medians, and the ratio's
median, min and max.
"""

import argparse
import os
import random
import statistics
import sys
import time
import uuid
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


TRAIL_CHUNK = 20_000  # events per COPY (one transaction) while filling the trail


def _trail_group(rng: random.Random, grants: int, identities: list[int], entitlements: list[int]) -> list:
    """The events of one web request or task (one correlation id): what a portal's trail is made of."""
    from audit.choices import AuditAction as A
    from audit.services import EventSpec, Target

    roll = rng.random()
    if roll < 0.3:  # a sign-in
        user = rng.randint(1, 2_000)
        return [EventSpec(A.USER_LOGGED_IN, Target("auth.user", str(user), f"user{user}"))]
    if roll < 0.75:  # a grant's life: created and activated, warned, used, expiring, revoked
        grant = rng.randint(1, grants)
        target = Target("governance.grant", str(grant), f"Grant #{grant}")
        data = {"identity": rng.choice(identities), "entitlement": rng.choice(entitlements)}
        actions = rng.choice(
            [
                [A.GRANT_CREATED, A.GRANT_ACTIVATED],
                [A.GRANT_EXPIRY_WARNED],
                [A.GRANT_USAGE_RECORDED],
                [A.GRANT_EXPIRING],
                [A.GRANT_REVOKED],
                [A.GRANT_EXPIRED],
            ]
        )
        return [EventSpec(action, target, data) for action in actions]
    if roll < 0.92:  # a request: submitted, approved, activated
        request = rng.randint(1, grants)
        target = Target("jit.accessrequest", str(request), f"Request #{request}")
        actions = rng.choice(
            [[A.REQUEST_SUBMITTED], [A.REQUEST_STAGE_APPROVED, A.REQUEST_APPROVED], [A.REQUEST_ACTIVATED]]
        )
        return [EventSpec(action, target, {"entitlement": rng.choice(entitlements)}) for action in actions]
    identity = rng.choice(identities)  # an identity changed by an import or an owner
    return [
        EventSpec(
            rng.choice([A.IDENTITY_UPDATED, A.IDENTITY_MOVED]),
            Target("governance.identity", str(identity), f"bench-{identity}"),
            {"before": {"team": "Ops"}, "after": {"team": "Platform"}},
        )
    ]


def fill_trail(events: int, grants: int) -> int:
    """Top the trail up to `events` through the real writer (hashed, chained, one COPY per chunk).

    Mixed actions and targets over the bench's grants, requests and identities, one correlation id
    per web request or task (a group of 1 to 2 events), so every audit index grows as on a real
    portal. The chain head is the writer's own: the sweep reads it as it would on that portal.
    """
    from audit.context import clear_context, set_context
    from audit.models import AuditEvent
    from audit.services import Actor, audit_events_record_many, state_change

    missing = events - AuditEvent.objects.count()
    if missing <= 0:
        return 0
    with connection.cursor() as c:
        c.execute("SELECT id FROM governance_identity WHERE name LIKE 'bench-%%' ORDER BY id")
        identities = [row[0] for row in c.fetchall()]
        c.execute("SELECT id FROM governance_entitlement WHERE name LIKE 'bench-%%' ORDER BY id")
        entitlements = [row[0] for row in c.fetchall()]
    rng = random.Random(17)

    @state_change
    def write_chunk(size: int) -> int:
        written = 0
        while written < size:
            set_context(correlation_id=uuid.UUID(int=rng.getrandbits(128)).hex, channel=rng.choice(["web", "task"]))
            group = _trail_group(rng, grants, identities, entitlements)
            audit_events_record_many(actor=Actor.system(), events=group)
            written += len(group)
        return written

    written = 0
    try:
        while written < missing:
            written += write_chunk(min(TRAIL_CHUNK, missing - written))
            if written % 200_000 < TRAIL_CHUNK:
                print(f"  trail: {written:,} / {missing:,} events written", flush=True)
    finally:
        clear_context()
    return written


def settle() -> None:
    """What a settled database has: statistics, the visibility map, and no dirty pages left to flush."""
    with connection.cursor() as c:
        c.execute("VACUUM ANALYZE")
        c.execute("CHECKPOINT")


def cpu_seconds() -> float | None:
    """CPU time of this process and of its database backend (None when the server is not on this machine).

    Unlike wall time, it hardly moves with what other processes do on the machine: the steadier ratio.
    """
    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        pid = c.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return time.process_time() + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--trail-events", type=int, default=0, help="top the audit trail up to N events first")
    parser.add_argument("--rounds", type=int, default=1, help="time floor and sweep N times; medians")
    args = parser.parse_args()
    assert connection.vendor == "postgresql", "run against PostgreSQL (DATABASE_URL)"
    call_command("migrate", verbosity=0)

    from django.db import transaction

    from audit.models import AuditEvent
    from jit.services.expiry import grants_expire_due

    with transaction.atomic():
        seed(args.grants)
    if args.trail_events:
        started = time.perf_counter()
        made = fill_trail(args.trail_events, args.grants)
        print(f"trail: wrote {made:,} events in {time.perf_counter() - started:.0f} s")
    print(f"audit trail:      {AuditEvent.objects.count():,} events before the sweep (each round adds {args.grants:,})")
    plains, sweeps, cpu = [], [], []
    for round_ in range(1, args.rounds + 1):
        with transaction.atomic():
            seed(args.grants)
        settle()
        cpu_started, started = cpu_seconds(), time.perf_counter()
        with transaction.atomic(), connection.cursor() as c:
            c.execute(
                "UPDATE governance_grant SET status = 'revoking', end_reason = 'expired', updated_at = now()"
                " WHERE status = 'active' AND expires_at <= now()"
            )
            plain_rows = c.rowcount
        plains.append(time.perf_counter() - started)
        plain_cpu = cpu_seconds()

        with transaction.atomic():
            seed(args.grants)
        settle()
        sweep_started, started = cpu_seconds(), time.perf_counter()
        swept = grants_expire_due()
        sweeps.append(time.perf_counter() - started)
        if cpu_started is not None:
            cpu.append((plain_cpu - cpu_started, cpu_seconds() - sweep_started))
        if args.rounds > 1:
            print(
                f"round {round_}: UPDATE {plains[-1]:.2f} s, sweep {sweeps[-1]:.2f} s, {sweeps[-1] / plains[-1]:.1f}x"
            )
    ratios = sorted(sweep / plain for sweep, plain in zip(sweeps, plains, strict=True))
    print(f"plain SQL UPDATE: {plain_rows} rows in {statistics.median(plains):.2f} s")
    print(
        f"expiry sweep:     {swept} grants in {statistics.median(sweeps):.2f} s (batches of 1000, audit chain + outbox rows)"
    )
    spread = f" (min {ratios[0]:.1f}x, max {ratios[-1]:.1f}x over {len(ratios)} rounds)" if len(ratios) > 1 else ""
    print(f"ratio:            {statistics.median(ratios):.1f}x the plain UPDATE{spread}")
    if cpu:
        plain_cpu, sweep_cpu = (statistics.median(times) for times in zip(*cpu, strict=True))
        print(
            f"cpu (this process and its backend): UPDATE {plain_cpu:.2f} s, sweep {sweep_cpu:.2f} s,"
            f" {statistics.median(s / p for p, s in cpu):.1f}x"
        )


if __name__ == "__main__":
    main()
