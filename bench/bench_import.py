"""Time importing an N-row identities CSV on PostgreSQL: a first import (all created), then the same file again (no-op).

    psql -h 127.0.0.1 -U postgres -c "create database portal_importbench"
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_importbench \
    DJANGO_SETTINGS_MODULE=portal.settings.dev .venv/bin/python bench/bench_import.py --rows 100000

The file holds people first, then machine identities owned by them. The database is migrated and
its inventory tables emptied first: use a database of its own.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from governance.imports.specs import COLUMNS  # noqa: E402

KINDS = ["service_account", "api_key", "workload", "ai_agent"]
LOCATIONS = ["secrets_manager", "ci_cd", "embedded_in_code", "unknown"]


def generate(path: Path, rows: int, people_share: float = 0.25) -> None:
    """People first (each managed by an earlier one), then machines owned by them (all in one file)."""
    people = max(1, int(rows * people_share))
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(COLUMNS["identities"]) + "\r\n")
        for i in range(people):
            manager = f"h-{i // 10}" if i else ""
            out.write(
                f"h-{i},Person {i},human,active,person{i}@example.org,Team {i % 50},,,{manager},,,,,2025-01-0{1 + i % 9}T09:00:00Z,\r\n"
            )
        for j in range(rows - people):
            kind = KINDS[j % 4]
            owner, backup = f"h-{j % people}", f"h-{(j + 1) % people}"
            out.write(
                f"m-{j},{kind}-{j},{kind},active,,Team {j % 50},{owner},{backup},,static_secret,{LOCATIONS[j % 4]},"
                f"2025-03-01T00:00:00Z,90,2025-06-01T12:00:00Z,{'true' if kind == 'ai_agent' else 'false'}\r\n"
            )


def empty_inventory() -> None:
    with connection.cursor() as c:
        c.execute("TRUNCATE governance_identity, governance_historicalidentity RESTART IDENTITY CASCADE")


_FLOOR_TYPES = {"last_rotated_at": "timestamptz", "rotation_period_days": "integer", "last_used_at": "timestamptz"}


def copy_floor(path: Path) -> float:
    """The floor: COPY the same file into a plain table (typed columns, no index, no constraint)."""
    columns = ", ".join(
        f"{name} {_FLOOR_TYPES.get(name, 'boolean' if name == 'may_self_request' else 'text')}"
        for name in COLUMNS["identities"]
    )
    data = path.read_bytes()
    with connection.cursor() as c:
        c.execute("DROP TABLE IF EXISTS bench_import_floor")
        c.execute(f"CREATE TABLE bench_import_floor ({columns})")
        start = time.perf_counter()
        with c.cursor.copy("COPY bench_import_floor FROM STDIN (FORMAT csv, HEADER true)") as copy:
            copy.write(data)
        seconds = time.perf_counter() - start
        c.execute("DROP TABLE bench_import_floor")
    print(f"COPY floor: {seconds:.3f} s", flush=True)
    return seconds


def timed(label: str, *args) -> float:
    start = time.perf_counter()
    call_command("import_inventory", *args)
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.2f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--orm-writes", action="store_true", help="write with the ORM (bulk_create_with_history), not COPY + SQL"
    )
    options = parser.parse_args()
    if options.orm_writes:
        from governance.imports import staging

        staging.STAGED = frozenset()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a PostgreSQL database of its own (see the docstring).")
    call_command("migrate", verbosity=0)
    empty_inventory()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "identities.csv"
        start = time.perf_counter()
        generate(path, options.rows)
        print(
            f"generated {options.rows:,} rows ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s"
        )
        floor = min(copy_floor(path) for _ in range(3))
        first = timed("first import (all created)", "identities", str(path))
        again = timed("same file again (no-op)", "identities", str(path))
    print(
        f"RESULT rows={options.rows} copy_floor_s={floor:.3f} first_import_s={first:.2f} ({first / floor:.0f}x) "
        f"reimport_s={again:.2f} ({again / floor:.0f}x)"
    )


if __name__ == "__main__":
    main()
