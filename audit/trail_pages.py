"""Pages of the trail by position in the chain (keyset), not by page number.

A page number is an OFFSET and a COUNT: at a million events both read the whole trail (the page
took 650 ms for its COUNT alone). A page here starts after (or before) the `seq` of an event it
names, so page 1 and page 20,000 read the same ~51 index entries; and the total is counted only up
to COUNT_CAP ("1000+"), which costs the same at a million events as at ten thousand.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.db.models import F, QuerySet, Value

from .models import AuditEvent

PAGE_SIZE = 50
COUNT_CAP = 1_000

# A list's events in its order after a seq (or, `reverse`, before one), at most `limit`; with `counting`
# a queryset only to count (at least min(all, limit) rows: a union may drop its outer order and limit).
Slice = Callable[..., QuerySet[AuditEvent]]


@dataclass
class TrailPage:
    """One page: its events in the list's order, whether there are more either side, the (capped) total."""

    object_list: list[AuditEvent]
    has_previous: bool
    has_next: bool
    count: int
    count_capped: bool

    def __iter__(self) -> Iterator[AuditEvent]:
        return iter(self.object_list)

    def __len__(self) -> int:
        return len(self.object_list)

    @property
    def previous_cursor(self) -> int | None:
        return self.object_list[0].seq if self.object_list and self.has_previous else None

    @property
    def next_cursor(self) -> int | None:
        return self.object_list[-1].seq if self.object_list and self.has_next else None


def _cursor(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 19 else None


def ordered_slice(queryset: QuerySet[AuditEvent], *, newest_first: bool = True, few: bool = False) -> Slice:
    """How to cut pages from one queryset of events (the trail, filtered).

    `few`: the queryset selects a few objects' events through the target index (a timeline's branch).
    Its rows are then sorted once found, never found by walking the `seq` index: with a LIMIT,
    PostgreSQL may walk that index hoping for an early match and, for objects with no event in the
    trail, read all million rows to learn it (half a second for one branch of a timeline).
    """

    def cut(*, after: int | None = None, before: int | None = None, reverse: bool = False, limit: int, counting=False):
        rows = queryset
        older = newest_first != reverse  # walking towards older events
        if after is not None:
            rows = rows.filter(seq__lt=after) if newest_first else rows.filter(seq__gt=after)
        if before is not None:
            rows = rows.filter(seq__gt=before) if newest_first else rows.filter(seq__lt=before)
        if counting:
            return rows.order_by()[:limit]  # any `limit` rows will do: no order to keep
        key = F("seq") + Value(0) if few else F("seq")  # an expression no index serves: sorted once found
        return rows.order_by(key.desc() if older else key.asc())[:limit]

    return cut


def trail_page(cut: Slice, params, *, size: int = PAGE_SIZE, count_cap: int = COUNT_CAP) -> TrailPage:
    """The page that `params` (a request's GET) names: `after=<seq>` the next one, `before=<seq>` the previous."""
    after, before = _cursor(params.get("after")), _cursor(params.get("before"))
    if before is not None:
        rows = list(cut(before=before, reverse=True, limit=size + 1))
        has_previous, has_next = len(rows) > size, True
        rows = rows[:size][::-1]
    else:
        rows = list(cut(after=after, limit=size + 1))
        has_previous, has_next = after is not None, len(rows) > size
        rows = rows[:size]
    if after is None and before is None and not has_next:
        counted = len(rows)  # the whole list is on this page (a short timeline): nothing more to count
    else:
        # Counted up to the cap: a COUNT over a million rows is the page's whole cost.
        counted = cut(limit=count_cap + 1, counting=True).count()
    return TrailPage(rows, has_previous, has_next, min(counted, count_cap), counted > count_cap)


def querystring_without(params, *names: str) -> str:
    """The request's query string without its position (the filters a page link keeps)."""
    query = params.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()
