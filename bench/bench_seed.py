"""Time `seed_demo --identities N` and then a hygiene scan over what it built, on PostgreSQL.

    psql -h 127.0.0.1 -U postgres -c "create database portal_seedbench"     # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_seedbench \\
    DJANGO_SETTINGS_MODULE=portal.settings.dev .venv/bin/python bench/bench_seed.py --identities 100000

The database is dropped and created again first (unless --keep), then migrated: use a database
of its own. Reported: the whole seed_demo command (build, first scan that opens every finding,
one expiry sweep), then a second findings_scan (every finding still present: refresh only).
"""

import argparse
import os
import sys
import time
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")
os.environ.setdefault("DEBUG", "0")  # no query log in memory while inserting 100k rows

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402


def recreate_database() -> None:
    import psycopg

    db = settings.DATABASES["default"]
    name = db["NAME"]
    if not name.startswith("portal_seedbench"):
        sys.exit(f"refusing to drop {name!r}: point DATABASE_URL at portal_seedbench")
    connection.close()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="do not drop the database first")
    parser.add_argument(
        "--history",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="history rows for generated rows (seed_demo's default: up to 10,000 identities)",
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("PostgreSQL only: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_seedbench")

    if not args.keep:
        recreate_database()
    call_command("migrate", verbosity=0)

    from governance.models import Entitlement, Finding, Grant, Identity
    from governance.services.findings import findings_scan

    out = StringIO()
    started = time.perf_counter()
    call_command("seed_demo", identities=args.identities, seed=args.seed, history=args.history, stdout=out)
    seed_seconds = time.perf_counter() - started
    print(out.getvalue().rstrip())

    started = time.perf_counter()
    summary = findings_scan()
    scan_seconds = time.perf_counter() - started

    print()
    print(f"identities:  {Identity.objects.count():>9,}")
    print(f"entitlements:{Entitlement.objects.count():>9,}")
    print(f"grants:      {Grant.objects.count():>9,}")
    print(f"findings:    {Finding.objects.count():>9,}  {summary['by_kind']}")
    flag = {None: "", True: " --history", False: " --no-history"}[args.history]
    print(f"seed_demo --identities {args.identities}{flag}: {seed_seconds:.1f}s (build + first scan + expiry sweep)")
    print(f"findings_scan (rescan, {summary['still_open']:,} still open): {scan_seconds:.1f}s")


if __name__ == "__main__":
    main()
