"""The auditor's day in chromium (issue 16, auditor points 1-3, "Done when").

An auditor signs in and sees only what an auditor uses; reads the trail as sentences, in their
browser's time zone; hides the sign-ins, picks an action from its group, searches a target exactly;
goes from a sentence to the person and from there to their timeline, oldest first; takes the
inventory export away with names in it. axe-core finds nothing on these pages, and none scrolls
sideways on a 390 px phone.
"""

import csv
import io
import re

import pytest
from playwright.sync_api import expect

from audit.choices import AuditAction
from audit.services import audit_event_record
from governance.choices import RiskTier
from jit.services.approvals import access_request_decide
from jit.services.requests import access_request_submit
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
# What sticks out on the right when a page is too wide (named in the failure).
WIDEST = """[...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .slice(0, 6).map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)"""
WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


@pytest.fixture
def history():
    PersonFactory(name="Ada Auditor", user__username="ada", user__roles=["auditor"])
    olu = PersonFactory(name="Olu Owner", user__username="olu", user__roles=["requester", "owner"])
    riya = PersonFactory(name="Riya Requester", user__username="riya")
    ledger = SystemFactory(name="Ledger", owner=olu)
    logs = EntitlementFactory(name="s3-logs-reader", system=ledger, owner=olu, risk_tier=RiskTier.LOW)
    audit_event_record(actor=riya.user, action=AuditAction.USER_LOGGED_IN, target=riya.user)
    request = access_request_submit(
        actor=riya.user, beneficiary_id=riya.pk, entitlement_id=logs.pk, justification="Read the incident's logs"
    )
    access_request_decide(request_id=request.pk, approver=olu.user, decision="approve", comment="For INC-7")
    return {"request": request}


@pytest.fixture
def berlin(browser, live_server):
    """A browser in Berlin: the portal learns its zone from it."""
    context = browser.new_context(base_url=live_server.url, timezone_id="Europe/Berlin", accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def check_page(page):
    """axe-core's WCAG 2.1 A/AA rules pass, and a 390 px phone does not scroll the page sideways."""
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(page, options=WCAG_AA).response["violations"]
    assert not violations, [f"{v['id']}: {v['nodes'][0]['target']}" for v in violations]
    size = page.viewport_size
    page.set_viewport_size(PHONE)
    width, client_width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    wide = page.evaluate(WIDEST)
    page.set_viewport_size(size)
    assert width <= client_width, f"{page.url} scrolls sideways on a phone: {width} > {client_width}: {wide}"


def sentence(page, text):
    return page.locator("p.trail-sentence", has_text=text)


def test_the_auditor_reads_the_trail_and_a_timeline_and_takes_the_export(berlin, history):
    page, request = berlin, history["request"]
    approved = f"Olu Owner approved request #{request.pk} for s3-logs-reader (Ledger)"

    # Ada signs in: the trail and the export are in her navigation, nobody's own work is
    page.goto("/login/")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Sign in").click()
    main_nav = page.get_by_role("navigation", name="Main")
    expect(main_nav.get_by_role("link", name="Inventory export")).to_be_visible()
    expect(main_nav.get_by_role("link", name="My requests")).to_have_count(0)

    # The trail reads as sentences, in her browser's zone (the page redraws itself once to learn it)
    main_nav.get_by_role("link", name="Audit trail").click()
    expect(page.get_by_text("Times are in Europe/Berlin.")).to_be_visible()
    page.wait_for_load_state()
    expect(sentence(page, approved)).to_be_visible()
    expect(page.locator(".trail-when time").first).to_have_attribute("title", re.compile(r"CET$"))
    expect(sentence(page, "Riya Requester signed in")).to_be_visible()
    check_page(page)

    # Sign-ins hidden; an action picked from its group
    page.get_by_label("Hide sign-ins and sign-outs").check()
    page.get_by_role("button", name="Filter").click()
    expect(sentence(page, "Riya Requester signed in")).to_have_count(0)
    expect(sentence(page, approved)).to_be_visible()
    page.get_by_role("combobox", name="Action").select_option(label="Request submitted")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("p.trail-sentence")).to_have_count(1)
    submitted = sentence(page, f"Riya Requester requested s3-logs-reader (Ledger) for themself (request #{request.pk})")
    expect(submitted).to_be_visible()
    expect(page.get_by_text("Read the incident's logs")).to_be_visible()  # the data, as a labelled field

    # The target search is exact: the request, not every request whose number starts alike
    page.get_by_role("combobox", name="Action").select_option(label="Any action")
    page.get_by_role("textbox", name="Target").fill(f"request #{request.pk}")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("p.trail-sentence")).to_have_count(3)  # submitted, stage approved, approved
    expect(sentence(page, approved)).to_be_visible()

    # From a sentence to the person, and to her timeline
    submitted.get_by_role("link", name="Riya Requester").click()
    expect(page.get_by_role("heading", name="Riya Requester")).to_be_visible()
    page.get_by_role("link", name="Timeline", exact=True).click()
    expect(page.get_by_role("heading", name="Timeline of Riya Requester")).to_be_visible()
    page.get_by_role("link", name="oldest first").click()
    told = page.locator("p.trail-sentence").all_inner_texts()
    assert told[0].startswith("Riya Requester requested s3-logs-reader (Ledger) for themself"), told
    assert approved in told and told.index(approved) > 0, told
    check_page(page)

    # The inventory export, from the navigation, names who and what
    main_nav.get_by_role("link", name="Inventory export").click()
    check_page(page)
    with page.expect_download() as download:
        page.get_by_role("link", name="Export identities as CSV").click()
    with open(download.value.path(), encoding="utf-8") as exported:
        rows = list(csv.DictReader(io.StringIO(exported.read())))
    assert "owner_name" in rows[0] and {row["name"] for row in rows} >= {"Olu Owner", "Riya Requester"}
