"""Sorting and filtering the approver's queue by requester, age and risk. Ref: #16 (approver, point 3)."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.services import Actor
from governance.choices import RiskTier
from jit.services.requests import access_request_submit
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue(alice, entitlement, submit):
    """Three requests to one owner: Alice's medium one three days old, Bob's high and Alice's low one today."""
    bob = PersonFactory(name="Bob", user__username="bob")
    high = EntitlementFactory(name="root", risk_tier=RiskTier.HIGH, owner=entitlement.owner)
    low = EntitlementFactory(name="wiki", risk_tier=RiskTier.LOW, owner=entitlement.owner)
    with time_machine.travel(timezone.now() - timedelta(days=3)):
        old = submit(entitlement)
    return {
        "old": old,
        "root": submit(high, actor=bob.user, beneficiary=bob),
        "wiki": submit(low),
        "bob": bob,
    }


def shown(client, **query) -> list[int]:
    return [r.pk for r in client.get(reverse("jit:approval_queue"), query).context["page_obj"]]


def test_the_queue_sorts_by_age_risk_and_requester(client, queue, ent_owner):
    client.force_login(ent_owner)
    old, root, wiki = queue["old"].pk, queue["root"].pk, queue["wiki"].pk
    assert shown(client) == [old, root, wiki]  # oldest first by default
    assert shown(client, order="newest") == [wiki, root, old]
    assert shown(client, order="risk") == [root, old, wiki]  # high, medium, low
    assert shown(client, order="requester") == [old, wiki, root]  # Alice before Bob


def test_the_queue_filters_by_requester_age_and_risk(client, queue, ent_owner, alice):
    client.force_login(ent_owner)
    page = client.get(reverse("jit:approval_queue")).content.decode()
    # a search box, labelled and described, not a list of everyone waiting
    assert '<label for="id_requester">Requester' in page
    assert '<input type="search" name="requester"' in page and 'aria-describedby="id_requester_helptext"' in page
    assert '<small id="id_requester_helptext">Name or login</small>' in page

    assert shown(client, requester=f"u{queue['bob'].user.pk}") == [queue["root"].pk]
    assert shown(client, requester=f"u{alice.user.pk}") == [queue["old"].pk, queue["wiki"].pk]
    assert shown(client, waiting="1d") == [queue["old"].pk]
    assert shown(client, risk_tier=RiskTier.HIGH) == [queue["root"].pk]
    assert shown(client, requester=f"u{alice.user.pk}", order="newest") == [queue["wiki"].pk, queue["old"].pk]


def test_a_filter_that_matches_nothing_says_so_and_offers_the_whole_queue(client, queue, ent_owner):
    client.force_login(ent_owner)
    response = client.get(
        reverse("jit:approval_queue"), {"risk_tier": RiskTier.CRITICAL}, headers={"HX-Request": "true"}
    )
    assert b"Nothing waits for you under these filters" in response.content
    assert b"Show the whole queue" in response.content


def test_the_queue_is_counted_under_each_filter_and_by_a_prepared_count(client, queue, ent_owner, alice):
    client.force_login(ent_owner)
    bob = f"u{queue['bob'].user.pk}"

    def counted(**query) -> tuple[int, list[str]]:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(reverse("jit:approval_queue"), query)
        return response.context["page_obj"].paginator.count, [q["sql"] for q in ctx.captured_queries]

    def queryset_counts(statements) -> list[str]:
        return [sql for sql in statements if sql.startswith("SELECT COUNT(*) FROM")]

    # when / then: the whole queue and one requester's part are counted by the prepared count (one
    # statement, no grouping), without a COUNT of the queue's queryset
    for query, expected in (({}, 3), ({"requester": bob}, 1), ({"requester": f"u{alice.user.pk}"}, 2)):
        count, statements = counted(**query)
        assert count == expected, query
        assert not queryset_counts(statements), query
        prepared = [sql for sql in statements if sql.startswith('SELECT COUNT("jit_accessrequest"."id")')]
        assert len(prepared) == 1 and "GROUP BY" not in prepared[0], query
    # the age filter too; the risk filter and a search are counted through the queryset
    count, statements = counted(requester=bob, waiting="1d")
    assert count == 0 and not queryset_counts(statements)
    for query, expected in (({"risk_tier": RiskTier.HIGH}, 1), ({"requester": "ALI"}, 2)):
        count, statements = counted(**query)
        assert count == expected and queryset_counts(statements), query


@pytest.fixture
def askers(entitlement, submit):
    """Requests to one owner from people with a `_` in their name, and from a machine on the API."""
    low = EntitlementFactory(name="wiki", risk_tier=RiskTier.LOW, owner=entitlement.owner)
    people = {
        name: PersonFactory(name=name, user__username=login) for name, login in (("Ann_Lee", "al"), ("AnnXLee", "ax"))
    }
    made = {name: submit(low, actor=person.user, beneficiary=person) for name, person in people.items()}
    bot = MachineFactory(name="ETL-Loader", kind="ai_agent", may_self_request=True)
    made["bot"] = access_request_submit(
        actor=Actor(identity=bot),
        beneficiary_id=bot.pk,
        entitlement_id=low.pk,
        duration=timedelta(hours=1),
        justification="nightly load",
    )
    return made


def test_the_search_finds_people_by_name_or_login_and_machines_by_name_in_any_case(
    client, queue, askers, ent_owner, alice
):
    client.force_login(ent_owner)
    alices = [queue["old"].pk, queue["wiki"].pk]
    assert shown(client, requester="lic") == alices  # part of her name
    assert shown(client, requester="ALICE") == alices  # any case
    assert shown(client, requester="bob") == [queue["root"].pk]  # his login and name
    assert shown(client, requester="al") == [*alices, askers["Ann_Lee"].pk]  # Alice's name, Ann_Lee's login
    assert shown(client, requester="etl-load") == [askers["bot"].pk]  # a machine by its name
    assert shown(client, requester="  etl  ") == [askers["bot"].pk]  # the spaces around are trimmed
    assert shown(client, requester="nobody") == []


def test_the_search_takes_percent_and_underscore_literally(client, queue, askers, ent_owner):
    client.force_login(ent_owner)
    assert shown(client, requester="n_L") == [askers["Ann_Lee"].pk]  # not "any one character"
    assert shown(client, requester="%") == []  # not "anything"
    assert shown(client, requester="Ann%Lee") == []


def test_a_requester_key_still_filters_exactly(client, queue, askers, ent_owner, alice):
    client.force_login(ent_owner)
    assert shown(client, requester=f"u{alice.user.pk}") == [queue["old"].pk, queue["wiki"].pk]
    bot = askers["bot"]
    assert shown(client, requester=f"i{bot.requester_identity_id}") == [bot.pk]
    assert shown(client, requester="u0") == []  # nobody's key: nothing, not a search for "u0"


def test_an_over_long_search_is_an_error_beside_the_field_and_the_other_filters_still_apply(client, queue, ent_owner):
    client.force_login(ent_owner)
    response = client.get(reverse("jit:approval_queue"), {"requester": "x" * 151})
    page = response.content.decode()
    assert response.status_code == 200
    assert '<small class="field-error" id="id_requester_error" role="alert">' in page
    assert 'aria-invalid="true"' in page
    assert [r.pk for r in response.context["page_obj"]] == [queue["old"].pk, queue["root"].pk, queue["wiki"].pk]
    assert shown(client, requester="x" * 151, risk_tier=RiskTier.HIGH) == [queue["root"].pk]
