"""An admin connects the identity provider over SCIM in the browser: adds the source, copies its token
once, the provider pushes a joiner with it, then the token is replaced and the source revoked."""

import json
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from governance.models import Identity
from tests.factories.governance import PersonFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def push_joiner(base_url: str, token: str, user_name: str) -> int:
    """The provider's side: POST a new user to the portal's SCIM endpoint; the HTTP status."""
    body = json.dumps(
        {"schemas": [USER], "userName": user_name, "name": {"givenName": "Ada", "familyName": "Lovelace"}}
    )
    push = urllib.request.Request(
        f"{base_url}/scim/v2/Users",
        data=body.encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
    )
    try:
        with urllib.request.urlopen(push, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_an_admin_connects_replaces_and_revokes_a_scim_source(page, login, live_server):
    PersonFactory(name="Bo Admin", user__username="bo", user__roles=["admin"])
    login("bo")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Identity sources").click()
    expect(page.locator("main")).to_contain_text("No SCIM source yet")

    page.get_by_label("Name").fill("Okta!")
    page.get_by_role("button", name="Add the source and issue its token").click()
    expect(page.locator("#id_name_error")).to_contain_text("letters, digits")

    page.get_by_label("Name").fill("okta")
    page.get_by_role("button", name="Add the source and issue its token").click()
    expect(page.get_by_role("heading", name="SCIM token issued for okta")).to_be_visible()
    token = page.get_by_label("Token").input_value()
    assert push_joiner(live_server.url, token, "ada") == 201
    assert Identity.objects.filter(name="Ada Lovelace").exists()

    page.get_by_role("button", name="Done").click()  # a link styled as a button
    row = page.get_by_role("row").filter(has_text="okta")
    expect(row).to_contain_text("1")  # one person provisioned
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Replace token of okta").click()
    expect(page.get_by_role("heading", name="SCIM token replaced for okta")).to_be_visible()
    new_token = page.get_by_label("Token").input_value()
    assert push_joiner(live_server.url, token, "grace") == 401
    assert push_joiner(live_server.url, new_token, "grace") == 201

    page.get_by_role("button", name="Done").click()  # a link styled as a button
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("row").filter(has_text="okta").get_by_role("button", name="Revoke okta").click()
    expect(page.locator("#messages")).to_contain_text("SCIM source okta revoked")
    expect(page.get_by_role("row").filter(has_text="okta")).to_contain_text("revoked")
    assert push_joiner(live_server.url, new_token, "linus") == 401
