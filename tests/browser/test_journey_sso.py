"""Single sign-on in chromium, through a real OpenID provider (issue 18, item 1).

Two live servers of the same Django: the portal on `localhost`, django-oauth-toolkit's OpenID provider on
`127.0.0.1` (another host, so the two keep their own cookies as a portal and its provider do). Alice
signs in with the provider, is linked to her person in the inventory, lands on the dashboard with the
role her provider group maps to, and signs out of both.
"""

import re

import pytest
from playwright.sync_api import expect
from pytest_django.live_server_helper import LiveServer

from audit.models import AuditEvent
from identity_sources.models import SsoLink
from tests.factories.governance import PersonFactory
from tests.identity_sources.provider import IDP_PASSWORD, PROVIDER_NAME, idp_person, running_provider

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def provider_server():
    server = LiveServer("127.0.0.1:0")
    yield server
    server.stop()


@pytest.fixture
def idp(provider_server, live_server):
    with running_provider(
        provider_url=provider_server.url,
        portal_url=live_server.url,
        role_map={"portal-approvers": "approver", "portal-admins": "admin"},
    ) as provider:
        yield provider


def test_sign_in_with_the_provider_lands_on_the_dashboard_with_mapped_roles_and_signs_out_of_both(
    page, idp, live_server
):
    alice = PersonFactory(
        name="Alice Able",
        email="alice@example.org",
        user__username="alice",
        user__first_name="Alice",
        user__last_name="Able",
        user__roles=["requester"],
    )
    idp_person("alice.idp", "alice@example.org", groups=["portal-approvers", "wiki-editors"])

    # the portal's sign-in page offers the provider
    page.goto("/login/")
    page.get_by_role("button", name=f"Sign in with {PROVIDER_NAME}", exact=True).click()

    # at the provider (another host): its own sign-in page
    expect(page).to_have_url(re.compile(rf"^{re.escape(idp.url)}/idp/login/"))
    page.get_by_label("IdP username").fill("alice.idp")
    page.get_by_label("IdP password").fill(IDP_PASSWORD)
    page.get_by_role("button", name="Continue").click()

    # back at the portal, signed in as Alice with her mapped role beside the portal's own
    expect(page.get_by_role("heading", name="Welcome, Alice Able")).to_be_visible()
    roles = page.locator("hgroup .badge")
    expect(roles).to_have_text(["approver", "requester"])
    assert SsoLink.objects.get().user_id == alice.user_id
    assert AuditEvent.objects.filter(action="user.logged_in", channel="sso", actor_user_id=alice.user_id).exists()

    # sign out: the provider's session ends too, and the browser comes back to the portal's sign-in page
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.url == f"{live_server.url}/login/"

    # signing in again asks the provider for the password again: its session is gone
    page.get_by_role("button", name=f"Sign in with {PROVIDER_NAME}", exact=True).click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(idp.url)}/idp/login/"))


def test_someone_the_portal_does_not_know_is_told_to_ask_an_admin(page, idp):
    idp_person("stranger.idp", "stranger@example.org", groups=["portal-admins"])

    page.goto("/login/")
    page.get_by_role("button", name=f"Sign in with {PROVIDER_NAME}", exact=True).click()
    page.get_by_label("IdP username").fill("stranger.idp")
    page.get_by_label("IdP password").fill(IDP_PASSWORD)
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", name="No portal access for this account")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Ask a portal admin to add you")
    page.get_by_role("link", name="Back to the sign-in page").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
