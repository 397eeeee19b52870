"""Time the audit trail's page and the timelines over a million audit events, with their query counts.

    psql -h 127.0.0.1 -U postgres -c "create database portal_auditbench"     # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_auditbench \\
    DJANGO_SETTINGS_MODULE=portal.settings.dev .venv/bin/python bench/bench_audit_trail.py --events 1000000

Loads the demo organisation once, then tops the trail up to --events through the real writer (hashed
and chained, COPY in batches): four in ten are sign-ins, the rest are about the demo's grants,
requests, identities and entitlements, by its people, so that every sentence names real objects.
Then each page is requested --runs times through Django's test client (middleware, sessions,
templates): median, p95 and worst time, and the query count, which must not depend on the trail's
size. The floor of each run is the statements that request ran, replayed right after it through one
cursor (rolled back, as bench_pages.py does): the ratio is what Python adds to the database's work.
A `RESULT-JSON` line per page carries every run's pair (`make bench` reads those). `--only TEXT`
times only the pages whose path contains TEXT.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")
os.environ.setdefault("DEBUG", "0")
os.environ["ALLOWED_HOSTS"] = "testserver,localhost,127.0.0.1"
os.environ["SECURE_SSL_REDIRECT"] = "0"  # the test client speaks plain http

import django

django.setup()

from django.conf import settings  # noqa: E402

settings.STORAGES = {
    **settings.STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

from bench_pages import replay  # noqa: E402  (the same replayed-SQL floor as the list pages)
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

BATCH = 20_000


def ensure_organisation() -> None:
    from governance.demo import demo_organisation_exists

    call_command("migrate", verbosity=0)
    if not demo_organisation_exists():
        call_command("seed_demo", verbosity=0, stdout=StringIO())


def top_up(events: int) -> int:
    """Write events until the trail holds `events`, through the writer (hashed, chained, COPY)."""
    from audit.choices import AuditAction
    from audit.models import AuditEvent
    from audit.services import EventSpec, Target, audit_events_record_many
    from governance.models import Entitlement, Grant, Identity
    from jit.models import AccessRequest

    missing = events - AuditEvent.objects.count()
    if missing <= 0:
        return 0
    people = list(get_user_model().objects.all())
    grants = list(Grant.objects.values_list("pk", "identity_id", "entitlement_id"))
    requests = list(AccessRequest.objects.values_list("pk", flat=True))
    identities = list(Identity.objects.values_list("pk", "name"))
    entitlements = list(Entitlement.objects.values_list("pk", "name"))
    rng = random.Random(16)
    written = 0
    while written < missing:
        size = min(BATCH, missing - written)
        by_actor: dict = {}
        for _ in range(size):
            roll = rng.random()
            actor = rng.choice(people)
            if roll < 0.4:
                spec = EventSpec(AuditAction.USER_LOGGED_IN, Target("auth.user", str(actor.pk), actor.username))
            elif roll < 0.6:
                pk, identity, entitlement = rng.choice(grants)
                action = rng.choice([AuditAction.GRANT_USAGE_RECORDED, AuditAction.GRANT_EXPIRY_WARNED])
                spec = EventSpec(
                    action, Target("governance.grant", str(pk), f"Grant #{pk}"),
                    {"identity": identity, "entitlement": entitlement},
                )  # fmt: skip
            elif roll < 0.75:
                pk = rng.choice(requests)
                spec = EventSpec(
                    AuditAction.REQUEST_REMINDED, Target("jit.accessrequest", str(pk), f"Request #{pk}"),
                    {"stage": 1, "approvers": [actor.pk]},
                )  # fmt: skip
            elif roll < 0.9:
                pk, name = rng.choice(identities)
                spec = EventSpec(
                    AuditAction.IDENTITY_UPDATED, Target("governance.identity", str(pk), name),
                    {"before": {"team": "Ops"}, "after": {"team": "Platform"}},
                )  # fmt: skip
            else:
                pk, name = rng.choice(entitlements)
                spec = EventSpec(
                    AuditAction.ENTITLEMENT_UPDATED, Target("governance.entitlement", str(pk), name),
                    {"before": {"review_cadence_days": 90}, "after": {"review_cadence_days": 180}},
                )  # fmt: skip
            by_actor.setdefault(actor.pk, (actor, []))[1].append(spec)
        with transaction.atomic():
            for actor, specs in by_actor.values():
                audit_events_record_many(actor=actor, events=specs)
        written += size
        print(f"  {written:,} / {missing:,} events written", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditevent")
    return written


def pages() -> list[tuple[str, str]]:
    from audit.models import AuditEvent
    from governance.models import Entitlement, Grant, Identity
    from jit.models import AccessRequest

    busiest = Grant.objects.values_list("identity_id", flat=True).order_by("identity_id").first()
    entitlement = Entitlement.objects.order_by("pk").first()
    request = AccessRequest.objects.order_by("pk").first()
    identity = Identity.objects.get(pk=busiest)
    first_event = AuditEvent.objects.order_by("seq").values_list("seq", flat=True)[100]
    events = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True)
    halfway = events[min(500_000, events.count() // 2)]
    return [
        ("auditor", "/audit/"),
        ("auditor", "/audit/?hide_sign_ins=on"),
        ("auditor", "/audit/?action=area%3Arequests"),
        ("auditor", "/audit/?action=grant.usage_recorded&since=2020-01-01T09%3A00&tz=Europe%2FBerlin"),
        ("auditor", f"/audit/?target={identity.name.replace(' ', '+')}"),
        ("auditor", f"/audit/?target=request+%23{request.pk}"),
        ("auditor", f"/audit/?target={entitlement.name.replace(' ', '+')}"),
        ("auditor", f"/audit/?after={halfway}"),
        ("auditor", f"/inventory/identities/{identity.pk}/timeline/"),
        ("auditor", f"/inventory/identities/{identity.pk}/timeline/?order=oldest&after={first_event}"),
        ("auditor", f"/inventory/catalogue/{entitlement.pk}/timeline/"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="", help="only the pages whose path contains this text")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("PostgreSQL only: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_auditbench")
    ensure_organisation()
    started = time.perf_counter()
    if made := top_up(args.events):
        print(f"wrote {made:,} events in {time.perf_counter() - started:.0f}s", flush=True)

    from audit.models import AuditEvent

    client = Client()
    client.force_login(get_user_model().objects.get(username="auditor"))
    client.cookies["tz"] = "Europe/Berlin"
    print(
        f"\n{AuditEvent.objects.count():,} audit events; {args.runs} runs per page;"
        f" load {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n"
    )
    print(f"{'page':<78} {'median':>8} {'p95':>8} {'worst':>8} {'queries':>8}  status {'SQL alone':>9} {'ratio':>6}")
    for _login, path in pages():
        if args.only not in path:
            continue
        client.get(path)  # warm caches and templates
        times, floors, queries, status = [], [], 0, 0
        for _ in range(args.runs):
            with CaptureQueriesContext(connection) as captured:
                began = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - began) * 1000)
            queries, status = len(captured), response.status_code
            floors.append(replay([q["sql"] for q in captured.captured_queries]))
        floor = statistics.median(floors) if None not in floors else None
        p95 = sorted(times)[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        print(
            f"{path:<78} {statistics.median(times):>6.0f}ms {p95:>6.0f}ms {max(times):>6.0f}ms {queries:>8}  {status:>6}"
            + (f" {floor:>7.1f}ms {statistics.median(times) / floor:>5.1f}x" if floor else f" {'-':>9} {'-':>6}")
        )
        result = {
            "name": f"audit: {path}",
            "figure": f"GET {path} as auditor ({queries} queries, {status})",
            "floor": "the same statements replayed through one cursor",
            "unit": "ms",
            "figures": [round(x, 3) for x in times],
            "floors": [round(x, 3) for x in floors] if None not in floors else None,
        }
        print("RESULT-JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
