"""An owner sees their identities and findings, fixes an owner, offboards an identity; the audit
trail shows each step. Ref: #3."""

import pytest
from playwright.sync_api import expect

from governance.services.findings import findings_scan
from tests.factories.governance import GrantFactory, MachineFactory, PersonFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def estate():
    olu = PersonFactory(name="Olu Owner", user__username="olu", user__roles=["owner"])
    PersonFactory(name="Ada", user__username="ada", user__roles=["auditor"])
    gone = PersonFactory(name="Gone Person", status="offboarded")
    MachineFactory(name="legacy-sync", owner=gone, backup_owner=None)
    bot = MachineFactory(name="billing-bot", owner=olu)
    GrantFactory(identity=bot)
    findings_scan()
    return bot


def test_owner_fixes_an_owner_and_offboards_an_identity(page, login, estate):
    bot = estate
    # Olu's identities and the findings they must act on
    login("olu")
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="My identities").click()
    expect(page.locator("tbody")).to_contain_text("billing-bot")
    nav.get_by_role("link", name="Findings").click()
    expect(page.locator("tbody")).to_contain_text("legacy-sync")

    # Olu names a backup owner for his bot, then offboards it.
    page.goto(f"/inventory/identities/{bot.pk}/")
    page.get_by_role("button", name="Change owner").click()  # a link styled as a button
    page.get_by_label("Backup owner").fill("ada")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#messages")).to_contain_text("updated")

    page.get_by_role("button", name="Offboard", exact=True).click()
    expect(page.locator("main")).to_contain_text("Access to revoke (1)")
    page.get_by_label("Reason").fill("Replaced by the payments platform")
    page.get_by_role("button", name="Offboard billing-bot").click()
    expect(page.locator("#messages")).to_contain_text("offboarded: 1 grant(s) being revoked")
    expect(page.locator("h1 .badge")).to_have_text("Offboarded")

    # The auditor sees each step
    page.context.clear_cookies()
    login("ada")
    page.goto(f"/audit/?target=governance.identity:{bot.pk}")
    expect(page.locator("tbody tr td:nth-child(5)")).to_have_text(["identity.offboarded", "identity.owner_changed"])
    expect(page.locator("tbody tr").first).to_contain_text("olu")
