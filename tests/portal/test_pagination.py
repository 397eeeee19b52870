"""Deep pages load only their own rows, in the list's order. Ref: #3 (list pages at 100k identities)."""

import pytest
from django.db.models import Count

from audit.kernel.pagination import DeferredJoinPaginator
from governance.models import Identity
from tests.factories.governance import PersonFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("order", [("name", "pk"), ("-name", "pk")])
def test_each_page_holds_the_rows_a_plain_slice_would(order):
    # given more than two pages, with annotations
    for number in range(23):
        PersonFactory(name=f"Person {number % 7}-{number}")
    rows = Identity.objects.annotate(grant_count=Count("grants")).order_by(*order)
    expected = list(rows)

    # when paged ten at a time
    paginator = DeferredJoinPaginator(rows, 10)
    pages = [list(paginator.page(n)) for n in paginator.page_range]

    # then: the same rows in the same order, annotations kept
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [row.pk for page in pages for row in page] == [row.pk for row in expected]
    assert all(hasattr(row, "grant_count") for page in pages for row in page)


def test_a_deep_page_costs_two_queries_after_the_count(django_assert_num_queries):
    for number in range(30):
        PersonFactory(name=f"Person {number:02}")
    paginator = DeferredJoinPaginator(Identity.objects.select_related("owner").order_by("name"), 10)
    assert paginator.count == 30

    with django_assert_num_queries(2):
        names = [row.name for row in paginator.page(3)]

    assert names == [f"Person {n:02}" for n in range(20, 30)]
