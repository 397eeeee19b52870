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


#
# Counts up to a cap (issue 17, item 2): "more than N", pages past the cap still work, the COUNT is bounded.
#
@pytest.fixture
def cap_of_five(monkeypatch):
    from audit.kernel import pagination

    monkeypatch.setattr(pagination.CappedCountPaginator, "count_cap", 5)


def test_the_count_reads_at_most_one_row_past_the_cap(cap_of_five, admin_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from governance.selectors import identity_list

    for number in range(8):
        PersonFactory(name=f"Person {number}")
    # the identity list as its page reads it: joins and two correlated counts per row
    paginator = DeferredJoinPaginator(identity_list(user=admin_user).order_by("name", "pk"), 3)

    with CaptureQueriesContext(connection) as queries:
        assert (paginator.count, paginator.count_capped, paginator.count_label) == (5, True, "more than 5")

    # one COUNT over a subquery cut at cap + 1 rows, without the list's order or its counts per row
    [count] = [q["sql"] for q in queries.captured_queries]
    assert count.startswith("SELECT COUNT(*)") and "LIMIT 6" in count, count
    assert "ORDER BY" not in count and "governance_grant" not in count and "governance_finding" not in count, count


def test_pages_past_the_cap_still_work_and_the_end_is_found_by_reading(cap_of_five, django_assert_num_queries):
    for number in range(12):
        PersonFactory(name=f"Person {number:02}")
    rows = Identity.objects.order_by("name", "pk")
    paginator = DeferredJoinPaginator(rows, 5)
    assert paginator.count_capped

    # the second page (past the cap) has a next; the third, the last, has none: one count, keys, rows
    with django_assert_num_queries(3):
        second = DeferredJoinPaginator(rows, 5).page(2)
        assert second.has_next()
    last = paginator.page(3)
    assert [p.name for p in last] == ["Person 10", "Person 11"] and not last.has_next() and last.has_previous()
    assert (last.start_index(), last.end_index()) == (11, 12)
    # a page past the end gives the last counted page, as Django's get_page does
    assert paginator.get_page(40).number == paginator.num_pages == 1
    assert [p.name for p in paginator.get_page("x")] == [f"Person {n:02}" for n in range(5)]


def test_under_the_cap_the_count_is_exact():
    for number in range(3):
        PersonFactory(name=f"Person {number}")
    paginator = DeferredJoinPaginator(Identity.objects.order_by("name"), 2)
    assert (paginator.count, paginator.count_capped, paginator.num_pages) == (3, False, 2)
    assert not paginator.page(2).has_next()


def test_a_list_page_over_the_cap_says_more_than_and_pages_on(client, admin_user, cap_of_five, count_queries):
    from django.urls import reverse

    from tests.factories.governance import MachineFactory

    # given more identities than two pages of 50, the count capped at 5
    client.force_login(admin_user)
    owner = PersonFactory()
    MachineFactory.create_batch(3, owner=owner)
    url = reverse("governance:identity_list")
    few = count_queries(lambda: client.get(url))
    MachineFactory.create_batch(110, owner=owner)
    assert 100 < Identity.objects.count() < 150

    # when the list is read: a capped total, a next page, the same number of queries as under the cap
    first = client.get(url)
    assert "Page 1 · more than 5 in all" in first.content.decode()
    assert 'rel="next"' in first.content.decode()
    assert count_queries(lambda: client.get(url)) == few

    # then the pages past the cap read as any other, the last one without a next link
    third = client.get(url, {"page": 3})
    assert (
        len(third.context["page_obj"]) == Identity.objects.count() - 100
        and "Page 3 · more than 5 in all" in third.content.decode()
    )
    assert 'rel="next"' not in third.content.decode() and 'rel="prev"' in third.content.decode()
    assert count_queries(lambda: client.get(url, {"page": 3})) == few


def test_an_api_list_over_the_cap_says_so_and_pages_on(admin_user, cap_of_five, monkeypatch):
    from audit.kernel.pagination import CappedPageNumberPagination
    from tests.api import API, api

    monkeypatch.setattr(CappedPageNumberPagination, "page_size", 5)
    from tests.factories.governance import SystemFactory

    SystemFactory.create_batch(7)
    client = api(admin_user)

    first = client.get(f"{API}/systems/").json()
    assert first["count"] == 5 and first["count_capped"] is True and first["next"]
    everything = [row["id"] for row in first["results"]]
    page = client.get(first["next"]).json()
    everything += [row["id"] for row in page["results"]]
    assert page["next"] is None and len(everything) == len(set(everything)) >= 7


def test_an_api_list_under_the_cap_counts_exactly(admin_user):
    from tests.api import API, api
    from tests.factories.governance import SystemFactory

    SystemFactory.create_batch(2)
    body = api(admin_user).get(f"{API}/systems/").json()
    assert body["count"] >= 2 and body["count_capped"] is False and body["next"] is None


#
# A list whose keys' query reads every match anyway counts them there: `COUNT(*) OVER ()`, no COUNT query.
#
@pytest.mark.parametrize("number", [1, 2, 3, "2", None, "x"])
def test_counted_with_its_keys_a_page_is_the_page_a_separate_count_gives(number, django_assert_num_queries):
    for n in range(23):
        PersonFactory(name=f"Person {n:02}")
    rows = Identity.objects.order_by("name", "pk")
    expected = DeferredJoinPaginator(rows, 10).get_page(number)

    with django_assert_num_queries(2):  # the keys with the total, then the rows
        page = DeferredJoinPaginator(rows, 10, count_with_keys=True).get_page(number)
        names = [row.name for row in page]

    assert names == [row.name for row in expected]
    assert (page.number, page.paginator.count, page.has_next(), page.has_previous()) == (
        expected.number,
        23,
        expected.has_next(),
        expected.has_previous(),
    )


def test_counted_with_its_keys_a_page_past_the_end_counts_and_gives_the_last_page(django_assert_num_queries):
    for n in range(12):
        PersonFactory(name=f"Person {n:02}")
    paginator = DeferredJoinPaginator(Identity.objects.order_by("name", "pk"), 5, count_with_keys=True)

    # the keys' query finds nothing there, so the page counts as usual and reads the last one
    with django_assert_num_queries(4):
        page = paginator.get_page(9)
        names = [row.name for row in page]

    assert page.number == 3 and names == ["Person 10", "Person 11"]
    # and a page before the first gives the last one, as Django's get_page does
    assert (
        DeferredJoinPaginator(Identity.objects.order_by("name", "pk"), 5, count_with_keys=True).get_page(0).number == 3
    )


def test_counted_with_its_keys_the_last_page_takes_its_orphans():
    for n in range(12):
        PersonFactory(name=f"Person {n:02}")
    rows = Identity.objects.order_by("name", "pk")

    page = DeferredJoinPaginator(rows, 5, orphans=2, count_with_keys=True).get_page(2)

    assert [row.name for row in page] == [f"Person {n:02}" for n in range(5, 12)] and not page.has_next()


def test_counted_with_its_keys_over_the_cap_the_count_is_capped_and_pages_go_on(cap_of_five):
    for n in range(12):
        PersonFactory(name=f"Person {n:02}")
    rows = Identity.objects.order_by("name", "pk")

    second = DeferredJoinPaginator(rows, 5, count_with_keys=True).get_page(2)
    last = DeferredJoinPaginator(rows, 5, count_with_keys=True).get_page(3)

    assert (second.paginator.count_label, second.has_next()) == ("more than 5", True)
    assert [row.name for row in second] == [f"Person {n:02}" for n in range(5, 10)]
    assert [row.name for row in last] == ["Person 10", "Person 11"] and not last.has_next()


@pytest.mark.parametrize("capped", [False, True])
def test_a_page_number_past_any_offset_gives_the_last_page_not_an_error(capped, monkeypatch):
    from audit.kernel import pagination

    if capped:
        monkeypatch.setattr(pagination.CappedCountPaginator, "count_cap", 5)
    for n in range(12):
        PersonFactory(name=f"Person {n:02}")
    rows = Identity.objects.order_by("name", "pk")
    huge = "2000000000000000000"  # times 5 rows a page: past what a bigint OFFSET holds

    for counted_with_keys in (False, True):
        page = DeferredJoinPaginator(rows, 5, count_with_keys=counted_with_keys).get_page(huge)
        assert page.number == page.paginator.num_pages and len(page) > 0
