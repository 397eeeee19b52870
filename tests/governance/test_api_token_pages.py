"""API tokens in the browser: made on the identity's page, the secret shown once, rotated and revoked."""

import pytest
from django.urls import reverse

from governance.models import ApiToken
from tests.factories.governance import MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return with_role(PersonFactory(name="Olu Owner"), "owner")


@pytest.fixture
def bot(owner):
    return MachineFactory(name="deploy-bot", owner=owner)


def create(client, identity, **data):
    payload = {"name": "pipeline", "scopes": ["grants:read"], "expires_in_days": 30, **data}
    return client.post(reverse("governance:api_token_create", args=[identity.pk]), payload)


def test_the_owner_makes_a_token_and_sees_its_secret_once(client, owner, bot):
    client.force_login(owner.user)
    response = create(client, bot, allowed_networks="10.0.0.0/8\n")
    assert response.status_code == 200
    token = ApiToken.objects.get(identity=bot)
    secret = response.context["secret"]
    assert secret.startswith(f"gp_{token.prefix}_") and secret in response.content.decode()
    assert token.allowed_networks == ["10.0.0.0/8"]
    page = client.get(reverse("governance:identity_detail", args=[bot.pk])).content.decode()
    assert token.prefix in page and secret not in page and "API tokens" in page


def test_bad_input_is_told_beside_the_field_and_nothing_is_made(client, owner, bot):
    client.force_login(owner.user)
    response = create(client, bot, allowed_networks="the office")
    assert response.status_code == 400
    assert "Not a network: the office" in response.content.decode()
    response = create(client, bot, scopes=["inventory:read"])
    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_rotate_shows_the_successor_once_and_revoke_says_so(client, owner, bot):
    client.force_login(owner.user)
    create(client, bot)
    old = ApiToken.objects.get(identity=bot)
    rotated = client.post(reverse("governance:api_token_rotate", args=[bot.pk, old.pk]))
    assert rotated.status_code == 200 and "keeps working until" in rotated.content.decode()
    new = ApiToken.objects.get(rotated_from=old)
    revoked = client.post(reverse("governance:api_token_revoke", args=[bot.pk, new.pk]), follow=True)
    assert "revoked: it stops working now" in revoked.content.decode()
    assert ApiToken.objects.get(pk=new.pk).revoked_at is not None


def test_nobody_else_manages_the_tokens_and_a_person_only_their_own(client, owner, bot, admin_user):
    stranger = with_role(PersonFactory(), "owner")
    client.force_login(stranger.user)
    assert create(client, bot).status_code in (403, 404)
    client.force_login(admin_user)
    assert client.get(reverse("governance:api_token_create", args=[owner.pk])).status_code == 403
    client.force_login(owner.user)
    assert create(client, owner, scopes=["inventory:read"]).status_code == 200
    assert ApiToken.objects.filter(identity=owner).count() == 1 and not ApiToken.objects.filter(identity=bot).exists()
