"""Time the list pages and API lists over a seeded organisation, with their query counts, on PostgreSQL.

    psql -h 127.0.0.1 -U postgres -c "create database portal_seedbench"     # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_seedbench \\
    DJANGO_SETTINGS_MODULE=portal.settings.dev .venv/bin/python bench/bench_pages.py --identities 100000

Seeds the database once if it holds no demo organisation (so it can follow bench_seed.py), tops
the approval queue up to --requests pending requests made by the real service, then requests
each page --runs times as a signed-in user through Django's test client (whole stack but the
socket: middleware, sessions, templates). Reported per page: median and worst time, query count.

The floor of each run is the same page's SQL alone: the statements that request ran, replayed
right after it through one plain cursor (in a transaction rolled back), so the ratio is what
Python (ORM, views, templates, middleware) adds to the database's work. A `RESULT-JSON` line per
page carries every run's pair (`make bench` reads those).
"""

import argparse
import json
import os
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

# Production settings but no collectstatic run: plain static URLs.
settings.STORAGES = {
    **settings.STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

# (login, path): what people open all day, at the scale of the seeded organisation.
PAGES = [
    ("owner", "/"),
    ("admin", "/inventory/identities/"),
    ("admin", "/inventory/identities/?kind=service_account&sort=-last_used_at"),
    ("admin", "/inventory/identities/?q=svc-data&status=active"),
    ("admin", "/inventory/identities/?finding=stale&sort=owner"),
    ("admin", "/inventory/identities/?owner=costa"),
    ("admin", "/inventory/identities/?sort=owner"),
    ("admin", "/inventory/identities/?page=200"),
    ("owner", "/inventory/mine/"),
    ("admin", "/inventory/systems/"),
    ("admin", "/inventory/catalogue/"),
    ("admin", "/inventory/findings/"),
    ("owner", "/inventory/findings/"),
    ("owner", "/access/approvals/"),
    ("owner", "/access/request/"),
    ("requester", "/access/grants/"),
    ("requester", "/access/requests/"),
    ("auditor", "/audit/"),
    ("admin", "/api/v1/identities/"),
    ("admin", "/api/v1/identities/?kind=api_key"),
    ("admin", "/api/v1/grants/"),
    ("admin", "/api/v1/findings/"),
    ("requester", "/api/v1/grants/"),
    ("owner", "/api/v1/requests/"),
    # Forms that name a person: a text field resolved on the server, not a list of everyone.
    ("owner", "/inventory/identities/{machine}/owner/"),
    ("owner", "/inventory/identities/{machine}/edit/"),
    ("admin", "/inventory/systems/{system}/edit/"),
    ("admin", "/inventory/catalogue/{entitlement}/edit/"),
]


def ensure_organisation(identities: int) -> None:
    from governance.demo import demo_organisation_exists

    call_command("migrate", verbosity=0)
    if not demo_organisation_exists():
        print(f"seeding {identities:,} identities (once) ...", flush=True)
        call_command("seed_demo", identities=identities, verbosity=0, stdout=StringIO())


def top_up_queue(target: int) -> int:
    """Pending requests for entitlements the `owner` login approves, by generated people for themselves."""
    from audit.services import Actor
    from governance.models import Entitlement, Grant, Identity
    from jit.choices import RequestStatus
    from jit.models import AccessRequest
    from jit.services.requests import access_request_submit

    missing = target - AccessRequest.objects.filter(status=RequestStatus.PENDING).count()
    if missing <= 0:
        return 0
    owner = Identity.objects.get(user__username="owner")
    entitlements = list(
        Entitlement.objects.filter(owner=owner, status="active", requestable=True, risk_tier__in=["low", "medium"])
    )
    busy = set(AccessRequest.objects.filter(status=RequestStatus.PENDING).values_list("beneficiary_id", flat=True))
    people = Identity.objects.filter(kind="human", status="active", user__isnull=True).exclude(pk__in=busy)
    made = 0
    for person in people.iterator():
        held = set(Grant.objects.live().filter(identity=person).values_list("entitlement_id", flat=True))
        choice = next(
            (e for e in entitlements if e.pk not in held and "human" in (e.allowed_identity_kinds or ["human"])), None
        )
        if choice is None:
            continue
        # They ask for themselves without a login, as an identity acting on its own: the service
        # allows that only when `may_self_request` says so. A benchmark database only.
        Identity.objects.filter(pk=person.pk).update(may_self_request=True)
        person.may_self_request = True
        access_request_submit(
            actor=Actor(identity=person),
            beneficiary_id=person.pk,
            entitlement_id=choice.pk,
            justification="Benchmark: on-call cover this week.",
            ticket="BENCH-1",
        )
        made += 1
        if made >= missing:
            break
    if made:
        # Statistics as autovacuum would leave them (the bench server runs without it): planned on the
        # VACUUM ANALYZE taken before these requests, the queue's tables looked empty, and every
        # request's current stage was found by a sequential scan of all the stages (~250 ms a page).
        with connection.cursor() as cursor:
            cursor.execute(
                "ANALYZE jit_accessrequest, jit_approvalstage, jit_approvalstage_eligible, jit_approval,"
                " governance_notification, audit_auditevent"
            )
    return made


def replay(statements: list[str]) -> float | None:
    """The statements a request ran, again through one cursor, rolled back: its database work alone
    (ms), or None if one cannot run outside its request."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            started = time.perf_counter()
            for sql in statements:
                cursor.execute(sql)
                if cursor.description is not None:
                    cursor.fetchall()
            elapsed = (time.perf_counter() - started) * 1000
            transaction.set_rollback(True)
    except Exception:
        return None
    return elapsed


def measure(runs: int) -> list[dict]:
    users = {u.username: u for u in get_user_model().objects.filter(username__in={login for login, _ in PAGES})}
    clients = {}
    for login, user in users.items():
        clients[login] = Client()
        clients[login].force_login(user)
    from governance.models import Entitlement, Identity, System

    slots = {
        "machine": Identity.objects.filter(owner__user__username="owner").exclude(kind="human").first().pk,
        "system": System.objects.order_by("pk").first().pk,
        "entitlement": Entitlement.objects.order_by("pk").first().pk,
    }
    rows = []
    for login, template in PAGES:
        path = template.format(**slots)
        client, times, floors, queries, status = clients[login], [], [], 0, 0
        client.get(path)  # warm caches and templates
        for _ in range(runs):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
            queries, status = len(captured), response.status_code
            floors.append(replay([q["sql"] for q in captured.captured_queries]))
        rows.append(
            {
                "login": login,
                "path": path,
                "median": statistics.median(times),
                "worst": max(times),
                "queries": queries,
                "status": status,
                "times": times,
                "floors": None if None in floors else floors,
            }
        )
    return rows


def profile(login: str, path: str, runs: int, top: int, explain: int = 0) -> None:
    """One page, signed in as `login`: each statement's time (replayed alone, median of `runs`), then
    where Python spends the request (cProfile over `runs` requests, by own time and cumulative)."""
    import cProfile
    import pstats

    client = Client()
    client.force_login(get_user_model().objects.get(username=login))
    client.get(path)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    statements = [q["sql"] for q in captured.captured_queries]
    print(f"{login} {path}: HTTP {response.status_code}, {len(statements)} queries, {len(response.content):,} bytes")
    timed = []
    with transaction.atomic(), connection.cursor() as cursor:
        for i, sql in enumerate(statements):
            spent = []
            for _ in range(runs):
                started = time.perf_counter()
                try:
                    cursor.execute(sql)
                    if cursor.description is not None:
                        cursor.fetchall()
                except Exception as error:  # a statement that needs its request's state
                    spent = [float("nan")]
                    print(f"  #{i} not replayed: {error}")
                    break
                spent.append((time.perf_counter() - started) * 1000)
            timed.append((statistics.median(spent), i, sql))
        transaction.set_rollback(True)
    print(f"SQL alone {sum(t for t, _, _ in timed if t == t):.1f} ms:")
    slowest = sorted(timed, key=lambda t: -t[0] if t[0] == t[0] else 0)
    for ms, i, sql in slowest:
        print(f"  #{i:<3} {ms:7.2f} ms  {sql[:400]}")
    for _ms, i, sql in slowest[:explain]:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = "\n    ".join(row[0] for row in cursor.fetchall())
            transaction.set_rollback(True)
        print(f"\n#{i}: {sql}\n    {plan}")
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(runs):
        client.get(path)
    profiler.disable()
    print(f"\n{runs} requests under cProfile: {(time.perf_counter() - started) * 1000 / runs:.1f} ms each")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=100_000, help="size of the organisation if seeding")
    parser.add_argument("--requests", type=int, default=500, help="pending requests in the approval queue")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--profile", metavar="LOGIN:PATH", help="profile one page instead (each query's time, then cProfile)"
    )
    parser.add_argument("--top", type=int, default=30, help="functions cProfile lists (--profile)")
    parser.add_argument("--explain", type=int, default=0, help="EXPLAIN ANALYZE the slowest statements (--profile)")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("PostgreSQL only: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_seedbench")
    if args.profile:
        login, path = args.profile.split(":", 1)
        profile(login, path, args.runs, args.top, args.explain)
        return

    ensure_organisation(args.identities)
    started = time.perf_counter()
    made = top_up_queue(args.requests)
    if made:
        print(f"submitted {made} pending requests in {time.perf_counter() - started:.1f}s", flush=True)

    from governance.models import Grant, Identity
    from jit.models import AccessRequest

    print(
        f"{Identity.objects.count():,} identities, {Grant.objects.count():,} grants,"
        f" {AccessRequest.objects.filter(status='pending').count():,} pending requests; {args.runs} runs per page\n"
    )
    print(
        f"{'login':<10} {'page':<62} {'median':>8} {'worst':>8} {'queries':>8}  status  {'SQL alone':>9} {'ratio':>6}"
    )
    for row in measure(args.runs):
        floor = statistics.median(row["floors"]) if row["floors"] else None
        print(
            f"{row['login']:<10} {row['path']:<62} {row['median']:>6.0f}ms {row['worst']:>6.0f}ms {row['queries']:>8}"
            f"  {row['status']:>6}  "
            + (f"{floor:>7.1f}ms {row['median'] / floor:>5.1f}x" if floor else f"{'-':>9} {'-':>6}")
        )
        result = {
            "name": f"page: {row['login']} {row['path']}",
            "figure": f"GET as {row['login']} through the test client ({row['queries']} queries, {row['status']})",
            "floor": "the same statements replayed through one cursor",
            "unit": "ms",
            "figures": [round(x, 3) for x in row["times"]],
            "floors": [round(x, 3) for x in row["floors"]] if row["floors"] else None,
        }
        if not row["floors"]:
            result["note"] = "no floor: a statement would not run outside its request"
        print("RESULT-JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
