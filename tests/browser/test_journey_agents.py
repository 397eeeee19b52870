"""AI agents in the portal's pages. Ref: issue 14.

A person lets their agent act for them on the delegations page, then takes it back; asks for access
for the agent with its declared intent, which the request's page reads out in words; an admin sets an
entitlement's automatic approval, is corrected beside the field, and the entitlement's page says the
conditions in words.
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from governance.choices import IdentityKind, RiskTier
from governance.models import Entitlement
from jit.models import AccessRequest, Delegation
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, SystemFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def estate():
    alice = PersonFactory(name="Alice Builder", user__username="alice", user__roles=["requester"])
    agent = MachineFactory(name="reconciler-7", kind=IdentityKind.AI_AGENT, owner=alice)
    PersonFactory(name="Bo Admin", user__username="bo", user__roles=["admin"])
    orders = EntitlementFactory(
        name="orders-read",
        risk_tier=RiskTier.MEDIUM,
        system=SystemFactory(name="Orders DB"),
        justification_required=False,
    )
    return {"agent": agent, "orders": orders}


def sign_in_as(page, login, username):
    page.context.clear_cookies()
    login(username)
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()


def nav(page, label):
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label, exact=True).click()


def assert_accessible(page):
    """axe-core's WCAG 2.1 A/AA rules, as tests/browser/test_accessibility.py runs them."""
    from axe_playwright_python.sync_playwright import Axe

    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
    violations = Axe().run(page, options=options).response["violations"]
    assert not violations, [f"{v['id']}: {v['nodes'][0]['target']}" for v in violations]


def test_a_person_delegates_to_their_agent_and_revokes_it(page, login, estate):
    asked = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))  # "Revoke ...?" asks first

    sign_in_as(page, login, "alice")
    nav(page, "Delegations")
    expect(page.locator(".empty-state")).to_contain_text("No delegations yet")

    # Two days and three hours from now, in the form's UTC minutes.
    expires = (timezone.now() + timedelta(days=2, hours=3)).replace(second=0, microsecond=0)
    form = page.get_by_role("form", name="Delegate to a machine")
    expect(form.get_by_label("On behalf of")).to_have_value(str(estate["agent"].owner_id))  # herself, first
    form.get_by_label("Delegate to").select_option(label="reconciler-7 (ai agent)")
    form.get_by_label("Up to risk tier").select_option(label="Low")
    form.get_by_label("Expires (UTC)").fill(f"{expires:%Y-%m-%dT%H:%M}")
    form.get_by_label("Purpose").fill("Nightly reconciliation of the orders ledger")
    form.get_by_role("button", name="Delegate", exact=True).click()
    expect(page.locator("#messages")).to_contain_text(
        f"reconciler-7 may now act for Alice Builder until {expires:%Y-%m-%d %H:%M} UTC."
    )
    delegation = Delegation.objects.get()
    assert (delegation.delegate, delegation.max_risk_tier, delegation.expires_at) == (
        estate["agent"],
        RiskTier.LOW,
        expires,
    )
    row = page.locator(f"#delegation-{delegation.pk}")
    expect(row).to_contain_text("Alice Builder")
    expect(row).to_contain_text("reconciler-7")
    expect(row).to_contain_text("any entitlement · up to Low risk")
    expect(row).to_contain_text("Nightly reconciliation of the orders ledger")
    status = row.locator("td:nth-child(5)")  # the Status column
    expect(status).to_have_text("Active")
    expect(row.locator(".time-left")).to_have_text(re.compile(r"^2 d [23] h left$"))
    assert_accessible(page)

    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#messages")).to_contain_text(
        "Delegation from Alice Builder to reconciler-7 revoked: no request can name it any more."
    )
    assert asked == ["Revoke the delegation from Alice Builder to reconciler-7? Requests can no longer name it."]
    expect(status).to_have_text("Revoked")
    expect(row).to_contain_text("revoked ")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    delegation.refresh_from_db()
    assert delegation.revoked_at is not None


def test_the_intent_fields_show_for_the_agent_and_the_request_reads_them_out(page, login, estate):
    sign_in_as(page, login, "alice")
    nav(page, "Request access")
    page.get_by_role("button", name="Request orders-read in Orders DB").click()  # a link styled as a button

    # For herself, the intent is not asked: the fieldset is hidden and disabled (nothing in it is sent).
    intent = page.locator("#intent-fields")
    expect(page.get_by_label("For")).to_have_value(str(estate["agent"].owner_id))
    expect(intent).to_be_hidden()
    page.get_by_label("For").select_option(label="reconciler-7 (ai agent you own)")
    expect(intent).to_be_visible()
    expect(intent).to_be_enabled()
    page.get_by_label("Task id").fill("T-123")
    page.get_by_label("Action").fill("read")
    page.get_by_label("Resource").fill("db/orders")
    page.get_by_label("The task in words").fill("nightly reconciliation")
    # Back to herself and to the agent again: the script follows the choice both ways.
    page.get_by_label("For").select_option(label="Alice Builder (you)")
    expect(intent).to_be_hidden()
    page.get_by_label("For").select_option(label="reconciler-7 (ai agent you own)")
    expect(intent).to_be_visible()
    page.get_by_label("Duration (hours)").fill("1")
    page.get_by_role("button", name="Submit request").click()

    expect(page.locator("#messages")).to_contain_text("submitted")
    expect(page.locator("dd.intent")).to_have_text("Task T-123: read on db/orders: nightly reconciliation")
    access_request = AccessRequest.objects.get()
    assert access_request.beneficiary == estate["agent"]
    assert (access_request.intent_task, access_request.intent_action, access_request.intent_resource) == (
        "T-123",
        "read",
        "db/orders",
    )


def test_an_admin_sets_automatic_approval_and_reads_its_conditions(page, login, estate):
    orders = estate["orders"]
    sign_in_as(page, login, "bo")
    page.goto(f"/inventory/catalogue/{orders.pk}/")
    expect(page.locator("main")).to_contain_text("Off: every request goes to its approvers.")
    page.get_by_role("button", name="Edit").click()  # a link styled as a button

    conditions = page.locator("fieldset", has=page.locator("legend", has_text="Automatic approval"))
    conditions.get_by_label("Approve automatically when the conditions below hold").check()
    conditions.get_by_label("While this entitlement's risk tier is at most").select_option(label="Medium")
    conditions.get_by_label("For at most (minutes)").fill("0")
    page.get_by_role("button", name="Save").click()
    error = page.locator("#id_auto_approve_max_minutes_error")  # beside the field, and nothing saved
    expect(error).to_have_text("Ensure this value is greater than or equal to 1.")
    assert not Entitlement.objects.get(pk=orders.pk).auto_approve_machines

    # The form came back as sent: only the minutes need fixing.
    expect(conditions.get_by_label("Approve automatically when the conditions below hold")).to_be_checked()
    conditions.get_by_label("For at most (minutes)").fill("30")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#messages")).to_contain_text("orders-read")
    expect(page.locator("#messages")).to_contain_text("updated")  # medium risk: not held for a second admin
    main = page.locator("main")
    expect(main).to_contain_text("When all of these hold, nobody is asked")
    expect(main).to_contain_text("this entitlement's risk tier is at most medium")
    expect(main).to_contain_text("the duration is at most 30 minutes")
    expect(main).not_to_contain_text("so nothing is approved automatically")
    orders.refresh_from_db()
    assert (orders.auto_approve_machines, orders.auto_approve_max_minutes, orders.auto_approve_max_risk) == (
        True,
        30,
        RiskTier.MEDIUM,
    )


def test_an_agent_chosen_before_the_page_finished_loading_still_gets_the_intent_fields(page, login, estate):
    sign_in_as(page, login, "alice")
    # the page's script is held back, as on a slow connection: the choice is made before it listens
    held = []
    page.route("**/js/intent-fields.js", lambda route: held.append(route))
    page.goto(f"/access/request/{estate['orders'].pk}/", wait_until="commit")
    page.get_by_label("For").select_option(label="reconciler-7 (ai agent you own)")
    while not held:
        page.wait_for_timeout(20)
    held[0].continue_()

    intent = page.locator("#intent-fields")
    expect(intent).to_be_visible()
    expect(intent).to_be_enabled()
