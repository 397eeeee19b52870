"""Time certification at scale on PostgreSQL: launching a campaign of N items against an INSERT ... SELECT
floor timed in the same run, the reviewer queue's query count at 10 and 1,000 items, and the streamed CSV
report of the N items (time, and peak memory).

    psql -h 127.0.0.1 -U postgres -c "create database portal_certbench"     # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_certbench \\
    DJANGO_SETTINGS_MODULE=portal.settings.dev .venv/bin/python bench/bench_certification.py --items 100000

The database is dropped, created again and migrated first (it refuses a name not starting with
portal_certbench; --keep only migrates and seeds again on top). Seeded: --items standing grants
(holders x 100 entitlements of one system, four risk tiers, owners with logins), plus a reviewer
`rev` who owns two entitlements of another system (10 and 990 grants).

launch  --repeat times: the floor, then the launch, each on an emptied review-item table.
        floor:  INSERT INTO a plain table of the same columns as governance_reviewitem (no index,
                no constraint, no foreign key) SELECT one row per grant in force of the scope,
                joined to its entitlement for the tier: the least a set-based launch can do.
        launch: `campaign_launch` of a draft whose scope is that system: the same INSERT ... SELECT
                with each item's reviewer and recommendation (ten reasons computed in SQL), the
                fallback for missing reviewers, the audit event and the reviewers' notices.
        Medians, and the ratio launch / floor per run (the target is 5x).
queue   `rev`'s queue page (/inventory/reviews/) through Django's test client, signed in, with 10
        open items and then 1,000 (the 100k campaign is open meanwhile, its items another's):
        median time of --runs, and the query count, which must not grow with the queue.
report  `campaign_close` of the N-item campaign (its rule keeps what nobody decided: one audit event
        per item, no revocation), then the auditor downloads its CSV report (streamed): time to
        the last byte, rows and bytes; then again under tracemalloc for the peak of Python memory,
        and the process's peak RSS (getrusage) before and after. Skipped with a note when the
        report view (governance/views_certification_reports.py) is not there.

Settings: DEBUG=0, CELERY_BROKER_URL=memory://, PORTAL_DATA_DIR=/tmp/bench_certification_data.
"""

import argparse
import functools
import os
import resource
import statistics
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("PORTAL_DATA_DIR", "/tmp/bench_certification_data")
os.environ["ALLOWED_HOSTS"] = "testserver,localhost,127.0.0.1"
os.environ["SECURE_SSL_REDIRECT"] = "0"  # the test client speaks plain http

import django

django.setup()

from django.conf import settings  # noqa: E402

settings.STORAGES = {
    **settings.STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

DB_PREFIX = "portal_certbench"
FLOOR_TABLE = "bench_reviewitem_floor"
ENTITLEMENTS = 100
OWNERS = 50
TIERS = ["low", "medium", "high", "critical"]
KEEP_ALL = {tier: "keep" for tier in TIERS}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def recreate_database(keep: bool) -> None:
    db = settings.DATABASES["default"]
    name = db["NAME"]
    if not keep:
        import psycopg

        if not name.startswith(DB_PREFIX):
            sys.exit(f"refusing to drop {name!r}: point DATABASE_URL at a database named {DB_PREFIX}...")
        for alias in connections:
            connections[alias].close()
        with psycopg.connect(
            host=db["HOST"] or None,
            port=db["PORT"] or None,
            user=db["USER"],
            password=db["PASSWORD"] or None,
            dbname="postgres",
            autocommit=True,
        ) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    log(f"database {name} {'kept' if keep else 'recreated'} and migrated in {time.perf_counter() - started:.1f} s")


#
# Seeding
#
@functools.cache
def _password() -> str:
    from django.contrib.auth.hashers import make_password

    return make_password("bench-certification")  # hashed once: 50 logins would take 20 s


def _person(username: str, *roles: str):
    from governance.models import Identity

    user = get_user_model().objects.create(username=username, email=f"{username}@example.org", password=_password())
    if roles:
        user.groups.add(*Group.objects.filter(name__in=roles))
    return Identity.objects.create(
        name=username.replace("-", " ").title(), kind="human", email=user.email, team="Bench", user=user
    )


def _grants(holders, entitlements, now, per_holder: int | None = None) -> int:
    """One standing grant per (holder, entitlement), batch by batch; some unused for months."""
    from governance.models import Grant

    batch, made = [], 0
    for h, holder in enumerate(holders):
        for e, entitlement in enumerate(entitlements[:per_holder] if per_holder else entitlements):
            idle = (h + e) % 17 == 0
            batch.append(
                Grant(
                    identity=holder,
                    entitlement=entitlement,
                    kind="standing",
                    status="active",
                    granted_at=now - timedelta(days=200),
                    last_used_at=now - timedelta(days=150 if idle else 1),
                    reason="bench",
                )
            )
            if len(batch) >= 5000:
                Grant.objects.bulk_create(batch)
                made, batch = made + len(batch), []
    Grant.objects.bulk_create(batch)
    return made + len(batch)


def seed(items: int) -> dict:
    from governance.models import Entitlement, Identity, System

    now = timezone.now()
    started = time.perf_counter()
    with transaction.atomic():
        admin = _person("bench-admin", "admin")
        _person("bench-auditor", "auditor")
        rev = _person("rev", "owner")
        owners = [_person(f"bench-owner-{i}", "owner") for i in range(OWNERS)]
        bulk_system = System.objects.create(name="bench-bulk", owner=owners[0], criticality="high")
        queue_system = System.objects.create(name="bench-queue", owner=rev, criticality="low")
        entitlements = Entitlement.objects.bulk_create(
            Entitlement(
                system=bulk_system,
                name=f"bench-role-{i}",
                owner=owners[i % OWNERS],
                business_purpose="bench",
                risk_tier=TIERS[i % len(TIERS)],
                approval_stages=[{"approver": "entitlement_owner", "quorum": 1}],
            )
            for i in range(ENTITLEMENTS)
        )
        small, big = Entitlement.objects.bulk_create(
            Entitlement(
                system=queue_system,
                name=name,
                owner=rev,
                business_purpose="bench",
                approval_stages=[{"approver": "entitlement_owner", "quorum": 1}],
            )
            for name in ("queue-10", "queue-990")
        )
        holders_needed = -(-items // ENTITLEMENTS)
        holders = Identity.objects.bulk_create(
            Identity(name=f"bench-holder-{i}", kind="human", email=f"h{i}@example.org", team="Bench", last_used_at=now)
            for i in range(max(holders_needed, 990))
        )
        grants = _grants(holders[: holders_needed - 1], entitlements, now)
        grants += _grants(holders[holders_needed - 1 : holders_needed], entitlements, now, items - grants)
        _grants(holders[:10], [small], now)
        _grants(holders[:990], [big], now)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    log(f"seeded {grants:,} grants in scope (+1,000 for the queue) in {time.perf_counter() - started:.1f} s")
    return {"admin": admin.user, "rev": rev.user, "bulk": bulk_system, "small": small, "big": big}


#
# Launch against the floor
#
def _empty_items() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        # The same columns (types, NOT NULL, defaults, identity), nothing else: no index, no constraint.
        cursor.execute(f"CREATE TABLE {FLOOR_TABLE} (LIKE governance_reviewitem INCLUDING DEFAULTS INCLUDING IDENTITY)")
        cursor.execute("TRUNCATE governance_reviewitem")
        cursor.execute("CHECKPOINT")


def floor(system_id: int, *, into: str = FLOOR_TABLE, campaign_id: int = 0) -> tuple[float, int]:
    """The INSERT ... SELECT a launch cannot beat: one row per grant in force of the system, its tier and
    its entitlement owner's login as the reviewer, constants for the rest; timed to the end of COMMIT."""
    sql = f"""
        INSERT INTO {into} (campaign_id, grant_id, identity_id, entitlement_id, risk_tier, stage, reviewer_id,
            reviewer_group, recommendation, reason_flags, decision, decided_by_rule, comment, remediation,
            remediation_error, reassign_reason, escalation_level, created_at)
        SELECT %s, g.id, g.identity_id, g.entitlement_id, e.risk_tier, 1, o.user_id, '', 'certify', 0, '', false,
            '', '', '', '', 0, %s
        FROM governance_grant g
        JOIN governance_entitlement e ON e.id = g.entitlement_id
        LEFT JOIN governance_identity o ON o.id = e.owner_id
        WHERE e.system_id = %s AND g.status = 'active' AND (g.expires_at IS NULL OR g.expires_at > %s)
    """
    now = timezone.now()
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [campaign_id, now, system_id, now])
        rows = cursor.rowcount
    return time.perf_counter() - started, rows


def floor_into_the_table(admin, system_id: int, run: int) -> float:
    """The same INSERT ... SELECT into governance_reviewitem itself (its indexes, unique constraint and
    foreign keys, checked at COMMIT): what the table costs, whatever the launch computes."""
    from governance.models import Campaign

    campaign = Campaign.objects.create(name=f"bench floor {run}", due_at=timezone.now() + timedelta(days=14))
    seconds, _ = floor(system_id, into="governance_reviewitem", campaign_id=campaign.pk)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE governance_reviewitem")
        cursor.execute("CHECKPOINT")
    campaign.delete()
    return seconds


def launch(admin, system_id: int, name: str):
    from governance.services.certification import campaign_create, campaign_launch

    draft = campaign_create(
        actor=admin,
        name=name,
        scope={"systems": [system_id]},
        due_at=timezone.now() + timedelta(days=14),
        undecided=KEEP_ALL,
    )
    started = time.perf_counter()
    campaign = campaign_launch(campaign_id=draft.pk, actor=admin)
    return time.perf_counter() - started, campaign


def part_launch(seeded, repeat: int):
    floors, tables, launches, ratios, table_ratios, campaign = [], [], [], [], [], None
    for run in range(1, repeat + 1):
        _empty_items()
        floor_s, rows = floor(seeded["bulk"].pk)
        table_s = floor_into_the_table(seeded["admin"], seeded["bulk"].pk, run)
        launch_s, campaign = launch(seeded["admin"], seeded["bulk"].pk, f"bench launch {run}")
        floors.append(floor_s)
        tables.append(table_s)
        launches.append(launch_s)
        ratios.append(launch_s / floor_s)
        table_ratios.append(launch_s / table_s)
        log(
            f"RESULT launch run={run} items={campaign.items_total} floor_rows={rows} floor_s={floor_s:.2f} "
            f"floor_into_table_s={table_s:.2f} launch_s={launch_s:.2f} ratio={launch_s / floor_s:.1f}x "
            f"ratio_to_table_floor={launch_s / table_s:.1f}x"
        )
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
    return {
        "items": campaign.items_total,
        "floor": statistics.median(floors),
        "launch": statistics.median(launches),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "table": statistics.median(tables),
        "table_ratio": statistics.median(table_ratios),
        "campaign": campaign,
    }


#
# The reviewer's queue
#
def _page(client: Client, path: str, runs: int) -> tuple[float, int, int]:
    client.get(path)  # warm: templates, the session
    times, queries, status = [], 0, 0
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(path)
            times.append(time.perf_counter() - started)
        queries, status = len(captured), response.status_code
    return statistics.median(times), queries, status


def part_queue(seeded, runs: int) -> list[tuple[int, float, int]]:
    from django.urls import reverse

    from governance.selectors_certification import review_queue
    from governance.services.certification import campaign_create, campaign_launch

    client = Client()
    client.force_login(seeded["rev"])
    rows = []
    for entitlement in (seeded["small"], seeded["big"]):
        draft = campaign_create(
            actor=seeded["admin"],
            name=f"bench queue {entitlement.name}",
            scope={"entitlements": [entitlement.pk]},
            due_at=timezone.now() + timedelta(days=14),
        )
        campaign_launch(campaign_id=draft.pk, actor=seeded["admin"])
        length = review_queue(seeded["rev"]).count()
        median, queries, status = _page(client, reverse("governance:review_queue"), runs)
        assert status == 200, status
        log(f"RESULT queue items={length} median_ms={median * 1000:.1f} queries={queries}")
        rows.append((length, median, queries))
    return rows


#
# The CSV report
#
def part_report(seeded, campaign) -> dict | None:
    from django.urls import NoReverseMatch, reverse

    from governance.services.certification import campaign_close

    try:
        path = reverse("governance:report_campaign_csv", args=[campaign.pk])
    except NoReverseMatch:
        log("the CSV report view is not there (governance/views_certification_reports.py): report part skipped")
        return None
    started = time.perf_counter()
    campaign_close(campaign_id=campaign.pk, actor=seeded["admin"])
    close_s = time.perf_counter() - started
    log(f"RESULT close items={campaign.items_total} close_s={close_s:.2f}")

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-auditor"))

    def download() -> tuple[float, int, int]:
        started = time.perf_counter()
        response = client.get(path)
        assert response.status_code == 200 and response.streaming, response.status_code
        size = lines = 0
        for chunk in response.streaming_content:
            size += len(chunk)
            lines += chunk.count(b"\n")
        return time.perf_counter() - started, size, lines

    download()  # warm
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds, size, lines = download()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    traced_s, _, _ = download()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result = {
        "close": close_s,
        "seconds": seconds,
        "bytes": size,
        "lines": lines,
        "peak": peak,
        "traced_s": traced_s,
        "rss_before": rss_before,
        "rss_after": rss_after,
    }
    log(
        f"RESULT report_csv items={campaign.items_total} lines={lines} bytes={size} seconds={seconds:.2f} "
        f"tracemalloc_peak_mb={peak / 2**20:.1f} (traced run {traced_s:.2f} s) "
        f"maxrss_mb={rss_before / 1024:.0f}->{rss_after / 1024:.0f}"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="grants in the big campaign's scope")
    parser.add_argument("--repeat", type=int, default=3, help="launch runs (floor, then launch, each)")
    parser.add_argument("--runs", type=int, default=5, help="queue page requests per length")
    parser.add_argument("--keep", action="store_true", help="do not drop and recreate the database")
    args = parser.parse_args()
    assert connection.vendor == "postgresql", "run against PostgreSQL (DATABASE_URL)"
    recreate_database(args.keep)
    seeded = seed(args.items)

    launched = part_launch(seeded, args.repeat)
    queue = part_queue(seeded, args.runs)
    report = part_report(seeded, launched["campaign"])

    print()
    print("| part | result |\n| --- | --- |")
    print(
        f"| launch {launched['items']:,} items | {launched['launch']:.2f} s against the floor's "
        f"{launched['floor']:.2f} s: **{launched['ratio']:.1f}x** (runs {', '.join(f'{r:.1f}x' for r in launched['ratios'])}) |"
    )
    print(
        f"| the same INSERT ... SELECT into governance_reviewitem | {launched['table']:.2f} s: the launch is "
        f"**{launched['table_ratio']:.1f}x** it |"
    )
    for length, median, queries in queue:
        print(f"| queue page, {length:,} items | {median * 1000:.0f} ms, {queries} queries |")
    if report is None:
        print("| CSV report | skipped: the report view is not there yet |")
    else:
        print(f"| close {launched['items']:,} items (rule: keep) | {report['close']:.2f} s |")
        print(
            f"| CSV report, {report['lines'] - 1:,} lines, {report['bytes'] / 2**20:.1f} MB | {report['seconds']:.2f} s; "
            f"peak Python memory {report['peak'] / 2**20:.1f} MB (tracemalloc); peak RSS "
            f"{report['rss_before'] / 1024:.0f} -> {report['rss_after'] / 1024:.0f} MB |"
        )


if __name__ == "__main__":
    main()
