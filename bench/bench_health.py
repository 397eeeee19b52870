"""Time `/health/` and its expiry-sweep check on a seeded database, against their floors, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_seedbench \\
    DJANGO_SETTINGS_MODULE=portal.settings.dev .venv/bin/python bench/bench_health.py --rounds 50

Reads a database seeded by bench_seed.py (or `make bench`); it stamps the sweep's heartbeat now, so
that the check goes on to the overdue grants (a stale heartbeat answers before asking). Round after
round, in alternating order:

- `/health/` through Django's test client (middleware, every check, the JSON answer), against
  `/health/ready/` (the database and broker checks only) through the same client;
- `check_expiry_sweep()` alone (the database's clock, the heartbeat, the overdue grants), against
  one `SELECT 1` round trip.

The broker is `memory://` unless CELERY_BROKER_URL says otherwise. Prints p50s and `RESULT-JSON` lines.
"""

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ["ALLOWED_HOSTS"] = "testserver,localhost,127.0.0.1"
os.environ["SECURE_SSL_REDIRECT"] = "0"  # the test client speaks plain http

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def interleaved(figure, floor, rounds: int, warmup: int) -> tuple[list[float], list[float]]:
    for _ in range(warmup):
        figure()
        floor()
    figures, floors = [], []
    for round_ in range(rounds):
        if round_ % 2:
            floors.append(timed(floor))
            figures.append(timed(figure))
        else:
            figures.append(timed(figure))
            floors.append(timed(floor))
    return figures, floors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("PostgreSQL only: set DATABASE_URL to a database seeded by bench_seed.py")

    from audit.kernel.clock import database_now
    from governance.models import Grant
    from jit.health import check_expiry_sweep
    from jit.models import Heartbeat
    from jit.services.expiry import SWEEP

    Heartbeat.objects.update_or_create(name=SWEEP, defaults={"last_run_at": database_now()})
    logging.getLogger("django.request").setLevel(logging.CRITICAL)  # a 503 (no audit checkpoint yet) is an answer too
    client = Client()

    def health():
        response = client.get("/health/")
        assert response.status_code in (200, 503), response.status_code

    def ready():
        response = client.get("/health/ready/")
        assert response.status_code in (200, 503), response.status_code

    def select_one():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    answer = client.get("/health/").json()
    print(f"{Grant.objects.count():,} grants; /health/ answers {answer}")
    cases = [
        (
            "/health/",
            "GET /health/ (test client: every check)",
            "GET /health/ready/ (database and broker)",
            health,
            ready,
        ),
        (
            "health: expiry sweep check",
            "check_expiry_sweep(): database clock, heartbeat, overdue grants",
            "one SELECT 1 round trip",
            lambda: check_expiry_sweep(),
            select_one,
        ),
    ]
    for name, figure_label, floor_label, figure, floor in cases:
        figures, floors = interleaved(figure, floor, args.rounds, args.warmup)
        ratios = sorted(f / b for f, b in zip(figures, floors, strict=True))
        print(
            f"{name}: p50 {statistics.median(figures):.2f} ms (max {max(figures):.2f}); floor p50"
            f" {statistics.median(floors):.2f} ms; ratio {ratios[0]:.1f}x / {statistics.median(ratios):.1f}x /"
            f" {ratios[-1]:.1f}x",
            flush=True,
        )
        row = {
            "name": name,
            "figure": figure_label,
            "floor": floor_label,
            "unit": "ms",
            "figures": [round(x, 3) for x in figures],
            "floors": [round(x, 3) for x in floors],
        }
        print("RESULT-JSON " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
