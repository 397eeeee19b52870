"""A requester asks, two stages approve in the queue, the system owner provisions, the grant runs. Ref: #4."""

import re

import pytest
from playwright.sync_api import expect

from governance.choices import RiskTier
from governance.services.grants import grant_confirm_provisioned
from jit.models import AccessRequest
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TWO_STAGES = [{"approver": "entitlement_owner", "quorum": 1}, {"approver": "system_owner", "quorum": 1}]


@pytest.fixture
def catalogue():
    PersonFactory(name="Alice", user__username="alice", user__roles=["requester"])
    return EntitlementFactory(
        name="db-write",
        risk_tier=RiskTier.MEDIUM,
        approval_stages=TWO_STAGES,
        system=SystemFactory(
            name="Payments DB", owner=PersonFactory(name="Sysowner", user__username="sysowner", user__roles=["owner"])
        ),
        owner=PersonFactory(name="Entowner", user__username="entowner", user__roles=["owner"]),
    )


def sign_in_as(page, login, username):
    page.context.clear_cookies()
    login(username)
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()


def approve_in_queue(page, comment=""):
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Approvals").click()
    row = page.locator("article.queue-row", has_text="db-write")
    expect(row).to_contain_text("Alice")
    row.get_by_label("Comment").fill(comment)
    row.get_by_role("button", name="Approve").click()
    return page.locator(".outcome")


def test_request_two_stage_approval_provisioning_and_time_left(page, login, catalogue):
    entitlement = catalogue

    # Alice asks for db-write for 2 hours and sees the policy preview before submitting.
    sign_in_as(page, login, "alice")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Request access").click()
    page.get_by_role("button", name="Request db-write in Payments DB").click()  # a link styled as a button
    preview = page.locator("#policy-preview")
    expect(preview).to_contain_text("Entowner")
    page.get_by_label("Duration (hours)").fill("2")
    page.get_by_label("Justification").click()  # leaving the field fires change: the preview reloads
    expect(preview).to_contain_text("2 hours")
    expect(preview).to_contain_text("Sysowner")
    page.get_by_label("Justification").fill("Fix incident 42: repair the ledger")
    page.get_by_role("button", name="Submit request").click()
    expect(page.get_by_role("status").filter(has_text="submitted")).to_be_visible()
    access_request = AccessRequest.objects.get()
    assert access_request.duration.total_seconds() == 2 * 3600

    # The entitlement owner approves stage 1 in place; the system owner completes stage 2.
    sign_in_as(page, login, "entowner")
    page.goto("/access/approvals/")
    page.locator("article.queue-row", has_text="db-write").get_by_role("button", name="Deny").click()
    expect(page.locator("article.queue-row", has_text="db-write")).to_contain_text(
        "Required when denying."
    )  # a 400 shown in the row
    expect(approve_in_queue(page, "ok for the incident")).to_contain_text("now waits for stage 2")
    sign_in_as(page, login, "sysowner")
    expect(approve_in_queue(page)).to_contain_text("Approved")

    # The system owner confirms the manual provisioning. The inventory's grant page is not
    # there yet, so the test calls the service that page will call.
    access_request.refresh_from_db()
    grant_confirm_provisioned(grant_id=access_request.grant_id, actor=entitlement.system.owner.user)

    # Alice sees the grant active, with its time left.
    sign_in_as(page, login, "alice")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My grants").click()
    row = page.locator(f"#grant-{access_request.grant_id}")
    expect(row).to_contain_text("Active")
    expect(row.locator(".time-left")).to_have_text(re.compile(r"^(1 h 5\d|2 h 0) min$"))
