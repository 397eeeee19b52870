"""`make bench`: build a database at a scale, run every benchmark under bench/ against its floor, one table.

    make bench                                  # 100,000 identities (about an hour or more)
    make bench IDENTITIES=10000                 # a smaller organisation
    make bench IDENTITIES=10000 ONLY=search,health,pages REPEAT=5
    .venv/bin/python bench/run_all.py --help

Each benchmark script runs as a subprocess against a PostgreSQL database of its own, named
`<script's prefix>_<tag>` (`--tag`, default `make`): the scripts drop and recreate theirs, so
nothing else on the server is touched. First `bench_seed.py` builds the organisation
(`seed_demo --identities N`), which is then VACUUM ANALYZEd so plans are the ones a settled
database gets; search, health and pages read that database. Every figure is measured beside its
floor in the same run (interleaved where the script can, see bench/README.md), and scripts that
time one pair per run are run `--repeat` times.

Prints one table (figure, floor, ratio min / median / max over the runs) and saves it with every
run's numbers as JSON under bench/results/ (gitignored), with each script's output beside it.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BENCH = Path(__file__).resolve().parent
CHECKOUT = BENCH.parent
RESULTS = BENCH / "results"
# Benchmarks only: the settings refuse to start without connector keys when DEBUG is off.
BENCH_CONNECTOR_KEY = "YmVuY2gtb25seS1rZXktbmV2ZXItdXNlLWl0LTEyMzQ="  # a Fernet key: 32 bytes, base64


#
# Rows
#
@dataclass
class Row:
    """One figure and its floor, over every run. Costs are figure/floor; for a rate (`per_second`), floor/figure."""

    name: str
    figure: str
    floor: str | None
    unit: str
    figures: list[float] = field(default_factory=list)
    floors: list[float] | None = field(default_factory=list)
    ratios: list[float] | None = None  # when a script gives its runs' ratios but not their pairs
    per_second: bool = False
    notes: list[str] = field(default_factory=list)

    def add(self, figures: list[float], floors: list[float] | None) -> None:
        self.figures += figures
        if floors is None or self.floors is None:
            self.floors = None
        else:
            self.floors += floors

    def run_ratios(self) -> list[float]:
        if self.ratios:
            return sorted(self.ratios)
        if not self.floors or len(self.floors) != len(self.figures):
            return []
        pairs = zip(self.figures, self.floors, strict=True)
        if self.per_second:
            return sorted(b / f for f, b in pairs if f)
        return sorted(f / b for f, b in pairs if b)

    def as_json(self) -> dict:
        ratios = self.run_ratios()
        return {
            "name": self.name,
            "figure": self.figure,
            "floor": self.floor,
            "unit": self.unit,
            "per_second": self.per_second,
            "figure_median": statistics.median(self.figures) if self.figures else None,
            "floor_median": statistics.median(self.floors) if self.floors else None,
            "ratio_min": ratios[0] if ratios else None,
            "ratio_median": statistics.median(ratios) if ratios else None,
            "ratio_max": ratios[-1] if ratios else None,
            "figures": self.figures,
            "floors": self.floors,
            "ratios": ratios,
            "notes": self.notes,
        }


class Rows(dict):
    def put(self, name: str, figure: str, floor: str | None, unit: str, figures, floors, **extra) -> Row:
        row = self.get(name)
        if row is None:
            row = self[name] = Row(name, figure, floor, unit, **extra)
        row.add(list(figures), None if floors is None else list(floors))
        if floor is None and not row.notes:
            row.notes.append("no floor: the script measures none")
        return row


#
# What each script prints
#
def _float(text: str) -> float:
    return float(text.replace(",", ""))


def _result_pairs(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)


def parse_result_json(out: str, rows: Rows) -> None:
    """bench_search.py, bench_health.py, bench_pages.py: a `RESULT-JSON {...}` line per row."""
    for line in out.splitlines():
        if line.startswith("RESULT-JSON "):
            data = json.loads(line[len("RESULT-JSON ") :])
            row = rows.put(
                data["name"], data["figure"], data["floor"], data["unit"], data["figures"], data.get("floors")
            )
            if data.get("note") and data["note"] not in row.notes:
                row.notes.append(data["note"])


def parse_seed(out: str, rows: Rows) -> None:
    seed = re.search(r"seed_demo --identities (\d+)\S*: ([\d.]+)s", out)
    scan = re.search(r"findings_scan \(rescan, ([\d,]+) still open\): ([\d.]+)s", out)
    if seed:
        rows.put(
            "seed",
            f"seed_demo --identities {int(seed[1]):,} (build, first scan, sweep)",
            None,
            "s",
            [_float(seed[2])],
            None,
        )
    if scan:
        rows.put("findings rescan", f"findings_scan, {scan[1]} findings still open", None, "s", [_float(scan[2])], None)


def parse_expiry_sweep(out: str, rows: Rows) -> None:
    plain = re.search(r"plain SQL UPDATE: (\d+) rows in ([\d.]+) s", out)
    sweep = re.search(r"expiry sweep:\s+(\d+) grants in ([\d.]+) s", out)
    if plain and sweep:
        rows.put(
            "expiry sweep",
            f"grants_expire_due() of {int(sweep[1]):,} due grants",
            "a plain UPDATE of the same rows",
            "s",
            [_float(sweep[2])],
            [_float(plain[2])],
        )


def parse_import(out: str, rows: Rows) -> None:
    for line in out.splitlines():
        if not line.startswith("RESULT "):
            continue
        values = _result_pairs(line)
        floor_key = next((k for k in ("copy_floor_s", "copy_s", "floor_s") if k in values), None)
        floor = [_float(values[floor_key])] if floor_key else None
        label = "a COPY of the same rows into a plain table" if floor_key else None
        rows.put(
            "import",
            f"import_inventory of {int(values['rows']):,} identities (all new)",
            label,
            "s",
            [_float(values["first_import_s"])],
            floor,
        )
        rows.put(
            "import again (no-op)",
            "the same file again (nothing changes)",
            label,
            "s",
            [_float(values["reimport_s"])],
            floor,
        )


def parse_certification(out: str, rows: Rows) -> None:
    launch = re.search(
        r"\| launch ([\d,]+) items \| ([\d.]+) s against the floor's ([\d.]+) s: \*\*[\d.]+x\*\* \(runs ([^)]*)\)", out
    )
    if launch:
        row = rows.put(
            "certification launch",
            f"campaign_launch over {launch[1]} grants",
            "the same INSERT ... SELECT into a plain table",
            "s",
            [_float(launch[2])],
            [_float(launch[3])],
        )
        row.ratios = (row.ratios or []) + [_float(r.rstrip("x")) for r in launch[4].split(",") if r.strip()]
        row.notes = ["medians of the script's launch runs; ratios are per run"]
    for length, ms, queries in re.findall(r"\| queue page, ([\d,]+) items \| ([\d.]+) ms, (\d+) queries \|", out):
        rows.put(
            f"certification queue ({length})",
            f"reviewer queue page, {length} items, {queries} queries",
            None,
            "ms",
            [_float(ms)],
            None,
        )
    report = re.search(r"\| CSV report, ([\d,]+) lines, [\d.]+ MB \| ([\d.]+) s", out)
    if report:
        rows.put(
            "certification CSV", f"campaign report, {report[1]} lines, streamed", None, "s", [_float(report[2])], None
        )


def parse_api_tokens(out: str, rows: Rows) -> None:
    medians = dict(re.findall(r"(session|person token|machine token)\s+median\s+([\d.]+) ms", out))
    if "session" in medians:
        for who in ("person token", "machine token"):
            if who in medians:
                rows.put(
                    f"api by {who}",
                    f"GET /api/v1/grants/ by a {who} (median of its calls)",
                    "the same call by session (median)",
                    "ms",
                    [_float(medians[who])],
                    [_float(medians["session"])],
                )


def parse_break_glass(out: str, rows: Rows) -> None:
    found = dict(
        (label, _float(median))
        for label, median in re.findall(r"(idle|during import|during sweep): n=\d+ median ([\d.]+) ms", out)
    )
    if "idle" in found:
        for label in ("during import", "during sweep"):
            if label in found:
                rows.put(
                    f"break-glass {label}",
                    f"break_glass_activate() {label.replace('during', 'during an')} (median)",
                    "the same activations on an idle database (median)",
                    "ms",
                    [found[label]],
                    [found["idle"]],
                )


def parse_agents(out: str, rows: Rows) -> None:
    found = {
        m[1]: (_float(m[2]), _float(m[3]))
        for m in re.finditer(
            r"(1 agent alone \(floor\)|\d+ agents at once): \d+ cycles in [\d.]+ s = ([\d.]+)/s; submit p50 (\d+) ms",
            out,
        )
    }
    solo = found.pop("1 agent alone (floor)", None)
    for label, (rate, submit) in found.items():
        if solo:
            rows.put(
                "agents: throughput",
                f"{label}: request-and-release cycles per second",
                "one agent alone, cycles per second",
                "/s",
                [rate],
                [solo[0]],
                per_second=True,
            )
            rows.put(
                "agents: submit p50", f"{label}: submit p50", "one agent alone: submit p50", "ms", [submit], [solo[1]]
            )


def parse_webhook(out: str, rows: Rows) -> None:
    for line in out.splitlines():
        if line.startswith("RESULT "):
            values = _result_pairs(line)
            rows.put(
                "webhook revocations",
                f"outbox dispatch of {int(values['grants']):,} webhook revocations, deliveries per second",
                "signed POSTs per second by bare loops (no database)",
                "/s",
                [_float(values["rate"])],
                [_float(values["floor_rate"])],
                per_second=True,
            )


def parse_write_path(out: str, rows: Rows) -> None:
    for line in out.splitlines():
        if not line.startswith("RESULT part="):
            continue
        v = _result_pairs(line)
        part = v["part"]
        if part == "hold":
            rows.put(
                f"write path: {v['kind']}",
                f"{v['kind']}: transaction p50 ({v['queries']} queries)",
                "a one-row UPDATE and its COMMIT (p50)",
                "ms",
                [_float(v["txn_p50_ms"])],
                [_float(v["floor_p50_ms"])],
            )
        elif part == "retire":
            rows.put(
                "write path: retire",
                f"entitlement_retire with {int(v['grants']):,} live grants",
                "a plain UPDATE of as many grants",
                "s",
                [_float(v["retire_s"])],
                [_float(v["plain_s"])],
            )
        elif part == "wait":
            rows.put(
                f"write path: approval during {v['during']}",
                f"an approval (p50) while a {v['during']} writes",
                "an approval alone (p50)",
                "ms",
                [_float(v["p50_ms"])],
                [_float(v["alone_p50_ms"])],
            )
        elif part == "api":
            rows.put(
                "write path: approvals/s",
                f"{v['clients']} clients over HTTP ({v['workers']} workers): approvals per second",
                "one client alone: approvals per second",
                "/s",
                [_float(v["approvals_per_s"])],
                [_float(v["solo_per_s"])],
                per_second=True,
            )


def parse_audit_trail(out: str, rows: Rows) -> None:
    """bench_audit_trail.py: RESULT-JSON lines if it prints them, else its table (page, median, worst, queries)."""
    if "RESULT-JSON " in out:
        parse_result_json(out, rows)
        return
    events = re.search(r"([\d,]+) audit events;", out)
    size = f" over {events[1]} events" if events else ""
    for path, median, queries in re.findall(r"^(/\S+)\s+([\d.]+)ms\s+[\d.]+ms\s+(\d+)\s+\d+\s*$", out, re.MULTILINE):
        rows.put(
            f"audit: {path}",
            f"GET {path} as auditor{size} ({queries} queries, median of its runs)",
            None,
            "ms",
            [_float(median)],
            None,
        )


#
# The benchmarks
#
@dataclass
class Bench:
    name: str
    script: str
    database: str  # the script's own database: its prefix (the runner adds _<tag>)
    args: callable
    parse: callable
    repeat: bool = False  # one pair per run: run it --repeat times
    create: bool = False  # the script expects its database to exist (the runner drops and creates it)
    shared: bool = False  # reads the seeded organisation


def benches(opts) -> list[Bench]:
    n, r = opts.identities, opts.repeat
    return [
        Bench("seed", "bench_seed.py", "portal_seedbench", lambda: ["--identities", str(n)], parse_seed),
        Bench(
            "search",
            "bench_search.py",
            "portal_seedbench",
            lambda: ["--rounds", str(max(10, 5 * r))],
            parse_result_json,
            shared=True,
        ),
        Bench(
            "health",
            "bench_health.py",
            "portal_seedbench",
            lambda: ["--rounds", str(max(20, 10 * r))],
            parse_result_json,
            shared=True,
        ),
        Bench(
            "pages",
            "bench_pages.py",
            "portal_seedbench",
            lambda: ["--identities", str(n), "--runs", str(max(5, r))],
            parse_result_json,
            shared=True,
        ),
        Bench(
            "concurrency",
            "bench_concurrency.py",
            "portal_seedbench",
            lambda: ["--requests", str(max(20, 5 * r))],
            parse_result_json,
            shared=True,
        ),
        Bench(
            "expiry_sweep",
            "bench_expiry_sweep.py",
            "portal_sweepbench",
            lambda: ["--grants", str(n)],
            parse_expiry_sweep,
            repeat=True,
            create=True,
        ),
        Bench(
            "import",
            "bench_import.py",
            "portal_importbench",
            lambda: ["--rows", str(n)],
            parse_import,
            repeat=True,
            create=True,
        ),
        Bench(
            "certification",
            "bench_certification.py",
            "portal_certbench",
            lambda: ["--items", str(n), "--repeat", str(r)],
            parse_certification,
        ),
        Bench(
            "api_tokens",
            "bench_api_tokens.py",
            "portal_tokenbench",
            lambda: ["--identities", str(n), "--tokens", str(n)],
            parse_api_tokens,
            repeat=True,
        ),
        Bench(
            "break_glass",
            "bench_break_glass.py",
            "portal_bgbench",
            lambda: ["--import-rows", str(n), "--sweep-grants", str(n)],
            parse_break_glass,
        ),
        Bench(
            "audit_trail",
            "bench_audit_trail.py",
            "portal_auditbench",
            lambda: ["--events", str(10 * n), "--runs", str(max(5, r))],
            parse_audit_trail,
            create=True,
        ),
        Bench("agents", "bench_agents.py", "portal_agentbench", lambda: ["--identities", str(n)], parse_agents),
        Bench(
            "webhook_revocations",
            "bench_webhook_revocations.py",
            "portal_whbench",
            lambda: ["--grants", str(n)],
            parse_webhook,
        ),
        Bench(
            "write_path",
            "bench_write_path.py",
            "portal_wpbench",
            lambda: ["--size", "full" if n >= 100_000 else "quick", "--retire-repeat", str(r)],
            parse_write_path,
        ),
    ]


#
# Running them
#
def database_url(server: str, name: str) -> str:
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


def admin_sql(server: str, *statements: str) -> None:
    import psycopg

    url = database_url(server, "postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def vacuum_analyze(server: str, name: str) -> float:
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(
        database_url(server, name).replace("postgres://", "postgresql://", 1), autocommit=True
    ) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def seeded(server: str, name: str) -> bool:
    """Whether the database is there and holds a demo organisation."""
    import psycopg

    try:
        with psycopg.connect(database_url(server, name).replace("postgres://", "postgresql://", 1)) as conn:
            return bool(
                conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM governance_system WHERE external_id = 'demo:org')"
                ).fetchone()[0]
            )
    except psycopg.Error:
        return False


def run_script(bench: Bench, url: str, log: Path, timeout: float) -> tuple[int | str, str, float]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "portal.settings.dev",
        "DEBUG": "0",
        "PYTHONUNBUFFERED": "1",
    }
    env.setdefault("CONNECTOR_SECRET_KEYS", BENCH_CONNECTOR_KEY)
    env.setdefault("CELERY_BROKER_URL", "memory://")
    command = [sys.executable, str(BENCH / bench.script), *bench.args()]
    started = time.perf_counter()
    with log.open("w") as out:
        out.write(f"$ DATABASE_URL={url} {' '.join(command)}\n")
        out.flush()
        try:
            done = subprocess.run(command, cwd=CHECKOUT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
            code: int | str = done.returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {timeout:.0f} s"
    return code, log.read_text(), time.perf_counter() - started


def print_table(rows: list[dict]) -> str:
    def number(value, unit):
        if value is None:
            return "-"
        return f"{value:,.1f} {unit}" if value >= 10 else f"{value:.2f} {unit}"

    header = ("benchmark", "figure", "floor", "ratio min / median / max", "n")
    lines = []
    for row in rows:
        ratios = (
            f"{row['ratio_min']:.2f}x / {row['ratio_median']:.2f}x / {row['ratio_max']:.2f}x"
            if row["ratio_median"] is not None
            else "no floor"
        )
        lines.append(
            (
                row["name"],
                number(row["figure_median"], row["unit"]),
                number(row["floor_median"], row["unit"]),
                ratios,
                str(len(row["figures"])),
            )
        )
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
    text = []
    for i, line in enumerate([header, *lines]):
        text.append(
            "  ".join(cell.ljust(widths[j]) if j in (0, 3) else cell.rjust(widths[j]) for j, cell in enumerate(line))
        )
        if i == 0:
            text.append("  ".join("-" * w for w in widths))
    text.append("")
    text.append("What each row measures (figure / floor; figure and floor are medians, ratios per run):")
    for row in rows:
        notes = f"  [{'; '.join(row['notes'])}]" if row["notes"] else ""
        text.append(f"- {row['name']}: {row['figure']} / {row['floor'] or '-'}{notes}")
    output = "\n".join(text)
    print(output, flush=True)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--identities", type=int, default=100_000, help="scale of the organisation and of each script")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of scripts that time one pair per run; rounds elsewhere"
    )
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated benchmark names to leave out")
    parser.add_argument("--tag", default="make", help="suffix of every database this run drops and creates")
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432"),
        help="PostgreSQL server (a role that may create databases); env BENCH_POSTGRES",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one script may run")
    parser.add_argument(
        "--reuse-seed",
        action="store_true",
        help="keep the organisation an earlier run of the same --tag built (if it is there) instead of building it again",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and stop")
    opts = parser.parse_args()

    every = benches(opts)
    if opts.list:
        for bench in every:
            print(
                f"{bench.name:<20} {bench.script}  ({'repeated' if bench.repeat else 'once'}; database {bench.database}_{opts.tag})"
            )
        return
    names = {b.name for b in every}
    only = {x.strip() for x in opts.only.split(",") if x.strip()}
    skip = {x.strip() for x in opts.skip.split(",") if x.strip()}
    unknown = (only | skip) - names
    if unknown:
        sys.exit(f"unknown benchmarks {sorted(unknown)}: choose from {', '.join(b.name for b in every)}")
    known = {b.script for b in every}
    unknown_scripts = sorted(p.name for p in BENCH.glob("bench_*.py") if p.name not in known)
    if unknown_scripts:
        print(f"not run (no entry in run_all.py yet): {', '.join(unknown_scripts)}", flush=True)
    chosen = [b for b in every if (not only or b.name in only) and b.name not in skip]
    if any(b.shared for b in chosen) and not any(b.name == "seed" for b in chosen):
        chosen.insert(0, next(b for b in every if b.name == "seed"))  # search, health and pages read what it builds

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = RESULTS / f"{stamp}-{opts.identities}"
    folder.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=CHECKOUT, capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(["git", "status", "--porcelain"], cwd=CHECKOUT, capture_output=True, text=True).stdout.strip()
    )
    print(
        f"make bench: {opts.identities:,} identities, repeat {opts.repeat}, {len(chosen)} benchmarks; commit {commit}"
        f"{' (with uncommitted changes)' if dirty else ''}; load {' '.join(f'{x:.1f}' for x in os.getloadavg())};"
        f" logs in {folder.relative_to(CHECKOUT)}",
        flush=True,
    )

    rows = Rows()
    runs = []
    for bench in chosen:
        database = f"{bench.database}_{opts.tag}"
        url = database_url(opts.server, database)
        if bench.name == "seed" and opts.reuse_seed and seeded(opts.server, database):
            print(f"[{time.strftime('%H:%M:%S')}] seed: kept {database} (--reuse-seed)", flush=True)
            continue
        for run in range(opts.repeat if bench.repeat else 1):
            if bench.create:
                admin_sql(
                    opts.server, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', f'CREATE DATABASE "{database}"'
                )
            log = folder / f"{bench.name}-{run + 1}.log"
            print(f"[{time.strftime('%H:%M:%S')}] {bench.name} (run {run + 1}) ...", flush=True)
            code, out, seconds = run_script(bench, url, log, opts.timeout)
            before = {name: len(row.figures) for name, row in rows.items()}
            try:
                bench.parse(out, rows)
            except Exception as error:  # a changed output format must not lose the other rows
                code = f"{code}; output not understood ({type(error).__name__}: {error})"
            parsed = [name for name, row in rows.items() if len(row.figures) != before.get(name, 0)]
            runs.append(
                {"bench": bench.name, "run": run + 1, "exit": code, "seconds": round(seconds, 1), "log": log.name}
            )
            print(
                f"[{time.strftime('%H:%M:%S')}]   exit {code} in {seconds:.0f} s; rows: {', '.join(parsed) or 'none'}",
                flush=True,
            )
            if code != 0:
                rows.put(
                    f"{bench.name} (failed)",
                    f"exit {code}: see {log.relative_to(CHECKOUT)}",
                    None,
                    "s",
                    [seconds],
                    None,
                )
        if bench.name == "seed":
            seconds = vacuum_analyze(opts.server, database)
            print(f"[{time.strftime('%H:%M:%S')}]   VACUUM ANALYZE {database}: {seconds:.1f} s", flush=True)

    results = [row.as_json() for row in rows.values()]
    print()
    table = print_table(results)
    saved = RESULTS / f"bench-{stamp}-{opts.identities}.json"
    saved.write_text(
        json.dumps(
            {
                "started": stamp,
                "identities": opts.identities,
                "repeat": opts.repeat,
                "commit": commit,
                "uncommitted_changes": dirty,
                "load_average_end": os.getloadavg(),
                "runs": runs,
                "rows": results,
                "table": table,
            },
            indent=2,
        )
    )
    print(f"\nsaved {saved.relative_to(CHECKOUT)}")


if __name__ == "__main__":
    main()
