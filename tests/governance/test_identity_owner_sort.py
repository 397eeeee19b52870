"""The identity list sorted by owner reads its owned and unowned identities apart, in the order one sort gives."""

import pytest
from django.urls import reverse

from governance import selectors
from governance.models import Identity
from tests.factories.governance import MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def inventory():
    """People without an owner, machines owned by people, two owners with the same name (ties by key)."""
    admin = with_role(PersonFactory(name="Admin"), "admin")
    owners = [PersonFactory(name=name) for name in ["Zoe", "Amy", "Kim", "Amy", "Bo"]]
    for n in range(14):
        MachineFactory(name=f"bot-{n:02}", owner=owners[n % len(owners)], kind="api_key" if n % 3 else "workload")
    return admin


def page_names(client, **params) -> list[str]:
    return [row.name for row in client.get(reverse("governance:identity_list"), params).context["page_obj"]]


@pytest.mark.parametrize("sort", ["owner", "-owner"])
@pytest.mark.parametrize("extra", [{}, {"kind": "api_key"}])
def test_every_page_holds_what_one_sorted_query_gives(client, inventory, monkeypatch, sort, extra):
    from governance import views

    monkeypatch.setattr(views, "PAGE_SIZE", 4)
    client.force_login(inventory.user)
    rows = Identity.objects.filter(**extra).order_by(f"{'-' if sort[0] == '-' else ''}owner__name", "pk")
    expected = [identity.name for identity in rows]

    pages, number = [], 1
    while names := page_names(client, sort=sort, page=number, **extra):
        pages += names
        if number * 4 >= len(expected):
            break
        number += 1

    # the same identities in the same order, across the boundary between owned and unowned
    assert pages == expected


def test_past_the_walk_a_page_is_read_by_the_one_sorted_query(inventory, monkeypatch):
    monkeypatch.setattr(selectors, "OWNER_WALK_ROWS", 8)
    rows = Identity.objects.order_by("owner__name", "pk")
    keys = selectors.identity_keys_by_owner(rows, "owner")

    # then: pages within the walk are picked apart; deeper ones by the queryset's slice (None)
    assert keys(4, 8) == list(rows.values_list("pk", flat=True)[4:8])
    assert keys(8, 12) is None


def test_only_the_owner_sort_is_read_apart():
    rows = Identity.objects.order_by("name", "pk")
    assert selectors.identity_keys_by_owner(rows, "name") is None
    assert selectors.identity_keys_by_owner(rows, "-last_used_at") is None
