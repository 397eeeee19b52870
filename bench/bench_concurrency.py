"""Time every list page and API list over HTTP with one client, then with 8 at once, against a floor.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_seedbench \\
    DJANGO_SETTINGS_MODULE=portal.settings.dev .venv/bin/python bench/bench_concurrency.py --requests 20

Reads an organisation `bench_seed.py` built (run after `bench_pages.py`, or it tops the approval queue
up to 500 itself). Starts gunicorn (--workers sync workers, DEBUG off, loopback, a free port; static
files collected once into a directory of its own, as a deployment serves them), signs in the logins
`bench_pages.py` uses (a session cookie each: an admin for the inventory lists, the owner for the
approval queue, the auditor for the audit page) and gives the admin, the owner and the requester a
read-only API token each, for the API lists.

First every page is fetched a few times by --clients at once (`warm_up`: each worker has served each
page, as in a process that has been up a while). Then, per concurrency level (1, then --clients), per
page: every client sends --requests GETs of that page one after another over its own keep-alive
connection (gunicorn's sync workers close it after each response, so the client connects again: what
a browser behind no proxy gets). Right before each
page, the same clients send as many `GET /health/ready/` (one SELECT 1 and the broker check): the floor,
timed the same way at the same concurrency, so the ratio says what the page costs above a request
that does nearly nothing, on the machine as loaded as it was then. Prints p50 / p95 per page for each
level, the floor's, the ratio, and a `RESULT-JSON` line per page and level (`make bench` reads those).
"""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")
os.environ.setdefault("DEBUG", "0")

# bench_pages sets Django up (settings, plain static storage) as it is imported.
from bench_pages import PAGES, top_up_queue
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

CHECKOUT = Path(__file__).resolve().parents[1]
FLOOR = "/health/ready/"
# A token per login for the API lists: read scopes only, what a script that lists things holds.
TOKEN_SCOPES = ["inventory:read", "grants:read", "requests:read"]
# Lists only: the forms of bench_pages.PAGES (paths with a slot) are not lists.
LISTS = [(login, path) for login, path in PAGES if "{" not in path]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


#
# Credentials
#
def sessions() -> dict[str, str]:
    """A session cookie per login, made as the test client's force_login makes it (stored in the database)."""
    logins = {login for login, _ in LISTS}
    cookies = {}
    for user in get_user_model().objects.filter(username__in=logins):
        client = Client()
        client.force_login(user)
        cookies[user.username] = client.cookies["sessionid"].value
    missing = logins - cookies.keys()
    if missing:
        sys.exit(f"no such logins in the database: {sorted(missing)}")
    return cookies


def tokens() -> dict[str, str]:
    from governance.models import Identity
    from governance.services.credentials import api_token_create

    logins = {login for login, path in LISTS if path.startswith("/api/")}
    return {
        login: api_token_create(
            actor=None,
            identity_id=Identity.objects.get(user__username=login).pk,
            name="bench_concurrency",
            scopes=TOKEN_SCOPES,
            expires_in_days=1,
        ).secret
        for login in sorted(logins)
    }


def headers_for(login: str, path: str, cookies: dict[str, str], secrets: dict[str, str]) -> dict[str, str]:
    if path.startswith("/api/"):
        return {"Authorization": f"Bearer {secrets[login]}", "Accept": "application/json"}
    return {"Cookie": f"sessionid={cookies[login]}; tz=Europe/Berlin", "Accept": "text/html"}


#
# The server
#
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(static_root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings.dev",
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STATIC_ROOT": str(static_root),
        "PYTHONPATH": str(CHECKOUT),
    }


def collect_static(static_root: Path) -> None:
    """DEBUG off means hashed static names from the manifest: collect them when a static file is newer
    than the manifest (collecting compresses every file again: a minute of CPU on a busy machine)."""
    manifest = static_root / "staticfiles.json"
    if manifest.exists():
        built = manifest.stat().st_mtime
        sources = [p for p in (CHECKOUT / "static").rglob("*") if p.is_file()]
        sources += [p for p in CHECKOUT.glob("*/static/**/*") if p.is_file()]
        if all(p.stat().st_mtime <= built for p in sources):
            return
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=CHECKOUT,
        env=server_env(static_root),
        check=True,
    )


def start_server(workers: int, static_root: Path, log_path: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--chdir", str(CHECKOUT),
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "sync",
        "--timeout", "120", "--log-level", "warning",
    ]  # fmt: skip
    out = log_path.open("wb")
    server = subprocess.Popen(command, cwd=CHECKOUT, env=server_env(static_root), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}: see {log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", FLOOR)
            conn.getresponse().read()
            conn.close()
            return server, port
        except OSError:
            time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"gunicorn did not answer within 60 s: see {log_path}")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


#
# Clients
#
class Burst:
    """`clients` threads, each with its own connection, released together; each sends `requests` GETs."""

    def __init__(self, port: int, clients: int) -> None:
        self.connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for _ in range(clients)]

    def run(self, path: str, headers: dict[str, str], requests: int) -> tuple[list[float], set[int]]:
        times: list[float] = []
        statuses: set[int] = set()
        lock = threading.Lock()
        gate = threading.Barrier(len(self.connections))

        def client(conn: http.client.HTTPConnection) -> None:
            mine, seen = [], set()
            gate.wait()
            for _ in range(requests):
                started = time.perf_counter()
                try:
                    conn.request("GET", path, headers=headers)
                    response = conn.getresponse()
                    response.read()  # a closing response closes the connection; the next request opens one
                    seen.add(response.status)
                except (OSError, http.client.HTTPException):
                    conn.close()
                    seen.add(0)
                mine.append((time.perf_counter() - started) * 1000)
            with lock:
                times.extend(mine)
                statuses.update(seen)

        threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in self.connections]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return times, statuses

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


def warm_up(port: int, clients: int, cookies, secrets) -> None:
    """Every page fetched by `clients` at once, three times: each worker has served each page.

    A sync worker's first request of a page compiles its templates and builds its SQL (the dashboard,
    the first page, also loads the URL patterns): 100-250 ms, once per process. Without this, one client
    met it on whichever worker its first requests landed, and the p95 of 20 GETs was that start-up.
    """
    burst = Burst(port, clients)
    try:
        for login, path in LISTS:
            burst.run(path, headers_for(login, path, cookies, secrets), 3)
    finally:
        burst.close()


def measure(port: int, clients: int, requests: int, cookies, secrets) -> tuple[list[dict], list[float]]:
    burst = Burst(port, clients)
    rows, floor_all = [], []
    try:
        for login, path in LISTS:
            headers = headers_for(login, path, cookies, secrets)
            burst.run(path, headers, 1)
            floor, _ = burst.run(FLOOR, {}, requests)
            times, statuses = burst.run(path, headers, requests)
            floor_all += floor
            rows.append({"login": login, "path": path, "times": times, "floor": floor, "statuses": statuses})
            print(
                f"  {clients} client(s) {login:<10} {path:<62} p50 {percentile(times, 0.5):>6.0f} ms"
                f"  p95 {percentile(times, 0.95):>6.0f} ms  (floor p95 {percentile(floor, 0.95):.1f} ms)"
                f"  {sorted(statuses)}",
                flush=True,
            )
    finally:
        burst.close()
    return rows, floor_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="GETs of each page per client")
    parser.add_argument("--clients", type=int, default=8, help="the concurrency after one client")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument("--only", default="", help="only pages whose path contains this text")
    parser.add_argument("--queue", type=int, default=500, help="pending requests in the approval queue")
    parser.add_argument(
        "--static-root",
        default=str(Path(tempfile.gettempdir()) / "bench_concurrency_static"),
        help="collectstatic here",
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("PostgreSQL only: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_seedbench")
    global LISTS
    if args.only:
        LISTS = [(login, path) for login, path in LISTS if args.only in path]

    from governance.demo import demo_organisation_exists

    if not demo_organisation_exists():
        sys.exit("no demo organisation in this database: build one first (bench_seed.py, or run_all.py)")
    top_up_queue(args.queue)
    cookies, secrets = sessions(), tokens()
    connection.close()  # the server's workers are the ones that work now
    static_root = Path(args.static_root)
    collect_static(static_root)
    log_path = Path(tempfile.gettempdir()) / f"bench_concurrency_gunicorn_{os.getpid()}.log"
    server, port = start_server(args.workers, static_root, log_path)
    print(
        f"gunicorn pid {server.pid}, {args.workers} sync workers on 127.0.0.1:{port} (log {log_path});"
        f" {len(LISTS)} pages, {args.requests} GETs per client; load {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        flush=True,
    )
    results = {}
    try:
        warm_up(port, max(args.clients, args.workers), cookies, secrets)
        for clients in sorted({1, args.clients}):
            results[clients] = measure(port, clients, args.requests, cookies, secrets)
    finally:
        stop_server(server)
    print(f"\nload at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")

    levels = sorted(results)
    header = f"{'login':<10} {'page':<62}" + "".join(
        f" {f'{c} cl p50':>9} {f'{c} cl p95':>9} {'ratio':>6}" for c in levels
    )
    print(header)
    for clients in levels:
        floor = results[clients][1]
        print(
            f"{'floor':<10} {FLOOR:<62} ({clients} client(s)) p50 {percentile(floor, 0.5):.1f} ms"
            f" p95 {percentile(floor, 0.95):.1f} ms"
        )
    for i, (login, path) in enumerate(LISTS):
        line = f"{login:<10} {path:<62}"
        for clients in levels:
            row, floor = results[clients][0][i], results[clients][1]
            p95, floor95 = percentile(row["times"], 0.95), percentile(floor, 0.95)
            line += f" {percentile(row['times'], 0.5):>6.0f} ms {p95:>6.0f} ms {p95 / floor95:>5.1f}x"
        bad = set().union(*(results[c][0][i]["statuses"] for c in levels)) - {200}
        print(line + (f"  statuses {sorted(bad)}" if bad else ""))
    for clients in levels:
        rows, floor_all = results[clients]
        for row in rows:
            for q in (0.5, 0.95):
                name = (
                    f"http {clients} client{'s' if clients > 1 else ''} p{round(q * 100)}: {row['login']} {row['path']}"
                )
                print(
                    "RESULT-JSON "
                    + json.dumps(
                        {
                            "name": name,
                            "figure": f"GET as {row['login']} over HTTP, {clients} at once ({len(row['times'])} GETs)",
                            "floor": f"GET {FLOOR} the same way right before, p{round(q * 100)} of the run",
                            "unit": "ms",
                            "figures": [round(percentile(row["times"], q), 3)],
                            "floors": [round(percentile(floor_all, q), 3)],
                        }
                    )
                )


if __name__ == "__main__":
    main()
