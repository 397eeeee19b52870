"""A requester picks several entitlements in the catalogue, asks for them in one request, sees a
separation-of-duties block before submitting, and activates the approved high-risk one in one click
from the dashboard. Every page on the way passes axe-core and fits a 390 px wide phone. Ref: #16."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from governance.choices import GrantKind, RiskTier
from governance.models import Notification
from jit.models import AccessRequest
from jit.services.approvals import access_request_decide
from tests.factories.governance import EntitlementFactory, GrantFactory, PersonFactory, SodRuleFactory, SystemFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
# What sticks out, named in the failure message.
WIDEST = """[...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .slice(0, 8).map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)"""


@pytest.fixture
def catalogue():
    alice = PersonFactory(name="Alice", user__username="alice", user__roles=["requester"])
    owner = PersonFactory(name="Olu Owner", user__username="olu", user__roles=["owner"])
    prod = SystemFactory(name="Prod cluster", owner=owner)
    shell = EntitlementFactory(name="prod-shell", risk_tier=RiskTier.HIGH, system=prod, owner=owner)
    logs = EntitlementFactory(name="logs-read", system=prod, owner=owner)
    deploy = EntitlementFactory(name="deploy", risk_tier=RiskTier.MEDIUM, system=prod, owner=owner)
    approve = EntitlementFactory(name="approve-release", risk_tier=RiskTier.MEDIUM, system=prod, owner=owner)
    SodRuleFactory(name="Deploy or approve", action="block", entitlements=[deploy, approve])
    GrantFactory(identity=alice, entitlement=approve)  # standing: deploy would complete the pair
    metrics = EntitlementFactory(name="metrics-read", risk_tier=RiskTier.MEDIUM, system=prod, owner=owner)
    GrantFactory(identity=alice, entitlement=metrics, kind=GrantKind.JIT, expires_at=timezone.now() + timedelta(days=6))
    return {"shell": shell, "logs": logs, "deploy": deploy, "owner": owner}


def checked(page):
    """axe-core's WCAG 2.1 A/AA rules on the page as it is, then the same page on a phone: no sideways scroll."""
    from axe_playwright_python.sync_playwright import Axe

    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
    violations = Axe().run(page, options=options).response["violations"]
    assert not violations, [f"{v['id']}: {v['nodes'][0]['target']}" for v in violations]
    size = page.viewport_size
    page.set_viewport_size(PHONE)
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    wide = page.evaluate(WIDEST)
    page.set_viewport_size(size)
    assert widths[0] <= widths[1], f"{page.url} scrolls sideways on a phone: {widths} {wide}"


def test_request_several_see_a_block_and_activate_in_one_click(page, login, catalogue):
    login("alice")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()

    # A blocked entitlement: the preview names the conflict and what to do; the button is off.
    page.goto(f"/access/request/{catalogue['deploy'].pk}/")
    preview = page.locator("#policy-preview")
    expect(preview).to_contain_text("Deploy or approve")
    expect(preview).to_contain_text("approve-release")
    expect(preview.get_by_role("link", name="Release approve-release")).to_be_visible()
    expect(page.get_by_role("button", name="Submit request")).to_be_disabled()
    checked(page)

    # The catalogue: sortable, and two ticked to ask for together.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Request access").click()
    page.get_by_role("link", name="Risk").click()
    expect(page.locator("th[aria-sort='ascending']")).to_have_text(re.compile("Risk"))
    checked(page)
    page.get_by_label("Select prod-shell in Prod cluster").check()
    page.get_by_label("Select logs-read in Prod cluster").check()
    page.get_by_role("button", name="Request the selected").click()
    expect(page.get_by_role("heading", name="Request 2 entitlements together")).to_be_visible()

    # One duration preset, cut to each one's maximum; the preview shows both decisions.
    page.get_by_label("4 hours").check()
    expect(preview).to_contain_text("prod-shell")
    expect(preview).to_contain_text("logs-read")
    expect(preview).to_contain_text("4 hours")
    page.get_by_label("Justification").fill("Rotate the cluster certificates")
    checked(page)
    page.get_by_role("button", name="Submit request").click()
    expect(page.get_by_role("status").filter(has_text="2 requests submitted")).to_be_visible()
    checked(page)
    shell_request = AccessRequest.objects.get(entitlement=catalogue["shell"])
    assert {r.justification for r in AccessRequest.objects.all()} == {"Rotate the cluster certificates"}

    # The owner approves both (the approver's own journey covers the queue).
    for access_request in AccessRequest.objects.all():
        access_request_decide(
            request_id=access_request.pk, approver=catalogue["owner"].user, decision="approve", stage_position=1
        )

    # The high-risk one waits for Alice: prominent on the dashboard, one click to activate.
    page.goto("/")
    ready = page.locator(".ready-to-activate")
    expect(ready).to_contain_text(re.compile(r"prod-shell[\s\S]*ready to activate, [78] h \d+ min left"))
    checked(page)
    ready.get_by_role("button", name="Activate prod-shell on Prod cluster").click()
    expect(page.get_by_role("status").filter(has_text="prod-shell activated")).to_be_visible()
    expect(page.locator(".ready-to-activate")).to_have_count(0)
    shell_request.refresh_from_db()
    assert shell_request.grant_id is not None

    # Its page now tells the story in words; the window is gone; the grant is a link.
    page.goto(f"/access/requests/{shell_request.pk}/")
    history = page.locator("ol.history")
    expect(history).to_contain_text("Alice asked for prod-shell on Prod cluster for Alice, for 4 hours")
    expect(history).to_contain_text("Olu Owner approved stage 1")
    expect(history).to_contain_text("Alice activated it")
    expect(page.get_by_text("left to activate")).to_have_count(0)
    expect(page.get_by_role("link", name=f"Grant #{shell_request.grant_id}", exact=True)).to_be_visible()
    checked(page)

    # My grants; extending one, the preview follows the duration and says the limit in plain words.
    page.goto("/access/grants/")
    checked(page)
    page.locator("tr", has_text="metrics-read").get_by_role(
        "button", name="Extend"
    ).click()  # a link styled as a button
    expect(page.get_by_text("up to 1 day more, because the total is capped at 7 days from now")).to_be_visible()
    page.get_by_label("4 hours").check()
    expect(preview).to_contain_text("4 hours")
    page.get_by_label("Other extra time (hours)").fill("30")
    expect(preview).to_contain_text("would be refused")
    checked(page)

    # The notifications: each names the system; opening one marks it read.
    page.goto("/access/notifications/")
    newest = page.locator("tbody tr").first
    expect(newest).to_contain_text("prod-shell on Prod cluster")
    checked(page)
    newest.get_by_role("link", name=re.compile("^Open")).click()
    expect(page).to_have_url(re.compile(rf"/access/requests/{shell_request.pk}/$"))
    assert Notification.objects.get(key=f"request:{shell_request.pk}:approved").read_at is not None
