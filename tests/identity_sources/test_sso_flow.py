"""Single sign-on against a real OpenID provider (django-oauth-toolkit on the live server).

The portal is Django's test client (host `testserver`); the provider runs on the live server and the
person's browser at the provider is a `requests` session signed in there. Authorization code flow with
PKCE, state and nonce, discovery and JWKS: all real. Tokens that must be refused are signed here and
handed to the callback in place of the provider's answer.
"""

import time
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from identity_sources.models import SsoLink
from identity_sources.sso.backends import SsoBackend
from tests.factories.governance import PersonFactory

from .provider import IDP_GROUPS, idp_person, rsa_private_key, running_provider

pytestmark = pytest.mark.django_db(transaction=True)

ROLE_MAP = {"portal-approvers": "approver", "portal-admins": "admin"}


@pytest.fixture
def idp(live_server):
    with running_provider(provider_url=live_server.url, portal_url="http://testserver", role_map=ROLE_MAP) as provider:
        yield provider


@pytest.fixture
def alice():
    return PersonFactory(
        name="Alice Able", email="alice@example.org", user__username="alice", user__roles=["requester"]
    )


def browser_at_provider(idp_user) -> requests.Session:
    """A browser signed in at the provider as `idp_user` (its session cookie; the provider shares this database)."""
    signed_in = Client()
    signed_in.force_login(idp_user, backend="identity_sources.sso.backends.LocalPasswordBackend")
    session = requests.Session()
    session.cookies.set(settings.SESSION_COOKIE_NAME, signed_in.cookies[settings.SESSION_COOKIE_NAME].value)
    return session


def start(client) -> str:
    response = client.get(reverse("oidc_authentication_init"))
    assert response.status_code == 302
    return response["Location"]


def callback_url(client, idp_user) -> str:
    """Start at the portal, answer at the provider: the callback URL (code and state) the provider sends back."""
    answer = browser_at_provider(idp_user).get(start(client), allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:500]
    location = answer.headers["Location"]
    assert location.startswith("http://testserver/oidc/callback/?"), location
    return location.removeprefix("http://testserver")


def sign_in(client, idp_user):
    return client.get(callback_url(client, idp_user))


def signed_in_user_id(client):
    return client.session.get(SESSION_KEY)


def test_the_request_to_the_provider_carries_state_nonce_and_a_pkce_challenge(client, idp):
    query = parse_qs(urlsplit(start(client)).query)
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) >= 43
    assert query["state"][0] and query["nonce"][0]
    assert query["client_id"] == ["access-portal"]
    # the authorization endpoint came from the provider's discovery document
    assert start(client).startswith(f"{idp.issuer}/authorize/")


def test_first_sign_in_links_the_person_by_verified_email_then_by_sub(client, idp, alice):
    idp_alice = idp_person("alice.at.idp", "alice@example.org", groups=["portal-approvers", "unmapped-group"])

    response = sign_in(client, idp_alice)

    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert signed_in_user_id(client) == str(alice.user.pk)
    link = SsoLink.objects.get()
    assert (link.user_id, link.issuer, link.subject) == (alice.user.pk, idp.issuer, str(idp_alice.pk))
    # roles: the mapped one given, the portal's own (requester) left alone
    assert set(alice.user.groups.values_list("name", flat=True)) == {"requester", "approver"}
    events = {e.action: e for e in AuditEvent.objects.filter(channel="sso")}
    assert {"user.sso_linked", "user.logged_in", "role.assigned"} <= set(events)
    assert events["user.logged_in"].actor_user_id == alice.user.pk
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert "approver" in dashboard and "requester" in dashboard


def test_later_sign_ins_follow_the_sub_not_the_email_and_keep_roles_in_step(client, idp, alice):
    idp_alice = idp_person("alice.at.idp", "alice@example.org", groups=["portal-approvers"])
    sign_in(client, idp_alice)
    client.logout()
    # the address changes at the provider (even to one nobody in the portal has) and the group is taken away
    idp_alice.email = "a.able@elsewhere.example"
    idp_alice.save()
    IDP_GROUPS["alice.at.idp"] = ["portal-admins"]

    response = sign_in(client, idp_alice)

    assert response.status_code == 302
    assert signed_in_user_id(client) == str(alice.user.pk)
    assert set(alice.user.groups.values_list("name", flat=True)) == {"requester", "admin"}
    assert SsoLink.objects.count() == 1


def test_an_email_alone_does_not_take_over_a_linked_login(client, idp, alice):
    sign_in(client, idp_person("alice.at.idp", "alice@example.org"))
    client.logout()
    # a second provider account claiming the same address
    impostor = idp_person("mallory", "alice@example.org")

    response = sign_in(client, impostor)

    assert response.status_code == 403
    assert "already linked to another Test IdP account" in response.content.decode()
    assert signed_in_user_id(client) is None
    assert SsoLink.objects.count() == 1
    assert AuditEvent.objects.filter(action="user.sso_refused", data__reason="linked_elsewhere").exists()


def test_someone_not_in_the_inventory_is_refused_with_a_clear_page_and_nothing_made(client, idp, alice):
    from django.contrib.auth import get_user_model

    idp_bob = idp_person("bob.at.idp", "bob@example.org", groups=["portal-admins"])
    logins = get_user_model().objects.count()
    response = sign_in(client, idp_bob)

    assert response.status_code == 403
    page = response.content.decode()
    assert "No portal access for this account" in page and "Ask a portal admin to add you" in page
    assert signed_in_user_id(client) is None
    assert not SsoLink.objects.exists()
    assert get_user_model().objects.count() == logins  # no login made for bob
    refused = AuditEvent.objects.get(action="user.sso_refused")
    assert refused.channel == "sso" and refused.data["reason"] == "no_identity"


def test_refused_sso_sign_ins_do_not_lock_the_address_out_of_passwords(client, idp, alice, settings):
    from axes.models import AccessAttempt

    strangers = [
        idp_person(f"stranger{n}.at.idp", f"stranger{n}@example.org") for n in range(settings.AXES_FAILURE_LIMIT + 1)
    ]
    for stranger in strangers:
        assert sign_in(client, stranger).status_code == 403

    assert not AccessAttempt.objects.exists()
    signed_in = client.post(reverse("login"), {"username": "alice", "password": "pw-for-tests"})
    assert signed_in.status_code == 302 and signed_in_user_id(client) is not None


def test_without_a_configured_domain_nobody_is_linked_by_email(client, idp, alice, settings):
    settings.OIDC_LINK_EMAIL_DOMAINS = []

    response = sign_in(client, idp_person("alice.at.idp", "alice@example.org"))

    assert response.status_code == 403
    assert "not linked to anyone in the portal" in response.content.decode()
    assert not SsoLink.objects.exists()


def test_an_offboarded_person_cannot_sign_in(client, idp, alice):
    idp_alice = idp_person("alice.at.idp", "alice@example.org")
    sign_in(client, idp_alice)
    client.logout()
    alice.status = "offboarded"
    alice.save(update_fields=["status"])

    response = sign_in(client, idp_alice)

    assert response.status_code == 403 and signed_in_user_id(client) is None


def test_an_sso_session_ends_when_the_person_is_offboarded(client, idp, alice):
    from governance.services.identities import identity_offboard

    sign_in(client, idp_person("alice.at.idp", "alice@example.org"))
    assert client.get(reverse("dashboard")).status_code == 200
    admin = PersonFactory(user__roles=["admin"])

    identity_offboard(identity_id=alice.pk, actor=admin.user, reason="left")

    assert client.get(reverse("dashboard")).status_code == 302  # back to the sign-in page


def test_sign_out_ends_the_provider_session_too(client, idp, alice):
    idp_alice = idp_person("alice.at.idp", "alice@example.org")
    at_provider = browser_at_provider(idp_alice)
    answer = at_provider.get(start(client), allow_redirects=False, timeout=10)
    client.get(answer.headers["Location"].removeprefix("http://testserver"))
    assert signed_in_user_id(client) == str(alice.user.pk)

    response = client.post(reverse("logout"))

    assert signed_in_user_id(client) is None
    location = response["Location"]
    assert location.startswith(f"{idp.issuer}/logout/?")
    query = parse_qs(urlsplit(location).query)
    assert query["post_logout_redirect_uri"] == ["http://testserver/login/"]
    assert query["id_token_hint"][0].count(".") == 2
    # the provider ends its own session and sends the browser back to the portal's sign-in page
    back = at_provider.get(location, allow_redirects=False, timeout=10)
    assert back.status_code == 302 and back.headers["Location"] == "http://testserver/login/"
    again = at_provider.get(start(client), allow_redirects=False, timeout=10)
    assert "/idp/login/" in again.headers["Location"]  # signed out at the provider: asked to sign in again


def test_a_password_session_signs_out_locally_only(client, idp, alice):
    client.force_login(alice.user)
    response = client.post(reverse("logout"))
    assert response["Location"] == reverse("login")


#
# Refused answers: tokens signed here stand in for the provider's token response.
#
def _callback_with(client, make_token):
    """Start a sign-in, then call back with a code whose token response is `make_token(nonce)`."""
    query = parse_qs(urlsplit(start(client)).query)
    state, nonce = query["state"][0], query["nonce"][0]
    with mock.patch.object(
        SsoBackend, "get_token", return_value={"id_token": make_token(nonce), "access_token": ""}
    ) as token_call:
        response = client.get(reverse("oidc_authentication_callback"), {"code": "any", "state": state})
    return response, token_call


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"aud": "another-client"}, id="wrong-audience"),
        pytest.param({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, id="expired"),
        pytest.param({"iss": "https://impostor.example/o"}, id="wrong-issuer"),
        pytest.param({"nonce": "not-this-sign-in"}, id="wrong-nonce"),
    ],
)
def test_tokens_that_fail_their_checks_are_refused(client, idp, alice, claims):
    idp_person("alice.at.idp", "alice@example.org")
    response, _ = _callback_with(client, lambda nonce: idp.id_token(**{"nonce": nonce, "sub": "1", **claims}))

    assert response.status_code == 400
    assert "could not be checked" in response.content.decode()
    assert signed_in_user_id(client) is None
    assert not SsoLink.objects.exists()
    assert AuditEvent.objects.filter(action="user.sso_refused", data__reason="invalid_response").exists()


def test_a_token_with_a_bad_signature_is_refused(client, idp, alice):
    forger = rsa_private_key()  # same kid, another key
    response, _ = _callback_with(client, lambda nonce: idp.id_token(key=forger, nonce=nonce))
    assert response.status_code == 400 and signed_in_user_id(client) is None


def test_a_well_made_token_passes_the_same_checks(client, idp, alice):
    # the crafted path itself works: the refusals above are the checks, not the harness
    idp_alice = idp_person("alice.at.idp", "alice@example.org")

    def token(nonce):
        return idp.id_token(nonce=nonce, sub=str(idp_alice.pk), email="alice@example.org", email_verified=True)

    with mock.patch.object(SsoBackend, "get_userinfo", return_value={"sub": str(idp_alice.pk)}):
        response, _ = _callback_with(client, token)
    assert response.status_code == 302 and signed_in_user_id(client) == str(alice.user.pk)


def test_a_replayed_state_is_refused(client, idp, alice):
    idp_alice = idp_person("alice.at.idp", "alice@example.org")
    url = callback_url(client, idp_alice)
    assert client.get(url).status_code == 302  # used once
    client.logout()

    # the same answer again, in the same browser and in another one
    again = client.get(url)
    elsewhere = Client()
    stolen = elsewhere.get(url)

    assert signed_in_user_id(client) is None and signed_in_user_id(elsewhere) is None
    assert again.status_code in (302, 400) and stolen.status_code in (302, 400)
    if stolen.status_code == 302:
        assert stolen["Location"] == reverse("login")


def test_a_state_used_in_the_same_session_is_refused_before_the_provider_is_asked(client, idp, alice):
    idp_alice = idp_person("alice.at.idp", "alice@example.org")
    url = callback_url(client, idp_alice)
    client.get(url)
    with mock.patch.object(SsoBackend, "get_token") as token_call:
        response = client.get(url)
    assert response.status_code == 400
    token_call.assert_not_called()


def test_a_provider_that_does_not_answer_gives_a_clear_page(client, settings):
    settings.OIDC_ISSUER = "http://127.0.0.1:9/o"
    settings.OIDC_RP_CLIENT_ID = "access-portal"
    from identity_sources.sso import config

    config.forget()
    response = client.get(reverse("oidc_authentication_init"))
    assert response.status_code == 502
    assert "did not answer" in response.content.decode()
    config.forget()
