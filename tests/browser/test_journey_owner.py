"""An owner fixes findings in the browser: assigns an owner to an orphan (the finding closes at once)
and accepts a risk until a date (it moves to the exception register, which the auditor reads). The
new pages pass axe-core and do not scroll sideways on a phone. Ref: #16 Owner 1-2."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from governance.choices import FindingKind, FindingStatus, IdentityStatus
from governance.models import Finding, Identity
from governance.services.findings import findings_scan
from tests.factories.governance import MachineFactory, PersonFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
WIDTHS = "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"


@pytest.fixture
def estate():
    olu = PersonFactory(name="Olu Owner", user__username="olu", user__roles=["owner"])
    PersonFactory(name="Nia New", user__username="nia", user__roles=["requester"])
    PersonFactory(name="Ada Auditor", user__username="ada", user__roles=["auditor"])
    # An orphan Olu backs up (its owner left), and a machine of Olu's with an overdue rotation.
    gone = PersonFactory(name="Gone Person")
    orphan = MachineFactory(name="legacy-sync", owner=gone, backup_owner=olu)
    Identity.objects.filter(pk=gone.pk).update(status=IdentityStatus.OFFBOARDED)
    overdue = MachineFactory(
        name="rotate-me-bot", owner=olu, last_rotated_at=timezone.now() - timedelta(days=200), rotation_period_days=90
    )
    findings_scan()
    return {"orphan": orphan, "overdue": overdue}


def check_page(page, axe, found: dict, overflow: dict) -> None:
    """axe-core's WCAG A/AA rules at desktop width, then no sideways scrolling at 390x844."""
    path = page.url
    violations = axe.run(page, options=WCAG_AA).response["violations"]
    if violations:
        found[path] = [f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}" for v in violations]
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    width, client_width = page.evaluate(WIDTHS)
    if width > client_width:
        overflow[path] = (width, client_width)
    page.set_viewport_size({"width": 1280, "height": 800})


def test_owner_fixes_a_finding_and_accepts_a_risk(page, login, estate):
    from axe_playwright_python.sync_playwright import Axe

    axe, found, overflow = Axe(), {}, {}
    orphan, overdue = estate["orphan"], estate["overdue"]
    login("olu")
    nav = page.get_by_role("navigation", name="Main")

    # Olu sees the orphan on its page with the fix he may take, and assigns Nia as its owner
    page.goto(f"/inventory/identities/{orphan.pk}/")
    expect(page.locator("main")).to_contain_text("Orphaned")
    page.get_by_role("button", name="Assign an owner").click()  # a link styled as a button
    expect(page.get_by_role("heading", level=1)).to_have_text("Assign an owner")
    check_page(page, axe, found, overflow)
    page.get_by_role("combobox", name="New owner").fill("nia")
    page.get_by_role("button", name="Assign an owner").click()

    # back on the identity page: the finding closed at once, not at the next scan
    expect(page.locator("#messages")).to_contain_text("The finding is closed")
    expect(page.locator("main")).to_contain_text("No open findings")
    assert Finding.objects.get(kind=FindingKind.ORPHANED, identity=orphan).status == FindingStatus.RESOLVED

    # On the findings page Olu accepts the overdue rotation's risk until a date, for a reason
    nav.get_by_role("link", name="Findings", exact=True).click()
    expect(page.locator("tbody")).to_contain_text("rotate-me-bot")
    check_page(page, axe, found, overflow)
    row = page.locator("tbody tr").filter(has_text="rotate-me-bot")
    row.get_by_role("button", name="Accept the risk").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Accept the risk")
    page.get_by_role("button", name="Accept the risk").click()  # nothing filled: errors beside the fields
    expect(page.locator("#id_reason_error")).to_be_visible()
    expect(page.locator("#id_until_error")).to_be_visible()
    check_page(page, axe, found, overflow)
    until = timezone.localdate() + timedelta(days=30)
    page.get_by_label("Why this risk is acceptable for now").fill("The vendor rotates it with the Q3 upgrade")
    page.get_by_label("Accepted until").fill(until.isoformat())
    page.get_by_role("button", name="Accept the risk").click()
    expect(page.locator("#messages")).to_contain_text(f"Risk accepted until {until:%Y-%m-%d}")
    expect(page.locator("tbody tr").filter(has_text="rotate-me-bot")).to_have_count(0)  # no longer open

    # It is in the exception register: who accepted it, why, until when
    nav.get_by_role("link", name="Exceptions").click()
    row = page.locator("tbody tr").filter(has_text="rotate-me-bot")
    expect(row).to_contain_text("The vendor rotates it with the Q3 upgrade")
    expect(row).to_contain_text("Olu Owner")
    expect(row).to_contain_text(f"{until:%Y-%m-%d}")
    check_page(page, axe, found, overflow)

    # The auditor reads the same register
    page.context.clear_cookies()
    login("ada")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Exceptions").click()
    expect(page.locator("tbody")).to_contain_text("rotate-me-bot")
    check_page(page, axe, found, overflow)
    assert overdue.pk == Finding.objects.get(status=FindingStatus.ACCEPTED).identity_id

    assert not found, found
    assert not overflow, f"Pages wider than the phone (scrollWidth, clientWidth): {overflow}"
