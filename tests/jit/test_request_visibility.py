"""Who may see a request is one rule (`jit.selectors.requests_visible_to`): the pages and the API
show exactly the requests it returns, and 404 the rest."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from governance.roles import Role
from jit.selectors import requests_visible_to
from tests.factories.governance import MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def requests(alice, alice_bot, entitlement, submit):
    """One request Alice made for herself, one for her bot, and one a stranger made for theirs."""
    stranger = PersonFactory(name="Stranger")
    strangers_bot = MachineFactory(owner=stranger)
    return {
        "own": submit(entitlement),
        "bot": submit(entitlement, beneficiary=alice_bot),
        "strangers": submit(entitlement, actor=stranger.user, beneficiary=strangers_bot),
        "stranger": stranger,
    }


def _visible(user) -> set[int]:
    return set(requests_visible_to(user).values_list("pk", flat=True))


def test_the_rule(alice, alice_bot, ent_owner, sys_owner, requests, make_user):
    own, bot, strangers = requests["own"].pk, requests["bot"].pk, requests["strangers"].pk
    backup = PersonFactory(name="Backup")
    alice_bot.backup_owner = backup
    alice_bot.save(update_fields=["backup_owner"])
    # the requester sees hers and her bot's; the stranger only theirs
    assert _visible(alice.user) == {own, bot}
    assert _visible(requests["stranger"].user) == {strangers}
    # a backup owner sees the requests for the identity they back up
    assert _visible(backup.user) == {bot}
    # the approvers any stage is routed to see them all (the first stage's and the later one's)
    assert _visible(ent_owner) == _visible(sys_owner) == {own, bot, strangers}
    # auditors and admins see everything; someone unrelated, nothing (and no duplicates anywhere)
    assert _visible(with_role(PersonFactory(), Role.AUDITOR).user) == {own, bot, strangers}
    assert _visible(make_user("nobody")) == set()
    assert requests_visible_to(ent_owner).count() == 3


def test_pages_and_api_follow_the_rule(client, alice, requests):
    api = APIClient()
    api.force_authenticate(alice.user)
    client.force_login(alice.user)
    listed = {row["id"] for row in api.get("/api/v1/requests/").json()["results"]}
    assert listed == _visible(alice.user) == {requests["own"].pk, requests["bot"].pk}
    assert client.get(reverse("jit:request_detail", args=[requests["bot"].pk])).status_code == 200
    hidden = requests["strangers"].pk
    assert api.get(f"/api/v1/requests/{hidden}/").status_code == 404
    assert client.get(reverse("jit:request_detail", args=[hidden])).status_code == 404
    decide = client.post(reverse("jit:approval_decide", args=[hidden]), {"decision": "approve", "stage_position": 1})
    assert decide.status_code == 404
