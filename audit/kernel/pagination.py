"""Pagination shared by the pages and the API: counts up to a cap, cheap deep pages, cursor pages newest first.

Every list page and page-numbered API list goes through `CappedCountPaginator` (or its
`DeferredJoinPaginator`): a list never counts more than COUNT_CAP rows. Over the cap it says "more
than 10,000" and its pages still work, each knowing whether another follows by reading one row more.
"""

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db.models import Count, QuerySet, Window
from django.db.models.query import ModelIterable
from django.utils.functional import cached_property
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response

# A COUNT(*) of 100,000 identities (or a million events) was most of a list page's time; counting
# to 10,001 costs the same however big the table grows.
COUNT_CAP = 10_000
MAX_OFFSET = 2**62  # past the cap any page number is accepted, but an OFFSET is a bigint


class CappedPage(Page):
    """A page of a list counted only up to the cap: whether a next page exists is known from its own rows."""

    def __init__(self, object_list, number, paginator, *, more: bool | None = None):
        super().__init__(object_list, number, paginator)
        self.more = more

    def has_next(self) -> bool:
        return self.more if self.more is not None else super().has_next()

    def end_index(self) -> int:
        if self.more is None:
            return super().end_index()
        return self.start_index() + len(self.object_list) - 1 if self.object_list else 0


class CappedCountPaginator(Paginator):
    """A Paginator whose COUNT stops at `count_cap`: `SELECT COUNT(*) FROM (... LIMIT cap + 1)`.

    Under the cap everything is as Django's (exact count, "page 3 of 7"). Over it, `count` is the
    cap, `count_capped` is true, any page number is accepted and a page reads `per_page + 1` rows to
    know whether it has a next; a page past the end is an EmptyPage (`get_page`: the last counted page).
    The same number of queries either way.
    """

    count_cap = COUNT_CAP

    def __init__(
        self, object_list, per_page, *args, count_cap: int | None = None, counted: int | None = None, **kwargs
    ):
        super().__init__(object_list, per_page, *args, **kwargs)
        if count_cap is not None:
            self.count_cap = count_cap
        self.known_count = counted  # the rows' number when a query the page runs anyway told it

    @cached_property
    def _counted(self) -> int:
        """How many rows, counted up to one past the cap (any rows will do: no ORDER BY)."""
        if self.known_count is not None:
            return min(self.known_count, self.count_cap + 1)
        rows = self.object_list
        if not isinstance(rows, QuerySet):
            return len(rows)
        rows = rows.order_by()
        if rows._iterable_class is ModelIterable and rows.query.group_by is None and not rows.query.combinator:
            # Keys only: a sliced COUNT keeps the selected columns, so a list's correlated counts
            # (and its joins) would be computed for every counted row.
            rows = rows.values("pk")
        return rows[: self.count_cap + 1].count()

    @cached_property
    def count_capped(self) -> bool:
        """More rows than the cap: the count is a lower bound."""
        return self._counted > self.count_cap and isinstance(self.object_list, QuerySet)

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.count_cap) if self.count_capped else self._counted

    @property
    def count_label(self) -> str:
        """The total as a page says it: "1,234", or "more than 10,000"."""
        return f"more than {self.count:,}" if self.count_capped else f"{self.count:,}"

    def validate_number(self, number):
        if not self.count_capped:
            return super().validate_number(number)
        # Past the cap the last page is unknown: any page from 1 on, found empty when read (`page`).
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        if (number - 1) * self.per_page > MAX_OFFSET:
            raise EmptyPage(self.error_messages["no_results"])  # an OFFSET PostgreSQL cannot take
        return number

    def get_page(self, number):
        """As Django's: a page number past the end gives the last page (over the cap: the last counted one)."""
        try:
            return super().get_page(number)
        except EmptyPage:
            return self.page(self.num_pages)

    def rows(self, bottom: int, top: int):
        """The list's rows `bottom` to `top` (a slice of the queryset, evaluated by the page)."""
        return self.object_list[bottom:top]

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        if not self.count_capped:
            top = bottom + self.per_page
            if top + self.orphans >= self.count:
                top = self.count
            return self._get_page(self.rows(bottom, top), number, self)
        found = list(self.rows(bottom, bottom + self.per_page + 1))
        if not found and number > 1:
            raise EmptyPage(self.error_messages["no_results"])
        return self._get_page(found[: self.per_page], number, self, more=len(found) > self.per_page)

    def _get_page(self, *args, **kwargs):
        return CappedPage(*args, **kwargs)


class DeferredJoinPaginator(CappedCountPaginator):
    """Pick the page's primary keys first, then load only those rows with their joins and counts.

    A plain OFFSET computes every column (and every correlated count) of each skipped row; page
    200 of 100,000 identities did that for 10,000 rows. Here the skipped rows cost an index scan.
    `load` reads the picked keys another way (say, as the rows a page shows rather than models);
    it returns them in the keys' order.

    `keys(bottom, top)` picks them another way (by SQL built once per process, say): the keys of the
    queryset's slice, or None where the queryset must pick them. `object_list` may then be a callable
    that builds the queryset, called only when a page or the count needs it (with `counted` and
    `keys`, maybe never: building a list's rule can cost more than running it).
    """

    def __init__(self, object_list, per_page, *args, load=None, keys=None, count_with_keys=False, **kwargs):
        self._build = object_list if callable(object_list) else None
        super().__init__(object_list, per_page, *args, **kwargs)
        self.load = load
        self.keys = keys
        self.count_with_keys = count_with_keys
        self._read: tuple[int, list] | None = None  # the keys `_count_with_page` read, from which row

    def get_page(self, number):
        if self.count_with_keys and self.known_count is None and self.keys is None:
            self._count_with_page(number)
        return super().get_page(number)

    def _count_with_page(self, number) -> None:
        """Read the asked page's keys and the total in one query (`COUNT(*) OVER ()`).

        For a list whose keys' query reads every matching row whatever the page (rows looked up by
        key, a search through its trigram indexes): its COUNT read them all a second time, ~5 ms of the
        identities with an open finding. A page past the end reads nothing and counts as usual.
        """
        try:
            number = int(number) if number is not None else 1
        except (TypeError, ValueError):
            number = 1
        bottom = (number - 1) * self.per_page
        if number < 1 or bottom > self.count_cap:
            return  # before the first page, or past what a count would tell: counted as usual
        rows = self.object_list.prefetch_related(None).annotate(_total=Window(Count("*")))
        found = list(rows.values_list("pk", "_total")[bottom : bottom + self.per_page + self.orphans + 1])
        if found:
            self.known_count = found[0][1]
            self._read = (bottom, [key for key, _ in found])

    @property
    def object_list(self):
        if self._build is not None:
            build, self._build = self._build, None
            self._rows = build()
            super()._check_object_list_is_ordered()
        return self._rows

    @object_list.setter
    def object_list(self, rows):
        self._rows = rows

    def _check_object_list_is_ordered(self):
        if self._build is None:  # else when built
            super()._check_object_list_is_ordered()

    def rows(self, bottom: int, top: int):
        keys = self.keys(bottom, top) if self.keys is not None else None
        if self._read is not None and self._read[0] == bottom:
            keys = self._read[1][: top - bottom]
        if keys is None:
            keys = list(self.object_list.prefetch_related(None).values_list("pk", flat=True)[bottom:top])
        if self.load is not None:
            return self.load(keys)
        found = {row.pk: row for row in self.object_list.filter(pk__in=keys)}
        return [found[key] for key in keys if key in found]


class CappedPageNumberPagination(PageNumberPagination):
    """The API's page-numbered lists (the default): counted up to the cap, `count_capped` says when over.

    `count` stays the field clients read; over the cap it is the cap and `next` still leads on.
    """

    django_paginator_class = CappedCountPaginator

    def get_paginated_response(self, data):
        paginator = self.page.paginator
        return Response(
            {
                "count": paginator.count,
                "count_capped": paginator.count_capped,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        response = super().get_paginated_response_schema(schema)
        response["properties"]["count"]["description"] = f"How many in all, counted up to {COUNT_CAP:,}."
        response["properties"]["count_capped"] = {
            "type": "boolean",
            "example": False,
            "description": f"True when there are more than {COUNT_CAP:,}: `count` is then a lower bound.",
        }
        response["required"] = [*response.get("required", []), "count_capped"]
        return response


class NewestFirst(CursorPagination):
    """API list pages by cursor: no COUNT over millions of rows, stable under inserts."""

    ordering = "-id"
    page_size = 50
