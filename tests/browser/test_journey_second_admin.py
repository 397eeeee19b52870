"""Two people for what bypasses approvals: an owner's loosening waits for another admin, and an admin
makes a login without ever knowing its password. Ref: issue 11, points 1 and 4."""

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from audit.models import OutboxMessage
from governance.choices import RiskTier
from tests.factories.governance import EntitlementFactory, PersonFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def estate():
    olu = PersonFactory(name="Olu Owner", user__username="olu", user__roles=["owner", "requester"])
    PersonFactory(name="Bo Admin", user__username="bo", user__roles=["admin"])
    return EntitlementFactory(
        name="prod-db-root", owner=olu, risk_tier=RiskTier.CRITICAL, max_duration=timedelta(hours=1)
    )


def test_an_owners_loosening_waits_until_another_admin_approves_it(page, login, estate):
    login("olu")
    page.goto(f"/inventory/catalogue/{estate.pk}/edit/")
    page.get_by_label("Approve automatically when the conditions below hold").check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#messages")).to_contain_text("waits for another admin's approval")
    panel = page.get_by_role("article").filter(has_text="Policy change waiting for approval")
    expect(panel).to_contain_text("Approved automatically when its conditions hold")
    expect(panel.get_by_role("button", name="Approve and apply")).to_have_count(0)

    page.context.clear_cookies()
    login("bo")
    page.goto(f"/inventory/catalogue/{estate.pk}/")
    page.get_by_role("button", name="Approve and apply").click()
    expect(page.locator("#messages")).to_contain_text("approved and applied")
    expect(page.locator("main")).to_contain_text("When all of these hold, nobody is asked")


def test_an_admin_makes_a_login_and_its_person_chooses_the_password(page, login, estate):
    PersonFactory(name="Cy New", email="cy@example.org", user=None)
    login("bo")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Logins").click()
    page.get_by_role("button", name="New login").click()  # a link styled as a button
    page.get_by_label("Person").select_option(label="Cy New")
    page.get_by_label("Login name").fill("cy")
    page.get_by_role("button", name="Make the login").click()
    expect(page.locator("#messages")).to_contain_text("a link to choose a password was sent to cy@example.org")

    body = OutboxMessage.objects.filter(kind="email.send", payload__to=["cy@example.org"]).get().payload["body"]
    link = re.search(r"https?://\S+(/password/reset/\S+/)", body).group(1)
    page.context.clear_cookies()
    page.goto(link)
    page.locator("#id_new_password1").fill("a-long-fresh-secret-42")  # labels end with a required mark
    page.get_by_label("New password confirmation").fill("a-long-fresh-secret-42")
    page.get_by_role("button", name="Save my password").click()
    expect(page.locator("h1")).to_have_text("Password saved")
    login("cy", "a-long-fresh-secret-42")
    expect(page.locator("header")).to_contain_text("Signed in as cy")
