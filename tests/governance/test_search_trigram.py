"""Search that scales: the inventory's substring searches are served by trigram indexes on PostgreSQL.

The searches stay plain `icontains` (the same on SQLite); migration 0016 indexes, with `pg_trgm`,
the very expression PostgreSQL compares (`UPPER(col::text)`). The first tests pin what a search
finds, on either database; the PostgreSQL ones read the plans (EXPLAIN, not timings).
"""

import pytest
from django.db import connection

from governance import selectors
from governance.filters import IdentityFilter
from governance.models import Identity
from governance.views_logins import LoginFilter, User
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db


def _search(text: str) -> set[str]:
    found = set(selectors.identities_matching(Identity.objects.all(), text).values_list("name", flat=True))
    filterset = IdentityFilter({"q": text}, queryset=Identity.objects.all())  # the lists' and the API's
    assert filterset.is_valid() and set(filterset.qs.values_list("name", flat=True)) == found
    return found


def _plan(queryset) -> str:
    return queryset.explain()


@pytest.fixture
def people():
    ada = PersonFactory(name="Ada Lovelace", email="ada@analytical.example", team="Engines")
    grace = PersonFactory(name="Grace Hopper", email="grace@navy.example", team="Data Platform")
    MachineFactory(name="svc-data-loader-7", owner=grace, team="Payments")
    PersonFactory(name="Percent 100% Sure", email="p@example.org", team="Odd_Names")
    return ada, grace


def test_identity_search_finds_a_part_of_the_name_email_or_team_whatever_the_case(people):
    # when people search by a piece of a name, an email or a team, in any case
    # then each finds who it names, and only them
    assert _search("LOVEL") == {"Ada Lovelace"}
    assert _search("navy.EX") == {"Grace Hopper"}
    assert _search("data plat") == {"Grace Hopper"}
    assert _search("svc-DATA") == {"svc-data-loader-7"}
    assert _search("da") >= {"Ada Lovelace", "Grace Hopper", "svc-data-loader-7"}
    assert _search("nobody-is-called-this") == set()


def test_wildcards_in_the_search_are_plain_characters(people):
    # when the text holds LIKE's wildcards, they match themselves
    assert _search("100%") == {"Percent 100% Sure"}
    assert _search("d_n") == {"Percent 100% Sure"}
    assert _search("%") == {"Percent 100% Sure"}


def test_catalogue_and_login_searches_still_find_by_a_part_of_each_field(people):
    _ada, grace = people
    billing = SystemFactory(name="Billing Ledger")
    EntitlementFactory(system=billing, name="ledger-reader", business_purpose="Read invoices")
    EntitlementFactory(name="warehouse-admin", business_purpose="Run the DATA warehouse")
    found = selectors.entitlements_matching(selectors.entitlement_list(user=None), "LEDGER")
    assert set(found.values_list("name", flat=True)) == {"ledger-reader"}
    found = selectors.entitlements_matching(selectors.entitlement_list(user=None), "data ware")
    assert set(found.values_list("name", flat=True)) == {"warehouse-admin"}
    found = selectors.entitlements_matching(selectors.entitlement_list(user=None), "invoice")
    assert set(found.values_list("name", flat=True)) == {"ledger-reader"}

    logins = LoginFilter({"q": "HOPPER"}, queryset=User.objects.all())
    assert logins.is_valid()
    assert list(logins.qs.values_list("pk", flat=True)) == [grace.user_id]


#
# PostgreSQL: the plans
#
SEEDED = 10_000


def _seed_identities(count: int) -> None:
    """`count` people in one INSERT ... SELECT (no factory: fast), then fresh statistics."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO governance_identity (name, kind, status, email, team, description, credential_type,"
            " secret_location, may_self_request, created_at, updated_at)"
            " SELECT 'Person ' || g || ' ' || md5(g::text), 'human', 'active', 'p' || g || '@example.org',"
            " 'Team ' || (g %% 40), '', '', '', false, now(), now()"
            " FROM generate_series(1, %s) g",
            [count],
        )
        # What autovacuum does to a GIN index after a bulk insert: its pending entries merged in.
        for index in ("gov_identity_name_trgm", "gov_identity_email_trgm", "gov_identity_team_trgm"):
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [index])
        cursor.execute("ANALYZE governance_identity")


@pytest.mark.postgres
def test_at_scale_the_planner_chooses_the_trigram_indexes_for_the_identity_search(admin_user):
    # given 10,000 identities, 300 of them (3%, as in the demo at 100,000) named "svc-data-...", which
    # all sort after the people, and fresh statistics; the planner is not forced (enable_seqscan is on)
    _seed_identities(SEEDED)
    PersonFactory(name="Zebedee Quuxworth", email="zq@example.org", team="Rare Team")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE governance_identity SET name = 'svc-data-' || id WHERE id IN"
            " (SELECT id FROM governance_identity WHERE name LIKE 'Person %%' ORDER BY id LIMIT 300)"
        )
        cursor.execute("ANALYZE governance_identity")
    # when the identity list is searched as its page does (the admin's list, its order, page 1)
    for text, expected in (("quuxworth", 1), ("SVC-DATA", 300)):
        rows = selectors.identities_matching(selectors.identity_list(user=admin_user), text).order_by("name", "id")
        plans = (_plan(rows.values_list("pk", flat=True)[:50]), _plan(rows.values("pk").order_by()))
        # then the page's keys and its count read the three trigram indexes, never the whole table,
        # nor the name index in order (which reads every person before the first machine: with the
        # match given once, the planner chose that for "svc-data")
        for plan in plans:
            for index in ("gov_identity_name_trgm", "gov_identity_email_trgm", "gov_identity_team_trgm"):
                assert index in plan, plan
            assert "Seq Scan on governance_identity" not in plan, plan
            assert "governance_identity_name_" not in plan, plan
        assert rows.count() == expected


@pytest.mark.postgres
def test_the_catalogue_search_may_use_its_trigram_indexes(people):
    # given a small catalogue, which the planner rightly reads directly: sequential scans and plain
    # index scans are discouraged so the plan shows whether the trigram indexes CAN serve it (with index
    # scans allowed, a few systems were read off the primary key, filtered by name, depending on what
    # earlier tests left in the table's statistics)
    EntitlementFactory(name="ledger-reader", business_purpose="Read invoices")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
    # when the catalogue is searched as the request page does
    catalogue = selectors.entitlements_matching(selectors.requestable_entitlements(user=None), "ledger")
    # then each field is read through its trigram index (an OR across the system join could use none)
    plan = _plan(catalogue)
    for index in ("gov_entitlement_name_trgm", "gov_entitlement_purpose_trgm", "gov_system_name_trgm"):
        assert index in plan, plan


@pytest.mark.postgres
def test_the_trigram_indexes_are_on_the_expression_django_compares():
    # the index must be on UPPER(col::text), what `icontains` compiles to, or no search uses it
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE 'gov\\_%%\\_trgm' ORDER BY indexname"
        )
        found = dict(cursor.fetchall())
    assert set(found) == {
        "gov_auth_user_email_trgm",
        "gov_auth_user_username_trgm",
        "gov_entitlement_name_trgm",
        "gov_entitlement_purpose_trgm",
        "gov_identity_email_trgm",
        "gov_identity_name_trgm",
        "gov_identity_team_trgm",
        "gov_system_name_trgm",
    }
    assert all("USING gin" in d and "upper(" in d and "gin_trgm_ops" in d for d in found.values()), found


@pytest.mark.postgres
def test_the_login_search_may_use_its_trigram_indexes(people):
    # given sequential scans discouraged, so the plan shows whether the indexes CAN serve the search
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    # when the logins page is searched
    logins = LoginFilter({"q": "hopper"}, queryset=User.objects.all())
    assert logins.is_valid()
    # then username and email are read through their trigram indexes (the united sets allow it)
    plan = _plan(logins.qs)
    for index in ("gov_auth_user_username_trgm", "gov_auth_user_email_trgm", "gov_identity_name_trgm"):
        assert index in plan, plan
