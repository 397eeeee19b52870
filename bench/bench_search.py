"""Time the identity search as the identity list runs it, against the bare trigram match, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_seedbench \\
    DJANGO_SETTINGS_MODULE=portal.settings.dev .venv/bin/python bench/bench_search.py --rounds 20

Reads a database seeded by bench_seed.py (or `make bench`), changes nothing. For each search text,
round after round (the order of the two flips each round):

- figure: what the list does for `?q=TEXT&status=active`, signed in as `admin`: the list's filter
  (`IdentityFilter`) over `identities_visible_to`, ordered by name, page 1 through the list's paginator
  as `governance.views._listing` builds it (the page's keys and their count, then the page's rows
  with their counts as `identity_rows` reads them), rows built;
- floor: the match alone, `SELECT id` of every identity whose name, email or team contains the
  text (the comparison the filter makes, through the trigram indexes), through a plain cursor.

Prints each text's p50 and a `RESULT-JSON` line per text (`make bench` reads those).
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.dev")
os.environ.setdefault("DEBUG", "0")

import django

django.setup()

from django.db import connection  # noqa: E402

# (label, text): a cluster of machines that all sort after the people (as in bench_pages.py), a
# surname shared by a few thousand people, one machine by its full name.
SEARCHES = [("svc-data", "svc-data"), ("a surname", "Costa"), ("one machine", "svc-platform-deployer")]
FLOOR_SQL = (
    "SELECT id FROM governance_identity"
    " WHERE UPPER(name::text) LIKE UPPER(%s) OR UPPER(email::text) LIKE UPPER(%s) OR UPPER(team::text) LIKE UPPER(%s)"
)
PAGE_SIZE = 50


def figure(user, text: str) -> int:
    from audit.kernel.pagination import DeferredJoinPaginator
    from governance import selectors
    from governance.filters import IdentityFilter

    filterset = IdentityFilter({"q": text, "status": "active"}, queryset=selectors.identities_visible_to(user=user))
    assert filterset.is_valid(), filterset.errors
    rows = filterset.qs.order_by("name", "pk")
    counted_with_keys = filterset.reads_every_match  # as governance.views._listing
    page = DeferredJoinPaginator(rows, PAGE_SIZE, load=selectors.identity_rows, count_with_keys=counted_with_keys)
    return len(list(page.get_page(1).object_list))


def floor(text: str) -> int:
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with connection.cursor() as cursor:
        cursor.execute(FLOOR_SQL, [pattern] * 3)
        return len(cursor.fetchall())


def timed(call, *args) -> float:
    started = time.perf_counter()
    call(*args)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("PostgreSQL only: set DATABASE_URL to a database seeded by bench_seed.py")
    from django.contrib.auth import get_user_model

    from governance.models import Identity

    user = get_user_model().objects.get(username="admin")
    print(f"{Identity.objects.count():,} identities; {args.rounds} rounds per search, figure and floor interleaved")
    for label, text in SEARCHES:
        matches = floor(text)
        for _ in range(args.warmup):
            figure(user, text)
            floor(text)
        figures, floors = [], []
        for round_ in range(args.rounds):
            if round_ % 2:
                floors.append(timed(floor, text))
                figures.append(timed(figure, user, text))
            else:
                figures.append(timed(figure, user, text))
                floors.append(timed(floor, text))
        ratios = sorted(f / b for f, b in zip(figures, floors, strict=True))
        print(
            f"search {label!r} ({text}, {matches:,} matches): p50 {statistics.median(figures):.1f} ms"
            f" (max {max(figures):.1f}); the match alone p50 {statistics.median(floors):.1f} ms;"
            f" ratio {ratios[0]:.1f}x / {statistics.median(ratios):.1f}x / {ratios[-1]:.1f}x",
            flush=True,
        )
        print(
            "RESULT-JSON "
            + json.dumps(
                {
                    "name": f"search: {label}",
                    "figure": f"identity list search ?q={text}&status=active, page 1 ({matches:,} matches)",
                    "floor": "the trigram match alone (SELECT id ... LIKE, plain cursor)",
                    "unit": "ms",
                    "figures": [round(x, 3) for x in figures],
                    "floors": [round(x, 3) for x in floors],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
