"""Revocations delivered per second through the webhook connector when N grants of one system expire at once.

    psql -h 127.0.0.1 -U postgres -c "create database portal_whbench"        # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_whbench DJANGO_SETTINGS_MODULE=portal.settings.dev \\
        .venv/bin/python bench/bench_webhook_revocations.py --grants 100000 --workers 2 [--max-seconds 600]

The database is dropped, created again and migrated first (it refuses any name not starting with
portal_whbench). Then:

1. A target: a threaded HTTP server on 127.0.0.1 (a port of its own, in this process) that checks
   every signature with audit.webhooks.webhook_verify, counts each Idempotency-Key once and answers
   200 at once.
2. The floor: N signed POSTs of an event like the connector's (same body size, same signing and
   sending code, audit.webhooks.webhook_send), sent by --workers bare loops in processes of their
   own, with no database: what the machine can do to this server with this HTTP client.
3. One webhook system (system_create, its signing secret encrypted) and N active JIT grants of it
   (identities x 100 entitlements, seeded with SQL), every one expired a minute ago. The expiry sweep
   (jit.services.expiry.grants_expire_due) moves them to `revoking` and writes one outbox message each.
4. --workers dispatcher processes, each with its own database connection, call
   audit.outbox.outbox_dispatch() in a loop (what the celery worker's outbox task does, without the broker:
   every message is due now, so wake-ups add nothing). Each batch of OUTBOX_CLAIM_BATCH messages: one
   short transaction claims them (leases); the grants are read in one query and the webhook connector's
   signed POSTs go out side by side in a few threads (no transaction open); one short transaction
   records the outcomes with grants_confirm_revoked_many (the grants expired set-based, one audit event
   each). The clock starts once every worker has
   loaded Django and connected (a GO on its stdin) and ends when every grant is `expired` (confirmed)
   or after --max-seconds; the rate is then over what was confirmed by then. Each worker counts the
   statements it ran (BEGIN and COMMIT not included).

The holders are people without a login (as in bench_expiry_sweep.py): nobody is notified, so the
outbox carries the revocations and nothing else. Settings for this process and its children: DEBUG=0,
CELERY_BROKER_URL=memory://, CONNECTOR_WEBHOOK_ALLOW_HTTP=1, a throwaway CONNECTOR_SECRET_KEYS.
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")
os.environ.setdefault("DEBUG", "0")  # no query log in memory
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("CONNECTOR_WEBHOOK_ALLOW_HTTP", "1")
if "CONNECTOR_SECRET_KEYS" not in os.environ:  # a throwaway key, inherited by the worker processes
    from cryptography.fernet import Fernet

    os.environ["CONNECTOR_SECRET_KEYS"] = Fernet.generate_key().decode()
os.environ.setdefault("PORTAL_DATA_DIR", "/tmp/bench_webhook_revocations_data")

import django  # noqa: E402

django.setup()

from django.db import connection, connections, transaction  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_write_path import log, recreate_database  # noqa: E402  the benches' one log and database reset

DB_PREFIX = "portal_whbench"
SECRET = "bench-webhook-signing-secret-0123456789"
ENTITLEMENTS = 100


#
# The target
#
class Target:
    """Verifies each signature, counts each Idempotency-Key once, answers 200 at once."""

    def __init__(self) -> None:
        from audit.webhooks import webhook_verify

        self.lock = threading.Lock()
        self.keys: set[str] = set()
        self.received = self.bad = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps connections, as a real target does: the portal reuses them

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = webhook_verify(
                    SECRET, self.headers["X-Portal-Timestamp"], body, self.headers["X-Portal-Signature"]
                )
                with target.lock:
                    target.received += 1
                    if ok:
                        target.keys.add(self.headers["Idempotency-Key"])
                    else:
                        target.bad += 1
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 128
        self.url = f"http://127.0.0.1:{self.server.server_port}/portal/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.keys.clear()
            self.received = self.bad = 0


#
# The floor: bare loops, no database
#
def _floor_loop(url: str, start: int, count: int, sample: bytes, done) -> None:
    from audit.webhooks import webhook_send

    template = json.loads(sample)
    for i in range(start, start + count):
        template["grant"]["id"] = i
        body = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
        webhook_send(url, secret=SECRET, event="grant.revoke", body=body, idempotency_key=f"floor:{i}", timeout=10)
    done.put(count)


def floor(url: str, n: int, workers: int, sample: bytes) -> float:
    context = multiprocessing.get_context("fork")
    done = context.Queue()
    share = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    processes, start = [], 0
    for count in share:
        processes.append(context.Process(target=_floor_loop, args=(url, start, count, sample, done)))
        start += count
    began = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return time.perf_counter() - began


#
# Database and seeding
#
def seed(n: int, url: str) -> int:
    """One webhook system, ENTITLEMENTS entitlements, n active JIT grants expired a minute ago; the system's id."""
    from governance.models import Identity
    from governance.services.catalogue import system_create

    owner = Identity.objects.create(kind="human", name="bench owner", team="Bench")
    system = system_create(
        actor=None,
        name="bench webhook target",
        owner=owner,
        connector="webhook",
        connector_settings={"url": url, "signing_secret": SECRET, "account_attribute": "name"},
    )
    identities = (n + ENTITLEMENTS - 1) // ENTITLEMENTS
    with transaction.atomic(), connection.cursor() as c:
        c.execute(
            "INSERT INTO governance_identity (name, kind, status, email, team, description, credential_type,"
            " secret_location, may_self_request, created_at, updated_at)"
            " SELECT 'bench-' || g, 'human', 'active', '', 'bench', '', '', '', false, now(), now()"
            " FROM generate_series(1, %s) g",
            [identities],
        )
        c.execute(
            "INSERT INTO governance_entitlement (system_id, name, owner_id, business_purpose, risk_tier, requestable,"
            " approval_stages, auto_approve_machines, break_glass_eligible, justification_required, ticket_required,"
            " allowed_identity_kinds, review_cadence_days, status, created_at, updated_at, auto_approve_kinds,"
            " auto_approve_max_risk, auto_approve_max_finding_severity, auto_approve_intent_fields, target_name)"
            " SELECT %s, 'bench-' || g, %s, '', 'low', true, '[]', false, false, true, false, '[]', 90, 'active',"
            " now(), now(), '[]', 'low', 'medium', '[]', 'role_' || g"
            " FROM generate_series(1, %s) g",
            [system.pk, owner.pk, ENTITLEMENTS],
        )
        c.execute(
            "INSERT INTO governance_grant (identity_id, entitlement_id, kind, status, granted_at, expires_at, reason,"
            " end_reason, no_renew, connector_reference, last_error, created_at, updated_at, approved_duration)"
            " SELECT i.id, e.id, 'jit', 'active', now() - interval '2 hours', now() - interval '1 minute', '', '',"
            " false, '', '', now(), now(), interval '2 hours'"
            " FROM (SELECT id FROM governance_identity WHERE name LIKE 'bench-%%' ORDER BY id) i"
            " CROSS JOIN (SELECT id FROM governance_entitlement WHERE system_id = %s ORDER BY id) e"
            " LIMIT %s",
            [system.pk, n],
        )
        c.execute("ANALYZE governance_grant")
        c.execute("ANALYZE governance_identity")
    return system.pk


def sample_body(system_id: int) -> bytes:
    """A revocation event as the connector would send it, for the floor's bodies."""
    from audit.webhooks import webhook_body
    from governance.connectors.webhook import WebhookConnector
    from governance.models import Grant, System

    grant = Grant.objects.select_related("identity", "entitlement").first()
    connector = WebhookConnector({"account_attribute": "name"}, System.objects.get(pk=system_id))
    grant.status = "revoking"
    payload = connector._payload(
        "grant.revoke",
        account=connector.account_for(grant.identity),
        target_name=connector.target_name_for(grant.entitlement),
        grant=grant,
    )
    return webhook_body(payload)


#
# The dispatcher workers
#
def worker_main(max_seconds: float) -> None:
    """Connect, say READY, wait for GO on stdin, then deliver due outbox messages until none is left (or
    max_seconds pass); print what was done and how many statements it took."""
    from audit.outbox import outbox_dispatch

    class Counter:
        statements = 0

        def __call__(self, execute, sql, params, many, context):
            Counter.statements += 1
            return execute(sql, params, many, context)

    with connection.cursor() as c:
        c.execute("SELECT 1")
    print("WORKER-READY", flush=True)
    sys.stdin.readline()
    deadline = time.time() + max_seconds
    delivered = failed = dead = 0
    idle = 0
    with connection.execute_wrapper(Counter()):
        while time.time() < deadline:
            result = outbox_dispatch()  # as the outbox task calls it: OUTBOX_BATCH_SIZE messages at most
            delivered, failed, dead = delivered + result.delivered, failed + result.failed, dead + result.dead
            if result.delivered + result.failed + result.dead == 0:
                idle += 1
                if idle >= 3:
                    break
                time.sleep(0.5)  # the other worker may hold the last claims
            else:
                idle = 0
    per = Counter.statements / delivered if delivered else 0
    print(
        f"WORKER-DONE delivered={delivered} failed={failed} dead={dead} statements={Counter.statements}"
        f" ({per:.1f} per delivery, BEGIN/COMMIT not counted)",
        flush=True,
    )


def confirmed_count() -> int:
    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM governance_grant WHERE status = 'expired'")
        return c.fetchone()[0]


def status_counts() -> dict[str, int]:
    with connection.cursor() as c:
        c.execute("SELECT status, count(*) FROM governance_grant GROUP BY status")
        return dict(c.fetchall())


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--_worker":  # --_worker MAX_SECONDS
        worker_main(float(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="dispatcher processes (and floor loops)")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop the dispatch after this long")
    parser.add_argument("--floor", type=int, help="POSTs of the floor (default: --grants)")
    opts = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit(f"PostgreSQL only: DATABASE_URL=postgres://postgres@127.0.0.1:5432/{DB_PREFIX}")
    log(f"{opts.grants:,} grants, {opts.workers} workers; load average {os.getloadavg()[0]:.2f}")
    recreate_database(keep=False, prefix=DB_PREFIX)
    target = Target()
    system_id = seed(opts.grants, target.url)
    sample = sample_body(system_id)
    log(f"seeded {opts.grants:,} expired grants of one webhook system; event body {len(sample)} bytes")

    # The floor first: the same server, the same client code, no database.
    floor_n = opts.floor or opts.grants
    connections.close_all()  # no connection crosses the fork
    floor_s = floor(target.url, floor_n, opts.workers, sample)
    floor_rate = floor_n / floor_s
    log(
        f"floor: {floor_n:,} signed POSTs by {opts.workers} bare loops in {floor_s:.1f} s = {floor_rate:,.0f}/s"
        f" (target saw {target.received:,}, {target.bad} bad signatures)"
    )
    target.reset()

    from jit.services.expiry import grants_expire_due

    started = time.perf_counter()
    swept = grants_expire_due()
    sweep_s = time.perf_counter() - started
    log(f"expiry sweep: {swept:,} grants to revoking, {swept:,} outbox messages, in {sweep_s:.1f} s")
    connections.close_all()

    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--_worker", str(opts.max_seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for _ in range(opts.workers)
    ]
    for worker in workers:  # Django loaded and connected: the clock starts with the work, not the imports
        line = worker.stdout.readline()
        if line.strip() != "WORKER-READY":
            sys.exit(f"a worker did not start: {line!r}")
    began = time.perf_counter()
    for worker in workers:
        worker.stdin.write("GO\n")
        worker.stdin.flush()
    confirmed, finished, last_log = 0, None, began
    while any(w.poll() is None for w in workers):
        time.sleep(1)
        confirmed = confirmed_count()
        now = time.perf_counter()
        if confirmed >= swept and finished is None:
            finished = now  # all confirmed: the workers only have to notice that nothing is left
        if now - last_log >= 10:
            last_log = now
            log(
                f"  {now - began:6.0f} s: {confirmed:,} confirmed revoked ({confirmed / (now - began):,.0f}/s),"
                f" target saw {target.received:,}"
            )
    elapsed = (finished or time.perf_counter()) - began
    for worker in workers:
        out, _ = worker.communicate()
        log(f"  worker: {out.strip()}")
    counts = status_counts()
    confirmed = counts.get("expired", 0)
    rate = confirmed / elapsed
    complete = confirmed == swept
    print()
    print(f"target: {target.received:,} POSTs, {len(target.keys):,} distinct Idempotency-Keys, {target.bad} bad")
    print(f"grants by status: {counts}")
    print(
        f"webhook revocations: {confirmed:,} of {swept:,} confirmed in {elapsed:.1f} s = {rate:,.0f}/s"
        f" ({opts.workers} dispatcher processes){'' if complete else ' (stopped at --max-seconds: the rate over those)'}"
    )
    print(f"floor: {floor_rate:,.0f} signed POSTs/s by {opts.workers} bare loops, no database")
    print(f"ratio: the dispatch delivers at {rate / floor_rate:.2f}x the floor ({floor_rate / rate:.1f}x slower)")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"RESULT grants={swept} workers={opts.workers} confirmed={confirmed} seconds={elapsed:.1f} rate={rate:.1f}"
        f" floor_rate={floor_rate:.1f} ratio={rate / floor_rate:.3f} sweep_s={sweep_s:.1f} complete={complete}"
    )


if __name__ == "__main__":
    main()
