"""Time importing an N-row identities CSV on PostgreSQL: a first import (all created), then the same file again (no-op).

Two floors, timed in the same run: a COPY of the file into a plain table (no index), and the structural
floor: the rows the import wrote, COPYed into temporary tables shaped like governance_identity and its
history table with all their indexes (and, beside it, the import's audit events COPYed into a table
shaped like the trail's). What the import costs above the structural floor is Python and SQL; the gap
between the two floors is index upkeep.

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
from django.db import connection, transaction  # noqa: E402

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


IDENTITIES, HISTORY, AUDIT = "governance_identity", "governance_historicalidentity", "audit_auditevent"


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


def _last_event() -> int:
    with connection.cursor() as c:
        c.execute("SELECT coalesce(max(seq), 0) FROM audit_auditevent")
        return c.fetchone()[0]


def _table_rows(table: str, where: str = "TRUE") -> bytes:
    """A table's rows as COPY text, read once outside any timing."""
    with connection.cursor() as c:
        out = bytearray()
        with c.cursor.copy(f"COPY (SELECT * FROM {table} WHERE {where} ORDER BY 1) TO STDOUT") as copy:
            for chunk in copy:
                out += chunk
    return bytes(out)


def structural_floor(tables: dict[str, bytes]) -> dict[str, float]:
    """The write's floor: the rows the import wrote, COPYed into temporary tables shaped like them with
    every index and check (`LIKE ... INCLUDING ALL`; no foreign keys, no triggers), one transaction."""
    seconds = {}
    with connection.cursor() as c, transaction.atomic():
        for table, data in tables.items():
            c.execute(f"CREATE TEMP TABLE bench_floor_{table} (LIKE {table} INCLUDING ALL) ON COMMIT DROP")
            start = time.perf_counter()
            with c.cursor.copy(f"COPY bench_floor_{table} FROM STDIN") as copy:
                copy.write(data)
            seconds[table] = time.perf_counter() - start
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
        before = _last_event()
        first = timed("first import (all created)", "identities", str(path))
        again = timed("same file again (no-op)", "identities", str(path))
    tables = {table: _table_rows(table) for table in (IDENTITIES, HISTORY)}
    tables[AUDIT] = _table_rows(AUDIT, f"seq > {before:d}")  # the first import's events
    rounds = [structural_floor(tables) for _ in range(3)]
    identity_floor = min(r[IDENTITIES] for r in rounds)
    history_floor = min(r[HISTORY] for r in rounds)
    audit_floor = min(r[AUDIT] for r in rounds)
    structural = min(r[IDENTITIES] + r[HISTORY] for r in rounds)
    print(
        f"structural floor (COPY into {IDENTITIES} and {HISTORY} shapes, every index): {structural:.3f} s "
        f"({IDENTITIES} {identity_floor:.3f} s, {HISTORY} {history_floor:.3f} s); "
        f"the import's audit events into the {AUDIT} shape: {audit_floor:.3f} s",
        flush=True,
    )
    print(
        f"RESULT rows={options.rows} copy_floor_s={floor:.3f} first_import_s={first:.2f} ({first / floor:.0f}x) "
        f"reimport_s={again:.2f} ({again / floor:.0f}x) structural_floor_s={structural:.3f} "
        f"first_vs_structural={first / structural:.1f}x identity_floor_s={identity_floor:.3f} "
        f"history_floor_s={history_floor:.3f} audit_floor_s={audit_floor:.3f} "
        f"first_vs_structural_and_audit={first / (structural + audit_floor):.1f}x"
    )


if __name__ == "__main__":
    main()
