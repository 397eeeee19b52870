"""Agents at work: request + automatic approval + release through the REST API, 8 agents at once.

    psql -h 127.0.0.1 -U postgres -c "create database portal_agentbench"     # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_agentbench DJANGO_SETTINGS_MODULE=portal.settings.dev \\
        .venv/bin/python bench/bench_agents.py [--identities 100000 --agents 8 --seconds 60]

The database is dropped, created again and migrated (only a name starting with portal_agentbench).
Seeded: --identities service accounts (a realistic inventory), --agents AI agents (each owned by a person,
each with its own API token) and --entitlements low-risk entitlements that approve machines
automatically (the system is connected by hand, so a released grant waits for its owner: an agent
takes each entitlement once). gunicorn (--workers sync workers) serves the API on loopback with DEBUG off.

Each agent loops, with its own bearer token: POST /api/v1/requests/ with an intent (the policy approves
it at once and the grant is issued), then POST /api/v1/grants/{id}/release/ (task done). First one
agent alone for --solo-cycles (the floor, timed in the same run), then all agents at once for
--seconds. Reported: cycles/s, p50/p95 of the submit and the release calls, the concurrent p50 as a
ratio to the solo p50, the throughput as a multiple of the solo one, and any non-2xx answer.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")
os.environ["DEBUG"] = "0"
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("PORTAL_DATA_DIR", "/tmp/bench_agents_data")
os.environ["ALLOWED_HOSTS"] = "testserver,localhost,127.0.0.1"
os.environ["SECURE_SSL_REDIRECT"] = "0"
# The bench measures the write path, not the throttle: lift the rates for this process and the server.
os.environ["API_THROTTLE_USER_RATE"] = "1000000/minute"
os.environ["API_THROTTLE_TOKEN_RATE"] = "1000000/minute"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_write_path import log, pct, recreate_database, start_server, stop_server  # importing it sets Django up
from django.contrib.auth import get_user_model
from django.db import connections

DB_PREFIX = "portal_agentbench"


def seed(identities: int, agents: int, entitlements: int) -> tuple[list[tuple[int, str]], list[int]]:
    from governance.models import Entitlement, Identity, System
    from governance.services.credentials import api_token_create

    users = get_user_model().objects
    owner_user = users.create(username="agent-owner", email="owner@example.org")
    owner = Identity.objects.create(name="Agent owner", kind="human", email=owner_user.email, user=owner_user)
    Identity.objects.bulk_create(
        (Identity(name=f"svc-{i:06d}", kind="service_account", owner=owner) for i in range(identities)),
        batch_size=5000,
    )
    system = System.objects.create(name="Warehouse", owner=owner)
    catalogue = Entitlement.objects.bulk_create(
        Entitlement(
            system=system,
            name=f"read-{i}",
            owner=owner,
            risk_tier="low",
            auto_approve_machines=True,
            allowed_identity_kinds=["service_account", "workload", "ai_agent"],
            justification_required=False,
        )
        for i in range(entitlements)
    )
    crew = []
    for i in range(agents):
        agent = Identity.objects.create(name=f"agent-{i}", kind="ai_agent", owner=owner, may_self_request=True)
        issued = api_token_create(
            actor=None,
            identity_id=agent.pk,
            name="bench",
            scopes=["requests:read", "requests:write", "grants:read", "grants:write"],
        )
        crew.append((agent.pk, issued.secret))
    return crew, [e.pk for e in catalogue]


NEXT: Counter = Counter()


class Stats:
    def __init__(self) -> None:
        self.submit: list[float] = []
        self.release: list[float] = []
        self.cycles = 0
        self.statuses: Counter = Counter()
        self.errors: list[str] = []


def call(port: int, token: str, path: str, body: dict) -> tuple[int, dict, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    started = time.perf_counter()
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={
                "Host": f"127.0.0.1:{port}",
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        response = conn.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else {}), time.perf_counter() - started
    finally:
        conn.close()


def agent_loop(port: int, agent: tuple[int, str], catalogue: list[int], stats: Stats, deadline: float, limit: int):
    """A released grant waits for its system's owner to confirm the removal, so an agent never asks for
    the same entitlement twice in a run: each takes the next one it has not had yet (NEXT, across runs)."""
    identity, token = agent
    for _ in range(limit):
        if time.perf_counter() >= deadline:
            return
        cycle = NEXT[identity]
        NEXT[identity] += 1
        if cycle >= len(catalogue):
            stats.errors.append("ran out of entitlements: seed more (--entitlements)")
            return
        entitlement = catalogue[cycle]
        status, data, seconds = call(
            port,
            token,
            "/api/v1/requests/",
            {
                "beneficiary": identity,
                "entitlement": entitlement,
                "duration_seconds": 900,
                "intent": "Benchmark: nightly reconciliation",
                "intent_task": f"T-{identity}-{cycle}",
                "intent_action": "read",
                "intent_resource": "warehouse/orders",
            },
        )
        stats.submit.append(seconds)
        stats.statuses[f"submit {status}"] += 1
        if status != 201 or data.get("status") != "approved" or not data.get("grant"):
            stats.errors.append(f"submit HTTP {status}: {str(data)[:300]}")
            continue
        status, data, seconds = call(port, token, f"/api/v1/grants/{data['grant']}/release/", {"reason": "task done"})
        stats.release.append(seconds)
        stats.statuses[f"release {status}"] += 1
        if status != 200:
            stats.errors.append(f"release HTTP {status}: {str(data)[:300]}")
            continue
        stats.cycles += 1


def run(port: int, crew, catalogue, *, seconds: float, limit: int) -> tuple[list[Stats], float]:
    stats = [Stats() for _ in crew]
    deadline = time.perf_counter() + seconds
    threads = [
        threading.Thread(target=agent_loop, args=(port, agent, catalogue, stats[i], deadline, limit), daemon=True)
        for i, agent in enumerate(crew)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stats, time.perf_counter() - started


def summary(name: str, stats: list[Stats], elapsed: float) -> dict:
    submit = [s for st in stats for s in st.submit]
    release = [s for st in stats for s in st.release]
    cycles = sum(st.cycles for st in stats)
    statuses = sum((st.statuses for st in stats), Counter())
    errors = [e for st in stats for e in st.errors]
    result = {
        "cycles": cycles,
        "per_second": cycles / elapsed,
        "submit_p50": statistics.median(submit) if submit else float("nan"),
        "submit_p95": pct(submit, 95) if submit else float("nan"),
        "release_p50": statistics.median(release) if release else float("nan"),
        "release_p95": pct(release, 95) if release else float("nan"),
    }
    log(
        f"{name}: {cycles} cycles in {elapsed:.1f} s = {result['per_second']:.1f}/s; "
        f"submit p50 {result['submit_p50'] * 1000:.0f} ms p95 {result['submit_p95'] * 1000:.0f} ms; "
        f"release p50 {result['release_p50'] * 1000:.0f} ms p95 {result['release_p95'] * 1000:.0f} ms; "
        f"answers {dict(statuses)}"
    )
    for error in errors[:5]:
        log(f"  error: {error}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--entitlements", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--solo-cycles", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    recreate_database(keep=False, prefix=DB_PREFIX)
    started = time.perf_counter()
    crew, catalogue = seed(args.identities, args.agents, args.entitlements)
    log(f"seeded {args.identities} identities, {args.agents} agents in {time.perf_counter() - started:.1f} s")
    connections.close_all()
    opts = SimpleNamespace(api_workers=args.workers, api_worker_class="sync", api_threads=1)
    server, port = start_server(opts, Path("/tmp/bench_agents_gunicorn.log"))
    try:
        run(port, crew, catalogue, seconds=60, limit=3)  # warm every worker
        solo_stats, solo_elapsed = run(port, crew[:1], catalogue, seconds=args.seconds, limit=args.solo_cycles)
        solo = summary("1 agent alone (floor)", solo_stats, solo_elapsed)
        many_stats, many_elapsed = run(port, crew, catalogue, seconds=args.seconds, limit=10**9)
        many = summary(f"{args.agents} agents at once", many_stats, many_elapsed)
        log(
            f"RESULT agents={args.agents} cycles_per_s={many['per_second']:.1f} "
            f"throughput_vs_solo={many['per_second'] / solo['per_second']:.2f}x "
            f"submit_p50_ratio={many['submit_p50'] / solo['submit_p50']:.2f}x "
            f"submit_p95_ms={many['submit_p95'] * 1000:.0f}"
        )
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
