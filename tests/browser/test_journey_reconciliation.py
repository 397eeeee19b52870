"""An admin finds access on a target that no grant governs and adopts it: a standing grant, sent to its
entitlement's owner for review. Ref: issue 15 part 4."""

import pytest
from playwright.sync_api import expect

from governance.choices import GrantStatus
from governance.connectors import CONNECTORS, BaseConnector, Holding
from governance.models import Grant, ReviewItem
from governance.services.reconciliation import systems_reconcile_due
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, SystemFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class WarehouseTarget(BaseConnector):
    """The target: reporting-bot holds the analyst role there, and no grant says so."""

    def holdings(self) -> set[Holding]:
        return {Holding("reporting-bot", "analyst")}


@pytest.fixture
def estate(monkeypatch):
    monkeypatch.setitem(CONNECTORS, "manual", f"{__name__}.WarehouseTarget")
    PersonFactory(name="Bo Admin", user__username="bo", user__roles=["admin"])
    ena = PersonFactory(name="Ena Entowner", user__username="ena", user__roles=["owner"])
    system = SystemFactory(name="Warehouse")
    analyst = EntitlementFactory(system=system, name="analyst", owner=ena)
    bot = MachineFactory(name="reporting-bot", external_id="reporting-bot")
    systems_reconcile_due()  # the beat's run
    return {"bot": bot, "analyst": analyst}


def test_an_admin_adopts_ungoverned_access_and_its_owner_gets_it_to_review(page, login, estate):
    login("bo")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Findings").click()
    page.get_by_label("Kind").select_option(label="Access on the target with no grant")
    page.get_by_role("button", name="Filter").click()
    row = page.locator("tbody tr").filter(has_text="reporting-bot holds analyst on Warehouse")
    expect(row).to_contain_text("Account reporting-bot · target analyst · system Warehouse")

    row.get_by_role("button", name="Adopt and send to review").click()

    expect(page.locator("#messages")).to_contain_text("Adopted as standing grant")
    expect(page.locator("#messages")).to_contain_text("sent to its entitlement's owner for review")
    expect(page.locator("main")).not_to_contain_text("reporting-bot holds analyst")  # resolved
    grant = Grant.objects.get(identity=estate["bot"], entitlement=estate["analyst"])
    assert grant.status == GrantStatus.ACTIVE and grant.kind == "standing"

    # the entitlement's owner finds it in their review queue
    page.context.clear_cookies()
    login("ena")
    page.goto("/inventory/reviews/")
    expect(page.locator("main")).to_contain_text("reporting-bot")
    assert ReviewItem.objects.filter(grant=grant, reviewer__username="ena").exists()
