"""Sorting and filtering the approver's queue by requester, age and risk. Ref: #16 (approver, point 3)."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from governance.choices import RiskTier
from tests.factories.governance import EntitlementFactory, PersonFactory

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
    assert f'<option value="u{queue["bob"].user.pk}">Bob (bob)</option>' in page  # the people who asked

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


def test_the_queue_is_counted_under_each_filter_and_by_the_requester_filters_own_query(client, queue, ent_owner, alice):
    # given the requester filter's choices count each requester's requests
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(ent_owner)
    bob = f"u{queue['bob'].user.pk}"

    def counted(**query) -> tuple[int, list[str]]:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(reverse("jit:approval_queue"), query)
        return response.context["page_obj"].paginator.count, [q["sql"] for q in ctx.captured_queries]

    # when / then: the whole queue and one requester's part are counted without a COUNT of the queue
    for query, expected in (({}, 3), ({"requester": bob}, 1), ({"requester": f"u{alice.user.pk}"}, 2)):
        count, statements = counted(**query)
        assert count == expected, query
        assert not [sql for sql in statements if sql.startswith("SELECT COUNT(*) FROM")], query
    # the other filters narrow what those counts cannot tell: the queue is counted for them
    assert counted(risk_tier=RiskTier.HIGH)[0] == 1
    assert counted(requester=bob, waiting="1d")[0] == 0
