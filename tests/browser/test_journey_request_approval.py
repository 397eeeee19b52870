"""A requester asks, two stages approve in the queue, the system owner provisions, the grant runs. Ref: #4."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from playwright.sync_api import expect

from governance.choices import RiskTier
from jit.models import AccessRequest
from jit.services.expiry import grants_expire_due
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TWO_STAGES = [{"approver": "entitlement_owner", "quorum": 1}, {"approver": "system_owner", "quorum": 1}]


@pytest.fixture
def catalogue():
    PersonFactory(name="Alice", user__username="alice", user__roles=["requester"])
    PersonFactory(name="Ada", user__username="auditor", user__roles=["auditor"])
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

    # The manual connector asked the system owner; they confirm on the grant's page.
    access_request.refresh_from_db()
    page.goto(f"/inventory/grants/{access_request.grant_id}/")
    page.get_by_role("button", name="Confirm granted in Payments DB").click()
    expect(page.get_by_role("status").filter(has_text="the grant is active")).to_be_visible()

    # Alice sees the grant active, with its time left.
    sign_in_as(page, login, "alice")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My grants").click()
    row = page.locator(f"#grant-{access_request.grant_id}")
    expect(row).to_contain_text("Active")
    expect(row.locator(".time-left")).to_have_text(re.compile(r"^(1 h 5\d|2 h 0) min$"))

    # Two hours later the sweep (the beat's job, run here directly) expires it, and the system
    # owner confirms the removal.
    grant_id = access_request.grant_id
    with time_machine.travel(timezone.now() + timedelta(hours=2, minutes=5), tick=True):
        assert grants_expire_due(now=timezone.now()) == 1
        sign_in_as(page, login, "sysowner")
        page.goto(f"/inventory/grants/{grant_id}/")
        page.get_by_role("button", name="Confirm removed from Payments DB").click()
        expect(page.locator("h1 .badge")).to_have_text("Expired")

        # An auditor finds every step, with the justification, in the audit trail.
        sign_in_as(page, login, "auditor")
        page.goto(f"/audit/?target=governance.grant:{grant_id}")
        actions = page.locator("tbody tr td:nth-child(5)")
        expect(actions).to_have_text(["grant.expired", "grant.expiring", "grant.activated", "grant.created"])
        page.goto(f"/audit/?target=jit.accessrequest:{access_request.pk}")
        expect(page.locator("tbody tr td:nth-child(5)")).to_have_text(
            ["request.approved", "request.stage_approved", "request.stage_approved", "request.submitted"]
        )
        expect(page.locator("tbody tr").last).to_contain_text("Fix incident 42")
