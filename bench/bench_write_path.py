"""Time the write path on PostgreSQL: how long state changes hold the audit chain, create+approve
through the REST API with concurrent clients, how long an approval waits behind a big import or a
bulk retirement, and retiring an entitlement with 10,000 live grants against a plain SQL UPDATE.

It measures the checkout you run it FROM: the current working directory goes first on sys.path
(not this file's parent), so the one script times /work/before and /work/main alike:

    psql -h 127.0.0.1 -U postgres -c "create database portal_wpbench"        # once
    cd /work/before          # or /work/main: the code that is measured
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_wpbench DJANGO_SETTINGS_MODULE=portal.settings.dev \\
        /work/main/.venv/bin/python /work/main/bench/bench_write_path.py --only hold,api,wait,retire [--size quick]

Before each part the database is dropped, created again and migrated (it refuses any name not
starting with portal_wpbench; --keep only migrates), so every part starts from an empty one.

Parts (--only, comma-separated):

hold    Single client, through the service functions: submit, final approval, deny, cancel,
        confirm provisioning, revoke a grant, edit an entitlement, --hold-n of each, interleaved
        round by round (plus warm-up rounds that are not counted). Per kind: transaction time p50/p99
        (from the call to the end of its COMMIT; the whole call, on_commit callbacks included, is
        call_p50_ms in the RESULT lines), chain hold p50/p99, hold/transaction, queries
        (CaptureQueriesContext), and the transaction time as a ratio to a floor timed in the same
        rounds (a one-row UPDATE and its COMMIT).
        The chain hold is timed by wrapping `audit.services.hold_the_chain` (and every project
        module that imported it by name): from the return of a transaction's first call (it is
        re-entrant; later calls are ignored) to the return of that transaction's COMMIT. The
        COMMIT is taken by wrapping the backend's commit(), not by an on_commit callback: callbacks
        run in the order they were registered, so one registered when the chain is taken late
        (at the end of the transaction) would also count the outbox wake-ups registered before it.
api     gunicorn (--api-workers sync workers, loopback, a free port) on the bench database, DEBUG
        off. --api-clients pairs of sessions that log in through /login/ (session + CSRF cookie):
        client i's requester POSTs /api/v1/requests/ for one of its machines and an entitlement
        owned by approver i+1 (one stage, quorum 1: low risk, `entitlement_owner`), then that
        approver POSTs .../approve/ until no stage is left. After --api-warmup untimed cycles of
        every client (each worker loads its code), first one client alone (--api-solo-iterations:
        the floor), then all clients at once for --api-seconds or --api-iterations per client,
        whichever ends first. Reported: approvals/s, p50/p95 of the approve and submit calls, 409
        and 5xx counts, lines of the server log (INFO) about deadlocks and retries, tracebacks, and
        the ratios to the single client. --shared-system puts every entitlement in one system.
wait    How long single final approvals (through the service, on this process's connection, one
        every --wait-gap s) take while another process (a) imports --import-rows identities
        (approvals start once its log says every row is validated and its transaction has
        written its first row: the checking before holds nothing) and (b) retires an entitlement with --wait-retire-grants live grants (in another system
        than the approved requests). The write phase runs from the worker's first written row
        (pg_stat_activity.backend_xid appears) to the return of its COMMIT; the approvals started
        in it are counted. Max and p50 against approvals timed just before with nothing else
        running. Before the change the first approval waits out the whole phase (n=1).
retire  entitlement_retire of an entitlement with --retire-grants live grants (seeded with SQL)
        against a plain SQL UPDATE of as many rows to 'revoking' (another entitlement seeded the
        same way), --retire-repeat times: medians and the ratio (the call, on_commit callbacks
        included; its time to COMMIT is printed too), the chain hold, and the statements run
        (counted with connection.execute_wrapper: CaptureQueriesContext stops at 9,000).

--size quick shrinks every part for a smoke run (about 5 minutes in all on a busy 2-core machine);
any size flag overrides it. A full run of one part stays under 10 minutes (retire: about 6 before
the change, on a busy machine).
Other settings for this process and the server: DEBUG=0, CELERY_BROKER_URL=memory:// (outbox
wake-ups go nowhere), PORTAL_DATA_DIR=/tmp/bench_write_path_data (nothing written into the checkout).
"""

import argparse
import contextlib
import functools
import http.client
import itertools
import json
import math
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from http.cookies import SimpleCookie
from pathlib import Path

CHECKOUT = Path.cwd()
sys.path.insert(0, str(CHECKOUT))  # the code measured is the checkout we run from, not this file's
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")
os.environ.setdefault("DEBUG", "0")  # no query log in memory; the server runs like production
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("PORTAL_DATA_DIR", "/tmp/bench_write_path_data")

if not (CHECKOUT / "manage.py").exists() or not (CHECKOUT / "audit" / "services.py").exists():
    sys.exit(f"Run this from a checkout of the portal (cwd {CHECKOUT} has no manage.py / audit/services.py).")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import DEFAULT_DB_ALIAS, connection, connections, reset_queries, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

APPS = ("audit", "governance", "jit", "portal")
PASSWORD = "bench-write-path-1"
DB_PREFIX = "portal_wpbench"

SIZES = {
    "full": {
        "hold_n": 300,
        "hold_warmup": 5,
        "api_clients": 8,
        "api_workers": 4,
        "api_seconds": 60.0,
        "api_iterations": 400,
        "api_solo_iterations": 40,
        "api_warmup": 3,
        "import_rows": 100_000,
        "wait_pool": 600,
        "wait_baseline": 40,
        "wait_retire_grants": 1000,
        "retire_grants": 10_000,
        "retire_repeat": 1,
    },
    "quick": {
        "hold_n": 30,
        "hold_warmup": 3,
        "api_clients": 8,
        "api_workers": 4,
        "api_seconds": 10.0,
        "api_iterations": 40,
        "api_solo_iterations": 10,
        "api_warmup": 2,
        "import_rows": 10_000,
        "wait_pool": 200,
        "wait_baseline": 15,
        "wait_retire_grants": 300,
        "retire_grants": 1000,
        "retire_repeat": 1,
    },
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pct(values, q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def ms(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    return f"{seconds * 1000:.1f}"


#
# The chain hold timer
#
class ChainHoldTimer:
    """Times how long each transaction holds the audit chain (see the module docstring)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.patched: list[str] = []
        self.installed = False

    def _samples(self) -> list:
        if not hasattr(self._local, "samples"):
            self._local.samples = []
        return self._local.samples

    def take(self) -> list[float]:
        """The holds recorded in this thread since the last take()."""
        samples = self._samples()
        taken = list(samples)
        samples.clear()
        return taken

    def last_commit(self) -> float | None:
        """When this thread's last COMMIT returned (perf_counter), whether or not it took the chain."""
        return getattr(self._local, "last_commit", None)

    def install(self) -> None:
        if self.installed:
            return
        import importlib

        import audit.services as audit_services

        for name in (
            "governance.services.imports",
            "governance.services.catalogue",
            "governance.services.grants",
            "jit.services.expiry",
            "jit.services.requests",
            "jit.services.approvals",
            "portal.signals",
        ):
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        original = audit_services.hold_the_chain

        @functools.wraps(original)
        def hold_the_chain(*args, **kwargs):
            result = original(*args, **kwargs)
            conn = connections[DEFAULT_DB_ALIAS]
            if conn.in_atomic_block and conn.__dict__.get("_wpbench_acquired") is None:
                conn._wpbench_acquired = time.perf_counter()
            return result

        for name, module in list(sys.modules.items()):
            if module is None or name.split(".")[0] not in APPS:
                continue
            if getattr(module, "hold_the_chain", None) is original:
                module.hold_the_chain = hold_the_chain
                self.patched.append(name)

        timer = self
        backend = type(connections[DEFAULT_DB_ALIAS])
        original_commit, original_rollback = backend.commit, backend.rollback

        @functools.wraps(original_commit)
        def commit(conn):
            original_commit(conn)
            now = time.perf_counter()
            timer._local.last_commit = now
            acquired = conn.__dict__.pop("_wpbench_acquired", None)
            if acquired is not None:
                timer._samples().append(now - acquired)

        @functools.wraps(original_rollback)
        def rollback(conn):
            conn.__dict__.pop("_wpbench_acquired", None)
            original_rollback(conn)

        backend.commit, backend.rollback = commit, rollback
        self.installed = True


TIMER = ChainHoldTimer()


class QueryCounter:
    """Counts the statements run on this connection (uncapped, unlike CaptureQueriesContext's 9,000)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


#
# Database and seeding
#
def recreate_database(keep: bool, prefix: str = DB_PREFIX) -> None:
    """Drop, create and migrate the bench database (only one whose name starts with `prefix`)."""
    db = settings.DATABASES["default"]
    name = db["NAME"]
    if not keep:
        import psycopg

        if not name.startswith(prefix):
            sys.exit(f"refusing to drop {name!r}: point DATABASE_URL at a database named {prefix}...")
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


@functools.cache
def password_hash() -> str:
    from django.contrib.auth.hashers import make_password

    return make_password(PASSWORD)


def person(prefix: str, tag: str, *, login: bool = False, roles: tuple = ()):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from governance.models import Identity

    user = None
    if login:
        user = get_user_model().objects.create(
            username=f"{prefix}-{tag}", email=f"{prefix}-{tag}@example.org", password=password_hash()
        )
        if roles:
            user.groups.add(*Group.objects.filter(name__in=roles))
    return Identity.objects.create(
        kind="human", name=f"{prefix} {tag}", email=f"{prefix}-{tag}@example.org", team="Bench", user=user
    )


def machines(prefix: str, owner, count: int) -> list:
    from governance.models import Identity

    return Identity.objects.bulk_create(
        [
            Identity(
                kind="service_account",
                name=f"{prefix}-svc-{owner.pk}-{j}",
                team="Bench",
                owner=owner,
                credential_type="static_secret",
                secret_location="secrets_manager",
            )
            for j in range(count)
        ]
    )


def system(prefix: str, tag: str, owner):
    from governance.models import System

    return System.objects.create(name=f"{prefix} system {tag}", owner=owner, criticality="low")


def entitlements(prefix: str, sys_obj, owner, count: int, tag: str = "") -> list:
    """Low-risk entitlements whose one stage is their owner's approval (quorum 1)."""
    from governance.models import Entitlement

    return Entitlement.objects.bulk_create(
        [
            Entitlement(
                system=sys_obj,
                name=f"{prefix}-role{tag}-{owner.pk}-{k}",
                owner=owner,
                business_purpose="Benchmark",
                risk_tier="low",
                approval_stages=[{"approver": "entitlement_owner", "quorum": 1}],
            )
            for k in range(count)
        ]
    )


def bulk_people(prefix: str, count: int) -> None:
    from governance.models import Identity

    Identity.objects.bulk_create(
        [Identity(kind="human", name=f"{prefix}-bulk-{i:06d}", team="Bench") for i in range(count)], batch_size=5000
    )


def seed_live_grants(entitlement_id: int, prefix: str, count: int) -> int:
    """`count` active standing grants of one entitlement, one per bulk person (plain SQL: fast)."""
    with transaction.atomic(), connection.cursor() as c:
        c.execute(
            "INSERT INTO governance_grant (identity_id, entitlement_id, kind, status, granted_at, expires_at, reason,"
            " end_reason, no_renew, connector_reference, last_error, created_at, updated_at)"
            " SELECT i.id, %s, 'standing', 'active', now() - interval '1 day', NULL, '', '', false, '', '', now(), now()"
            " FROM governance_identity i WHERE i.name LIKE %s ORDER BY i.id LIMIT %s",
            [entitlement_id, f"{prefix}-bulk-%", count],
        )
        made = c.rowcount
    with connection.cursor() as c:
        c.execute("ANALYZE governance_grant")
    return made


def approve(request_id: int, approver):
    from jit.services.approvals import access_request_decide

    return access_request_decide(request_id=request_id, approver=approver, decision="approve", comment="")


def submit(requester_user, beneficiary_id: int, entitlement_id: int):
    from jit.services.requests import access_request_submit

    return access_request_submit(
        actor=requester_user,
        beneficiary_id=beneficiary_id,
        entitlement_id=entitlement_id,
        justification="Benchmark: on-call cover this week.",
    )


#
# Part 1: chain hold per kind of state change
#
HOLD_KINDS = ["submit", "approve", "deny", "cancel", "confirm", "revoke", "edit"]


def part_hold(opts) -> list[tuple]:
    from governance.services.catalogue import entitlement_update
    from governance.services.grants import grant_confirm_provisioned, grant_revoke
    from jit.models import AccessRequest
    from jit.services.approvals import access_request_decide
    from jit.services.requests import access_request_cancel

    TIMER.install()
    prefix = "wph"
    rounds = opts.hold_n + opts.hold_warmup
    pairs_needed = 3 * rounds
    ent_count = 30
    requester = person(prefix, "requester", login=True, roles=("requester",))
    approver = person(prefix, "approver", login=True, roles=("requester", "approver"))
    owner = person(prefix, "sysowner", login=True, roles=("requester", "owner"))
    sys_obj = system(prefix, "main", owner)
    ents = entitlements(prefix, sys_obj, approver, ent_count)
    edited, floor_row = entitlements(prefix, sys_obj, approver, 2, tag="x")
    boxes = machines(prefix, requester, math.ceil(pairs_needed / ent_count))
    pairs = [(m.pk, e.pk) for m, e in itertools.product(boxes, ents)][:pairs_needed]
    ru, au, ou = requester.user, approver.user, owner.user
    log(f"hold: {len(boxes)} machines x {ent_count} entitlements; {rounds} rounds ({opts.hold_warmup} warm-up)")
    log(f"hold: chain timer wraps hold_the_chain in {', '.join(TIMER.patched)}")

    # kind -> (transaction to the end of COMMIT, whole call with on_commit callbacks, hold, queries)
    data: dict[str, list[tuple[float, float, float | None, int]]] = {k: [] for k in HOLD_KINDS}
    floor: list[float] = []
    missing_hold: Counter = Counter()

    def timed(kind: str, keep: bool, call, *args, **kwargs):
        TIMER.take()
        # CaptureQueriesContext counts the growth of connection.queries_log, a deque capped at
        # 9,000: once full it would count 0. Empty it first.
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            result = call(*args, **kwargs)
            ended = time.perf_counter()
        holds = TIMER.take()
        committed = TIMER.last_commit()
        txn = committed - started if committed is not None and started < committed <= ended else ended - started
        if keep:
            data[kind].append((txn, ended - started, holds[0] if holds else None, len(captured)))
            if not holds:
                missing_hold[kind] += 1
        return result

    started_all = time.perf_counter()
    for r in range(rounds):
        keep = r >= opts.hold_warmup
        t0 = time.perf_counter()
        with transaction.atomic(), connection.cursor() as c:
            c.execute("UPDATE governance_entitlement SET updated_at = now() WHERE id = %s", [floor_row.pk])
        if keep:
            floor.append(time.perf_counter() - t0)
        (ba, ea), (bb, eb), (bc, ec) = pairs[3 * r : 3 * r + 3]
        ra = timed("submit", keep, submit, ru, ba, ea)
        rb = timed("submit", keep, submit, ru, bb, eb)
        rc = timed("submit", keep, submit, ru, bc, ec)
        timed("approve", keep, approve, ra.pk, au)
        timed("deny", keep, access_request_decide, request_id=rb.pk, approver=au, decision="deny", comment="No.")
        timed("cancel", keep, access_request_cancel, request_id=rc.pk, actor=ru, reason="No longer needed.")
        grant_id = AccessRequest.objects.filter(pk=ra.pk).values_list("grant_id", flat=True).get()
        if grant_id is None:
            raise RuntimeError(f"request {ra.pk} was approved but issued no grant")
        timed("confirm", keep, grant_confirm_provisioned, grant_id=grant_id, actor=ou, reference=f"ref-{r}")
        timed("revoke", keep, grant_revoke, grant_id=grant_id, actor=ou, reason="Benchmark")
        changes = {"business_purpose": f"Benchmark round {r}"}
        timed("edit", keep, entitlement_update, entitlement_id=edited.pk, actor=au, changes=changes)
        if (r + 1) % 50 == 0:
            log(f"hold: {r + 1}/{rounds} rounds, {time.perf_counter() - started_all:.0f} s")
    log(f"hold: done in {time.perf_counter() - started_all:.1f} s")

    floor_p50 = statistics.median(floor)
    rows = [("hold", "floor: 1-row UPDATE + COMMIT", f"p50 {ms(floor_p50)} ms", f"n={len(floor)}")]
    print()
    print(
        f"{'kind':<8} {'n':>4} {'txn p50':>8} {'txn p99':>8} {'hold p50':>8} {'hold p99':>8} {'hold/txn':>8}"
        f" {'queries':>7} {'txn/floor':>9}   (ms)"
    )
    for kind in HOLD_KINDS:
        samples = data[kind]
        txn = [t for t, _, _, _ in samples]
        call50 = pct([c for _, c, _, _ in samples], 0.5)
        holds = [h for _, _, h, _ in samples if h is not None]
        queries = statistics.median([q for _, _, _, q in samples])
        txn50, txn99 = pct(txn, 0.5), pct(txn, 0.99)
        h50 = pct(holds, 0.5) if holds else None
        h99 = pct(holds, 0.99) if holds else None
        share = f"{h50 / txn50:.0%}" if h50 is not None else "-"
        print(
            f"{kind:<8} {len(samples):>4} {ms(txn50):>8} {ms(txn99):>8} {ms(h50):>8} {ms(h99):>8} {share:>8}"
            f" {queries:>7.0f} {txn50 / floor_p50:>8.1f}x"
        )
        rows.append(
            (
                "hold",
                kind,
                f"txn p50/p99 {ms(txn50)}/{ms(txn99)} ms, hold p50/p99 {ms(h50)}/{ms(h99)} ms",
                f"hold/txn {share}, {queries:.0f} queries, txn {txn50 / floor_p50:.1f}x floor",
            )
        )
        print(
            f"RESULT part=hold kind={kind} n={len(samples)} txn_p50_ms={ms(txn50)} txn_p99_ms={ms(txn99)}"
            f" hold_p50_ms={ms(h50)} hold_p99_ms={ms(h99)} call_p50_ms={ms(call50)} queries={queries:.0f}"
            f" floor_p50_ms={ms(floor_p50)}"
            f" txn_over_floor={txn50 / floor_p50:.2f}"
        )
    print(f"floor (1-row UPDATE + COMMIT): p50 {ms(floor_p50)} ms, p99 {ms(pct(floor, 0.99))} ms")
    if missing_hold:
        print(f"note: transactions that never took the chain: {dict(missing_hold)}")
    return rows


#
# Part 2: create + approve through the REST API with concurrent clients
#
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Session:
    """One logged-in browser-less client: cookies (session, CSRF) and JSON calls over loopback."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def _call(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes, float]:
        headers = {"Host": f"127.0.0.1:{self.port}", **headers}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        started = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            seconds = time.perf_counter() - started
            for header in response.headers.get_all("Set-Cookie") or []:
                jar = SimpleCookie()
                jar.load(header)
                for key, morsel in jar.items():
                    self.cookies[key] = morsel.value
            return response.status, raw, seconds
        finally:
            conn.close()

    def login(self, username: str) -> None:
        # Django accepts any well-formed CSRF cookie a client brings (double submit): no need to
        # render the login page (its static files need collectstatic with DEBUG off).
        token = secrets.token_hex(16)  # 32 characters, like CSRF_SECRET_LENGTH
        self.cookies["csrftoken"] = token
        body = urllib.parse.urlencode({"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token})
        status, raw, _ = self._call(
            "POST", "/login/", body.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"login of {username} failed: HTTP {status} {raw[:300]!r}")

    def post_json(self, path: str, payload: dict) -> tuple[int, dict | None, float, bytes]:
        status, raw, seconds = self._call(
            "POST",
            path,
            json.dumps(payload).encode(),
            {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "X-CSRFToken": self.cookies["csrftoken"],
            },
        )
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return status, data, seconds, raw


class ClientStats:
    def __init__(self) -> None:
        self.submit: list[float] = []
        self.approve: list[float] = []
        self.approved = 0
        self.statuses: Counter = Counter()
        self.errors: list[str] = []


def client_loop(requester: Session, approver: Session, pairs, stats: ClientStats, deadline: float, limit: int) -> None:
    for i, (beneficiary, entitlement) in enumerate(pairs):
        if i >= limit or time.perf_counter() >= deadline:
            return
        status, data, seconds, raw = requester.post_json(
            "/api/v1/requests/",
            {"beneficiary": beneficiary, "entitlement": entitlement, "justification": "Benchmark: on-call cover."},
        )
        stats.submit.append(seconds)
        stats.statuses[f"submit {status}"] += 1
        if status != 201 or not data:
            stats.errors.append(f"submit HTTP {status}: {raw[:200]!r}")
            continue
        request_id = data["id"]
        for _stage in range(5):
            status, data, seconds, raw = approver.post_json(f"/api/v1/requests/{request_id}/approve/", {"comment": ""})
            stats.approve.append(seconds)
            stats.statuses[f"approve {status}"] += 1
            if status != 200 or not data:
                stats.errors.append(f"approve HTTP {status}: {raw[:200]!r}")
                break
            if data.get("status") != "pending":
                if data.get("status") == "approved":
                    stats.approved += 1
                else:
                    stats.errors.append(f"request {request_id} ended {data.get('status')}")
                break


def run_all(calls) -> None:
    threads = [threading.Thread(target=call, daemon=True) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def start_server(opts, log_path: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "0",
            "PYTHONPATH": str(CHECKOUT),
            "LOG_LEVEL": "INFO",  # a retried deadlock may be logged at INFO only
            "WEB_CONCURRENCY": str(opts.api_workers),
        }
    )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "portal.wsgi:application",
        "--chdir",
        str(CHECKOUT),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(opts.api_workers),
        "--worker-class",
        opts.api_worker_class,
        "--timeout",
        "300",
        "--log-level",
        "info",
    ]
    if opts.api_worker_class == "gthread":
        command += ["--threads", str(opts.api_threads)]
    out = log_path.open("wb")
    server = subprocess.Popen(command, cwd=str(CHECKOUT), env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}: see {log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/v1/requests/", headers={"Accept": "application/json"})
            conn.getresponse().read()
            conn.close()
            return server, port
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError("gunicorn did not answer within 60 s")


def stop_server(server: subprocess.Popen | None) -> None:
    if server is None or server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


def part_api(opts) -> list[tuple]:
    prefix = "wpa"
    n = opts.api_clients
    per_client = opts.api_warmup + opts.api_solo_iterations + opts.api_iterations
    ents_per_approver = 20
    boxes_per_requester = math.ceil(per_client / ents_per_approver)
    requesters = [person(prefix, f"req{i}", login=True, roles=("requester",)) for i in range(n)]
    approvers = [person(prefix, f"appr{i}", login=True, roles=("requester", "approver")) for i in range(n)]
    owner = person(prefix, "sysowner", login=True, roles=("owner",))
    shared = system(prefix, "shared", owner) if opts.shared_system else None
    catalogue = [
        entitlements(prefix, shared or system(prefix, f"of-approver-{i}", owner), approvers[i], ents_per_approver)
        for i in range(n)
    ]
    pairs = []
    for i in range(n):
        boxes = machines(prefix, requesters[i], boxes_per_requester)
        theirs = catalogue[(i + 1) % n]  # approver i+1 approves requester i: nobody approves their own
        pairs.append([(m.pk, e.pk) for e, m in itertools.product(theirs, boxes)][:per_client])
    log(
        f"api: {n} clients, each {boxes_per_requester} machines x {ents_per_approver} entitlements;"
        f" {'one shared system' if opts.shared_system else 'one system per approver'}"
    )
    connections.close_all()

    log_path = Path(tempfile.gettempdir()) / f"bench_write_path_gunicorn_{os.getpid()}.log"
    server = None
    rows = []
    try:
        server, port = start_server(opts, log_path)
        log(
            f"api: gunicorn pid {server.pid} on 127.0.0.1:{port}, {opts.api_workers} {opts.api_worker_class}"
            f" workers, log {log_path}"
        )
        sessions = [(Session(port), Session(port)) for _ in range(n)]
        failures = []

        def sign_in(i: int) -> None:
            try:
                sessions[i][0].login(requesters[i].user.username)
                sessions[i][1].login(approvers[(i + 1) % n].user.username)
            except Exception as exc:  # reported below
                failures.append(exc)

        run_all([lambda i=i: sign_in(i) for i in range(n)])
        if failures:
            raise failures[0]
        log("api: every client logged in")

        # Warm-up (not counted): every client a few cycles at once, so that every worker has
        # loaded its code and opened its database connection before anything is timed.
        warm = opts.api_warmup
        run_all(
            [lambda i=i: client_loop(*sessions[i], pairs[i][:warm], ClientStats(), math.inf, warm) for i in range(n)]
        )
        log(f"api: warm-up done ({warm} cycles per client)")

        # The floor: one client alone.
        solo = ClientStats()
        started = time.perf_counter()
        client_loop(
            *sessions[0], pairs[0][warm : warm + opts.api_solo_iterations], solo, math.inf, opts.api_solo_iterations
        )
        solo_seconds = time.perf_counter() - started
        solo_rate = solo.approved / solo_seconds
        log(f"api: 1 client: {solo.approved} approvals in {solo_seconds:.1f} s")

        stats = [ClientStats() for _ in range(n)]
        barrier = threading.Barrier(n + 1)
        deadline_box = {}

        def run(i: int) -> None:
            barrier.wait()
            client_loop(
                *sessions[i],
                pairs[i][warm + opts.api_solo_iterations :],
                stats[i],
                deadline_box["t"],
                opts.api_iterations,
            )

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        deadline_box["t"] = time.perf_counter() + opts.api_seconds
        started = time.perf_counter()
        barrier.wait()
        for t in threads:
            t.join(timeout=opts.api_seconds + 600)
        wall = time.perf_counter() - started
        hung = sum(t.is_alive() for t in threads)
        if hung:
            log(f"api: {hung} clients still waiting 10 min after the deadline: giving up on them")
    finally:
        stop_server(server)
        if server is not None:
            log(f"api: gunicorn stopped (exit {server.returncode})")

    approvals = sum(s.approved for s in stats)
    approve_lat = [x for s in stats for x in s.approve]
    submit_lat = [x for s in stats for x in s.submit]
    statuses = sum((s.statuses for s in stats), Counter())
    errors = [e for s in stats for e in s.errors]
    conflicts = sum(v for k, v in statuses.items() if k.endswith(" 409"))
    server_errors = sum(v for k, v in statuses.items() if k.split()[-1].startswith("5"))
    server_log = log_path.read_text(errors="replace") if log_path.exists() else ""
    log_lines = server_log.splitlines()
    deadlocks = sum(1 for line in log_lines if re.search(r"deadlock", line, re.IGNORECASE))
    retried = sum(1 for line in log_lines if re.search(r"running it again|retry|retrying", line, re.IGNORECASE))
    tracebacks = server_log.count("Traceback (most recent call last)")
    rate = approvals / wall if wall else 0.0
    a50, a95 = (pct(approve_lat, 0.5), pct(approve_lat, 0.95)) if approve_lat else (None, None)
    s50, s95 = (pct(submit_lat, 0.5), pct(submit_lat, 0.95)) if submit_lat else (None, None)
    solo_a50 = pct(solo.approve, 0.5) if solo.approve else None

    print()
    print(
        f"1 client (floor): {solo.approved} approvals in {solo_seconds:.1f} s = {solo_rate:.1f}/s,"
        f" approve p50 {ms(solo_a50)} ms, submit p50 {ms(pct(solo.submit, 0.5))} ms"
    )
    print(
        f"{n} clients: {approvals} approvals in {wall:.1f} s = {rate:.1f}/s ({rate / solo_rate:.2f}x one client);"
        f" approve p50 {ms(a50)} ms, p95 {ms(a95)} ms ({(a50 or 0) / solo_a50:.1f}x one client's p50);"
        f" submit p50 {ms(s50)} ms, p95 {ms(s95)} ms"
    )
    print(f"responses: {dict(sorted(statuses.items()))}")
    print(
        f"409: {conflicts}, 5xx: {server_errors}; server log: {deadlocks} lines about deadlocks,"
        f" {retried} about retries, {tracebacks} tracebacks ({log_path})"
    )
    for error in errors[:5]:
        print(f"  e.g. {error}")
    print(
        f"RESULT part=api clients={n} workers={opts.api_workers} approvals={approvals} seconds={wall:.1f}"
        f" approvals_per_s={rate:.2f} solo_per_s={solo_rate:.2f} approve_p50_ms={ms(a50)} approve_p95_ms={ms(a95)}"
        f" solo_approve_p50_ms={ms(solo_a50)} submit_p50_ms={ms(s50)} submit_p95_ms={ms(s95)}"
        f" http409={conflicts} http5xx={server_errors} deadlocks={deadlocks} retries={retried} tracebacks={tracebacks}"
    )
    rows.append(("api", "1 client (floor)", f"{solo_rate:.1f} approvals/s", f"approve p50 {ms(solo_a50)} ms"))
    rows.append(
        (
            "api",
            f"{n} clients, {opts.api_workers} {opts.api_worker_class} workers",
            f"{rate:.1f} approvals/s ({rate / solo_rate:.2f}x 1 client)",
            f"approve p50/p95 {ms(a50)}/{ms(a95)} ms ({(a50 or 0) / solo_a50:.1f}x), 409={conflicts}"
            f" 5xx={server_errors} deadlocks={deadlocks}",
        )
    )
    return rows


#
# Part 3: how long an approval waits behind an import or a bulk retirement
#
def generate_identities_csv(path: Path, rows: int, tag: str) -> None:
    """People first (each managed by an earlier one), then machines they own (as bench_import.py)."""
    from governance.imports.specs import COLUMNS

    kinds = ["service_account", "api_key", "workload", "ai_agent"]
    locations = ["secrets_manager", "ci_cd", "embedded_in_code", "unknown"]
    people = max(1, rows // 4)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(COLUMNS["identities"]) + "\r\n")
        for i in range(people):
            manager = f"{tag}h-{i // 10}" if i else ""
            out.write(
                f"{tag}h-{i},Person {i},human,active,{tag}person{i}@example.org,Team {i % 50},,,{manager},,,,,"
                f"2025-01-0{1 + i % 9}T09:00:00Z,\r\n"
            )
        for j in range(rows - people):
            kind = kinds[j % 4]
            owner, backup = f"{tag}h-{j % people}", f"{tag}h-{(j + 1) % people}"
            out.write(
                f"{tag}m-{j},{kind}-{j},{kind},active,,Team {j % 50},{owner},{backup},,static_secret,"
                f"{locations[j % 4]},2025-03-01T00:00:00Z,90,2025-06-01T12:00:00Z,"
                f"{'true' if kind == 'ai_agent' else 'false'}\r\n"
            )


class Worker:
    """This script in another process (--_worker ...), its output read line by line with arrival times."""

    def __init__(self, args: list[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self.started = threading.Event()
        self.done = threading.Event()
        self.started_at = self.done_at = self.committed_at = None
        self.backend_pid = None
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).resolve()), "--_worker", *args],
            cwd=str(CHECKOUT),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            now = time.perf_counter()
            line = line.rstrip("\n")
            self.lines.append((now, line))
            if line.startswith("WORKER-PID "):
                self.backend_pid = int(line.split()[1])
            match = re.match(r"validated ([\d,]+)/([\d,]+) rows", line)
            write_begins = line.startswith("WORKER-START") or (match and match.group(1) == match.group(2))
            if write_begins and not self.started.is_set():
                self.started_at = now
                self.started.set()
            if line.startswith("WORKER-COMMIT") and self.committed_at is None:
                self.committed_at = now
            if line.startswith("WORKER-DONE"):
                self.done_at = now
                self.done.set()
        self.proc.wait()
        if self.started_at is None:
            self.started_at = time.perf_counter()
        if not self.done.is_set():
            self.done_at = time.perf_counter()
            self.done.set()
        self.started.set()

    def wait_started(self, timeout: float) -> None:
        """Until the worker's write phase begins: its log says so (every row validated, or
        WORKER-START), then its transaction writes its first row (PostgreSQL gives it a
        transaction id then: pg_stat_activity.backend_xid). An import still plans for a while
        after its last row is validated; that time is not the write phase."""
        deadline = time.monotonic() + timeout
        self.started.wait(timeout)
        if self.done.is_set() or self.backend_pid is None:
            return
        with connection.cursor() as c:
            while time.monotonic() < deadline and not self.done.is_set():
                c.execute("SELECT backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = %s", [self.backend_pid])
                row = c.fetchone()
                if row and row[0]:
                    self.started_at = time.perf_counter()
                    return
                time.sleep(0.02)

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)


def approvals_during(worker: Worker, pool, approver, gap: float) -> dict:
    worker.wait_started(timeout=900)
    samples, exhausted = [], False
    while not worker.done.is_set():
        request_id = next(pool, None)
        if request_id is None:
            exhausted = True
            break
        t0 = time.perf_counter()
        approve(request_id, approver)
        samples.append((t0, time.perf_counter() - t0))
        if gap:
            worker.done.wait(gap)
    worker.done.wait()
    worker.proc.wait()
    # The write phase ends when the worker's COMMIT returns, not when it is done: a retirement then
    # still runs its on_commit callbacks (an outbox wake-up per grant) while approvals pass.
    ended = worker.committed_at or worker.done_at
    during = [lat for t0, lat in samples if t0 < ended]
    return {
        "phase_s": ended - worker.started_at,
        "n": len(during),
        "p50": pct(during, 0.5) if during else None,
        "max": max(during) if during else None,
        "exhausted": exhausted,
        "exit": worker.proc.returncode,
    }


def part_wait(opts) -> list[tuple]:
    from django.contrib.auth import get_user_model

    prefix = "wpw"
    ent_count = 30
    requester = person(prefix, "requester", login=True, roles=("requester",))
    approver = person(prefix, "approver", login=True, roles=("requester", "approver"))
    owner = person(prefix, "sysowner", login=True, roles=("owner",))
    person(prefix, "admin", login=True, roles=("admin",))
    admin = get_user_model().objects.get(username=f"{prefix}-admin")
    ents = entitlements(prefix, system(prefix, "requests", owner), approver, ent_count)
    boxes = machines(prefix, requester, math.ceil(opts.wait_pool / ent_count))
    pairs = [(m.pk, e.pk) for m, e in itertools.product(boxes, ents)][: opts.wait_pool]
    started = time.perf_counter()
    pending = [submit(requester.user, b, e).pk for b, e in pairs]
    log(f"wait: {len(pending)} pending requests submitted in {time.perf_counter() - started:.1f} s")
    pool = iter(pending)
    au = approver.user

    baseline = []
    for _ in range(opts.wait_baseline):
        t0 = time.perf_counter()
        approve(next(pool), au)
        baseline.append(time.perf_counter() - t0)
        time.sleep(opts.wait_gap)
    base50 = pct(baseline, 0.5)
    log(f"wait: approvals alone: p50 {ms(base50)} ms, max {ms(max(baseline))} ms (n={len(baseline)})")

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "identities.csv"
        generate_identities_csv(path, opts.import_rows, tag="wpw")
        log(f"wait: import of {opts.import_rows:,} identities ({path.stat().st_size / 1e6:.1f} MB) starts")
        connections.close_all()
        worker = Worker(["import", str(path)])
        results["import"] = approvals_during(worker, pool, au, opts.wait_gap)
        print(worker.output())
    log(f"wait: import write phase {results['import']['phase_s']:.1f} s, {results['import']['n']} approvals during it")

    retire_owner = person(prefix, "owner2", login=True, roles=("owner",))
    target = entitlements(prefix, system(prefix, "retired", retire_owner), retire_owner, 1, tag="ret")[0]
    bulk_people(prefix, opts.wait_retire_grants)
    made = seed_live_grants(target.pk, prefix, opts.wait_retire_grants)
    log(f"wait: entitlement {target.pk} has {made} live grants; retirement starts")
    connections.close_all()
    worker = Worker(["retire", str(target.pk), str(admin.pk)])
    results["retire"] = approvals_during(worker, pool, au, opts.wait_gap)
    print(worker.output())

    rows = [
        ("wait", "approval alone (floor)", f"p50 {ms(base50)} ms", f"max {ms(max(baseline))} ms, n={len(baseline)}")
    ]
    print()
    print(f"approval alone: p50 {ms(base50)} ms, max {ms(max(baseline))} ms")
    labels = {
        "import": f"approval during {opts.import_rows:,}-row import writes",
        "retire": f"approval during retirement of {opts.wait_retire_grants:,} grants",
    }
    for key, r in results.items():
        ratio = f"{r['p50'] / base50:.1f}x" if r["p50"] else "-"
        ratio_max = f"{r['max'] / base50:.0f}x" if r["max"] else "-"
        note = " (request pool exhausted: raise --wait-pool)" if r["exhausted"] else ""
        note += f" (worker exit {r['exit']})" if r["exit"] else ""
        print(
            f"{labels[key]}: n={r['n']} p50 {ms(r['p50'])} ms ({ratio} alone), max {ms(r['max'])} ms ({ratio_max});"
            f" the {key}'s write phase lasted {r['phase_s']:.1f} s{note}"
        )
        print(
            f"RESULT part=wait during={key} n={r['n']} p50_ms={ms(r['p50'])} max_ms={ms(r['max'])}"
            f" alone_p50_ms={ms(base50)} phase_s={r['phase_s']:.2f} exhausted={r['exhausted']}"
        )
        rows.append(
            (
                "wait",
                labels[key],
                f"max {ms(r['max'])} ms, p50 {ms(r['p50'])} ms",
                f"n={r['n']}, p50 {ratio} alone; phase {r['phase_s']:.1f} s{note}",
            )
        )
    return rows


def worker_main(argv: list[str]) -> None:
    """--_worker import PATH | --_worker retire ENTITLEMENT_ID ACTOR_USER_ID

    Prints WORKER-PID (its database backend), WORKER-START (a retirement begins), WORKER-COMMIT
    whenever a COMMIT of its connection returns, and WORKER-DONE."""
    backend = type(connections[DEFAULT_DB_ALIAS])
    original_commit = backend.commit

    @functools.wraps(original_commit)
    def commit(conn):
        original_commit(conn)
        print("WORKER-COMMIT", flush=True)

    backend.commit = commit
    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        print(f"WORKER-PID {c.fetchone()[0]}", flush=True)
    started = time.perf_counter()
    if argv[0] == "import":
        call_command("import_inventory", "identities", argv[1], stdout=sys.stdout)
    elif argv[0] == "retire":
        from django.contrib.auth import get_user_model

        from governance.services.catalogue import entitlement_retire

        actor = get_user_model().objects.get(pk=int(argv[2]))
        print("WORKER-START", flush=True)
        started = time.perf_counter()
        entitlement_retire(entitlement_id=int(argv[1]), actor=actor, reason="Benchmark: retired")
    else:
        sys.exit(f"unknown worker {argv[0]!r}")
    print(f"WORKER-DONE {time.perf_counter() - started:.2f} s", flush=True)


#
# Part 4: retirement of an entitlement with N live grants against a plain UPDATE
#
def part_retire(opts) -> list[tuple]:
    from django.contrib.auth import get_user_model

    from governance.models import Grant
    from governance.services.catalogue import entitlement_retire

    TIMER.install()
    prefix = "wpr"
    person(prefix, "admin", login=True, roles=("admin",))
    admin = get_user_model().objects.get(username=f"{prefix}-admin")
    owner = person(prefix, "owner", login=True, roles=("owner",))
    sys_obj = system(prefix, "main", owner)
    bulk_people(prefix, opts.retire_grants)
    plain, retire, to_commit, holds, queries = [], [], [], [], []
    for r in range(opts.retire_repeat):
        floor_ent, retired_ent = entitlements(prefix, sys_obj, owner, 2, tag=f"r{r}")
        seed_live_grants(floor_ent.pk, prefix, opts.retire_grants)
        made = seed_live_grants(retired_ent.pk, prefix, opts.retire_grants)

        t0 = time.perf_counter()
        with transaction.atomic(), connection.cursor() as c:
            c.execute(
                "UPDATE governance_grant SET status = 'revoking', end_reason = 'retired', updated_at = now()"
                " WHERE entitlement_id = %s AND status = 'active'",
                [floor_ent.pk],
            )
            rows_plain = c.rowcount
        plain.append(time.perf_counter() - t0)

        TIMER.take()
        counter = QueryCounter()
        with connection.execute_wrapper(counter):
            t0 = time.perf_counter()
            entitlement_retire(entitlement_id=retired_ent.pk, actor=admin, reason="Benchmark: retired")
            retire.append(time.perf_counter() - t0)
        committed = TIMER.last_commit()
        to_commit.append(committed - t0 if committed and committed > t0 else retire[-1])
        hold = TIMER.take()
        holds.append(hold[0] if hold else None)
        queries.append(counter.count)
        revoking = Grant.objects.filter(entitlement_id=retired_ent.pk, status="revoking").count()
        log(
            f"retire {r + 1}/{opts.retire_repeat}: plain UPDATE {rows_plain} rows {plain[-1]:.2f} s;"
            f" entitlement_retire {made} grants {retire[-1]:.2f} s ({retire[-1] / plain[-1]:.0f}x;"
            f" {to_commit[-1]:.2f} s to its COMMIT, the rest on_commit callbacks),"
            f" chain held {ms(holds[-1])} ms, {queries[-1]} queries; {revoking} grants now revoking"
        )
        if revoking != made:
            print(f"note: {made} live grants seeded but {revoking} revoking after the retirement")
    plain50, retire50 = statistics.median(plain), statistics.median(retire)
    ratios = [b / a for a, b in zip(plain, retire, strict=True)]
    known_holds = [h for h in holds if h is not None]
    hold50 = statistics.median(known_holds) if known_holds else None
    print()
    print(
        f"retirement of {opts.retire_grants:,} live grants: {retire50:.2f} s against plain UPDATE {plain50:.3f} s:"
        f" {statistics.median(ratios):.0f}x (runs: {', '.join(f'{x:.0f}x' for x in ratios)});"
        f" chain held {ms(hold50)} ms; {statistics.median(queries):.0f} queries"
    )
    print(
        f"RESULT part=retire grants={opts.retire_grants} runs={len(plain)} retire_s={retire50:.3f} plain_s={plain50:.4f}"
        f" ratio={statistics.median(ratios):.1f} to_commit_s={statistics.median(to_commit):.3f} hold_ms={ms(hold50)}"
        f" queries={statistics.median(queries):.0f}"
    )
    return [
        (
            "retire",
            f"plain UPDATE of {opts.retire_grants:,} grants (floor)",
            f"{plain50:.3f} s",
            f"median of {len(plain)}",
        ),
        (
            "retire",
            f"entitlement_retire, {opts.retire_grants:,} live grants",
            f"{retire50:.2f} s ({statistics.median(ratios):.0f}x floor)",
            f"chain held {ms(hold50)} ms, {statistics.median(queries):.0f} queries",
        ),
    ]


PARTS = {"hold": part_hold, "api": part_api, "wait": part_wait, "retire": part_retire}


def describe_checkout() -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, timeout=20
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    dirty = len([line for line in git("status", "--porcelain").splitlines() if line.strip()])
    return f"{CHECKOUT} at {git('rev-parse', '--short', 'HEAD')} ({dirty} files changed or new)"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_worker":
        worker_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", default="hold,api,wait,retire", help="comma-separated: hold,api,wait,retire")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--keep", action="store_true", help="do not drop and create the database again (only migrate)")
    parser.add_argument("--hold-n", type=int, help="state changes of each kind (full 300)")
    parser.add_argument("--hold-warmup", type=int, help="rounds not counted (full 5)")
    parser.add_argument("--api-clients", type=int, help="concurrent clients (full 8)")
    parser.add_argument("--api-workers", type=int, help="gunicorn workers (full 4)")
    parser.add_argument("--api-worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--api-threads", type=int, default=2, help="threads per gthread worker")
    parser.add_argument("--api-seconds", type=float, help="time bound of the concurrent phase (full 60)")
    parser.add_argument("--api-iterations", type=int, help="bound of create+approve cycles per client (full 400)")
    parser.add_argument("--api-solo-iterations", type=int, help="cycles of the single client first (full 40)")
    parser.add_argument("--api-warmup", type=int, help="cycles per client before anything is timed (full 3)")
    parser.add_argument("--shared-system", action="store_true", help="every entitlement in one system (one hot row)")
    parser.add_argument("--import-rows", type=int, help="identities imported beside the approvals (full 100,000)")
    parser.add_argument("--wait-pool", type=int, help="pending requests to approve (full 600)")
    parser.add_argument("--wait-baseline", type=int, help="approvals timed alone first (full 40)")
    parser.add_argument("--wait-gap", type=float, default=0.05, help="seconds between two approvals")
    parser.add_argument("--wait-retire-grants", type=int, help="live grants of the entitlement retired (full 1,000)")
    parser.add_argument("--retire-grants", type=int, help="live grants of the entitlement retired (full 10,000)")
    parser.add_argument(
        "--retire-repeat",
        type=int,
        help="runs of the retirement and its floor (full 1: 10,000 grants took 6 min before the change)",
    )
    opts = parser.parse_args()
    for key, value in SIZES[opts.size].items():
        if getattr(opts, key, None) is None:
            setattr(opts, key, value)
    parts = [p.strip() for p in opts.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        sys.exit(f"unknown parts {sorted(unknown)}: choose from {', '.join(PARTS)}")
    if connection.vendor != "postgresql":
        sys.exit(f"PostgreSQL only: DATABASE_URL=postgres://postgres@127.0.0.1:5432/{DB_PREFIX}")

    log(f"measuring {describe_checkout()}")
    log(
        f"database {settings.DATABASES['default']['NAME']}, size {opts.size}, parts {', '.join(parts)};"
        f" load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    rows = []
    for part in parts:
        print(f"\n=== {part} ===", flush=True)
        recreate_database(opts.keep)
        started = time.perf_counter()
        rows += PARTS[part](opts)
        log(f"{part}: {time.perf_counter() - started:.0f} s")

    print(f"\n=== summary ({CHECKOUT}, size {opts.size}) ===")
    widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
    for part, what, value, extra in rows:
        print(f"{part:<{widths[0]}}  {what:<{widths[1]}}  {value:<{widths[2]}}  {extra}")


if __name__ == "__main__":
    main()
