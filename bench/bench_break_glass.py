"""Break-glass activation latency on an idle database, then while a big import or an expiry sweep runs.

    psql -h 127.0.0.1 -U postgres -c "create database portal_bgbench"
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_bgbench \
    DJANGO_SETTINGS_MODULE=portal.settings.dev .venv/bin/python bench/bench_break_glass.py \
        --activations 40 --import-rows 50000 --sweep-grants 100000

Drops and recreates the database (only a name starting with `portal_bgbench`). Seeds people with
logins, each eligible to break glass into one entitlement, then times `break_glass_activate` (the
whole service: eligibility, step-up, grant, activation, audit event, notices, commit) one after
another, each by another person:

- idle: nothing else runs;
- import: `manage.py import_inventory` of N identities runs in another process;
- sweep: `grants_expire_due` over M due grants runs in another process.

Step-up checks the password with the settings' hasher; `--real-hash` keeps it (PBKDF2: a few hundred
milliseconds of CPU each, the same idle or loaded), otherwise MD5 so that what is measured is the
database path. The other process is started first and activations begin once it is under way.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402

DB_PREFIX = "portal_bgbench"
PASSWORD = "bench-break-glass"


def log(message: str) -> None:
    print(message, flush=True)


def recreate_database() -> None:
    import psycopg

    db = settings.DATABASES["default"]
    name = db["NAME"]
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
    call_command("migrate", verbosity=0)


def seed_people(count: int) -> list[tuple[int, int]]:
    """`count` people with logins, each eligible for the one break-glass entitlement: (user, eligibility)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.utils import timezone

    from governance.models import Entitlement, Identity, System
    from jit.models import BreakGlassEligibility

    User = get_user_model()
    hashed = make_password(PASSWORD)  # once: the same hash for every login
    with transaction.atomic():
        owner_user = User.objects.create(username="bg-owner", email="bg-owner@example.org", password=hashed)
        owner = Identity.objects.create(name="Bg Owner", kind="human", email=owner_user.email, user=owner_user)
        system = System.objects.create(name="Prod", owner=owner, criticality="critical")
        entitlement = Entitlement.objects.create(
            system=system, name="root", owner=owner, business_purpose="incidents", break_glass_eligible=True
        )
        users = User.objects.bulk_create(
            [User(username=f"oncall-{i}", email=f"oncall-{i}@example.org", password=hashed) for i in range(count)]
        )
        people = Identity.objects.bulk_create(
            [Identity(name=f"Oncall {i}", kind="human", email=u.email, user=u) for i, u in enumerate(users)]
        )
        until = timezone.now() + timedelta(days=30)
        eligibilities = BreakGlassEligibility.objects.bulk_create(
            [
                BreakGlassEligibility(
                    entitlement=entitlement, identity=p, max_duration=timedelta(hours=1), expires_at=until
                )
                for p in people
            ]
        )
    return [(u.pk, e.pk) for u, e in zip(users, eligibilities, strict=True)]


def activate_many(pairs: list[tuple[int, int]], *, while_running: subprocess.Popen | None = None) -> list[float]:
    """Activate with each (user, eligibility) in turn; stop early when the background process ends."""
    from django.contrib.auth import get_user_model

    from jit.services.break_glass import break_glass_activate

    User = get_user_model()
    latencies = []
    for user_id, eligibility_id in pairs:
        if while_running is not None and while_running.poll() is not None:
            break
        user = User.objects.get(pk=user_id)
        started = time.perf_counter()
        break_glass_activate(
            actor=user,
            eligibility_id=eligibility_id,
            incident_reference="INC-BENCH",
            reason="bench",
            password=PASSWORD,
        )
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)  # one activation after another, not a flood
    return latencies


def summary(label: str, latencies: list[float]) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    if not ms:
        log(f"{label}: no activation completed")
        return {"median": float("nan"), "p95": float("nan"), "max": float("nan"), "n": 0}
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    result = {"median": statistics.median(ms), "p95": p95, "max": ms[-1], "n": len(ms)}
    log(
        f"{label}: n={result['n']} median {result['median']:.1f} ms, p95 {result['p95']:.1f} ms, "
        f"max {result['max']:.1f} ms"
    )
    return result


def start_background(kind: str, amount: int, real_hash: bool) -> subprocess.Popen:
    args = [sys.executable, __file__, "--background", kind, "--amount", str(amount)]
    if real_hash:
        args.append("--real-hash")
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # "started" once its heavy part begins
    log(f"  background {kind}: {line.strip()}")
    return process


def background(kind: str, amount: int) -> None:
    """The load: prepare, say "started", then run the heavy part and report its time."""
    if kind == "import":
        from bench.bench_import import generate

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "identities.csv"
            generate(path, amount)
            print("started", flush=True)
            started = time.perf_counter()
            call_command("import_inventory", "identities", str(path), verbosity=0)
            print(f"import of {amount:,} identities: {time.perf_counter() - started:.1f} s", flush=True)
    elif kind == "sweep":
        from bench.bench_expiry_sweep import seed
        from jit.services.expiry import grants_expire_due

        with transaction.atomic():
            seed(amount)
        print("started", flush=True)
        started = time.perf_counter()
        swept = grants_expire_due()
        print(f"sweep of {swept:,} grants: {time.perf_counter() - started:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--activations", type=int, default=40)
    parser.add_argument("--import-rows", type=int, default=50_000)
    parser.add_argument("--sweep-grants", type=int, default=100_000)
    parser.add_argument("--real-hash", action="store_true")
    parser.add_argument("--background", choices=["import", "sweep"])
    parser.add_argument("--amount", type=int)
    options = parser.parse_args()
    if not options.real_hash:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a PostgreSQL database of its own (see the docstring).")
    if options.background:
        background(options.background, options.amount)
        return
    recreate_database()
    n = options.activations
    pairs = seed_people(n * 3 + 5)
    activate_many(pairs[:5])  # warm up: imports, caches, the first connection
    results = {"idle": summary("idle", activate_many(pairs[5 : 5 + n]))}
    for index, (kind, amount) in enumerate((("import", options.import_rows), ("sweep", options.sweep_grants))):
        process = start_background(kind, amount, options.real_hash)
        chunk = pairs[5 + n * (index + 1) : 5 + n * (index + 2)]
        latencies = activate_many(chunk, while_running=process)
        out, _ = process.communicate()
        log(f"  {out.strip()}")
        results[kind] = summary(f"during {kind}", latencies)
    idle = results["idle"]["median"]
    for kind in ("import", "sweep"):
        r = results[kind]
        log(f"ratio {kind}/idle: median {r['median'] / idle:.1f}x, p95 {r['p95'] / results['idle']['p95']:.1f}x")


if __name__ == "__main__":
    main()
