"""An approver works the queue: one request for less time than asked, two denied together, then
out of office with a deputy who decides what arrives meanwhile. axe-core finds nothing on the
queue, and at 390 px wide nothing scrolls sideways. Ref: #16 (approver)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from governance.choices import RiskTier
from jit.choices import RequestStatus
from jit.models import AccessRequest
from jit.services.requests import access_request_submit
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"


@pytest.fixture
def world():
    alice = PersonFactory(name="Alice", user__username="alice", team="Payments", manager=PersonFactory(name="Mona"))
    owner = PersonFactory(name="Entowner", user__username="entowner", user__roles=["requester", "owner", "approver"])
    PersonFactory(name="Dora Deputy", user__username="dora", user__roles=["requester", "approver"])
    system = SystemFactory(name="Payments DB", owner=owner)
    names = ("db-write-with-a-rather-long-name-for-small-screens", "reports-read", "ledger-export")
    entitlements = [
        EntitlementFactory(name=name, system=system, owner=owner, risk_tier=RiskTier.MEDIUM) for name in names
    ]
    asked = [
        access_request_submit(
            actor=alice.user,
            beneficiary_id=alice.pk,
            entitlement_id=e.pk,
            duration=timedelta(hours=4),
            justification=f"Quarter close: {e.name}",
        )
        for e in entitlements
    ]
    return {"alice": alice, "asked": asked, "later": EntitlementFactory(name="cache-flush", system=system, owner=owner)}


def sign_in_as(page, login, username):
    page.context.clear_cookies()
    login(username)
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()


def check_page(page, axe, path: str) -> None:
    """No axe-core violation, and at a phone's width no sideways scrolling."""
    violations = axe.run(page, options=WCAG_AA).response["violations"]
    assert not violations, [f"{v['id']}: {v['nodes'][0]['target']}" for v in violations]
    size = page.viewport_size
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{path} scrolls sideways at 390 px"
    page.set_viewport_size(size)


def test_approver_decides_for_less_in_bulk_and_through_a_deputy(page, login, world):
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    write, reports, ledger = world["asked"]
    page.on("dialog", lambda dialog: dialog.accept())  # "Deny every selected request?"

    # The owner's queue: three cards, with the requester's team and manager; accessible, and no
    # sideways scrolling on a phone.
    sign_in_as(page, login, "entowner")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Approvals").click()
    cards = page.locator("article.queue-row")
    expect(cards).to_have_count(3)
    expect(cards.first).to_contain_text("Team: Payments")
    expect(cards.first).to_contain_text("Manager: Mona")
    check_page(page, axe, "/access/approvals/")

    # One is approved for 1 hour of the 4 asked: its card gives way to the outcome in place.
    card = page.locator(f"#req-{write.pk}")
    card.get_by_text("Less time, or a later start").click()
    card.get_by_label("Approve for").select_option(label="1 hour")
    card.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(f"#req-{write.pk}.outcome")).to_contain_text("Approved")
    write.refresh_from_db()
    assert write.duration == timedelta(hours=1) and write.status == RequestStatus.APPROVED

    # The other two are denied together, with one comment; the queue is empty without a reload.
    page.locator(f"#req-{reports.pk}").get_by_label("Select").check()
    page.locator(f"#req-{ledger.pk}").get_by_label("Select").check()
    page.get_by_label("Comment for all selected").fill("Not before the audit")
    page.get_by_role("button", name="Deny selected").click()
    outcomes = page.locator(".queue-outcomes")
    expect(outcomes).to_contain_text(f"Denied Request #{reports.pk}")
    expect(outcomes).to_contain_text(f"Denied Request #{ledger.pk}")
    expect(page.locator("#queue-empty")).to_contain_text("Nothing waits for you")
    assert {r.status for r in AccessRequest.objects.filter(pk__in=[reports.pk, ledger.pk])} == {RequestStatus.DENIED}

    # Out of office: Dora decides meanwhile.
    page.get_by_role("link", name="Out of office? Name a deputy").click()
    page.locator("select[name='deputy']").select_option(label="Dora Deputy (dora)")
    until = timezone.localtime(timezone.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    page.get_by_label("Until").fill(until)
    page.get_by_label("Note for the deputy").fill("Back on Monday")
    page.get_by_role("button", name="Name deputy").click()
    expect(page.get_by_role("status").filter(has_text="decides for you meanwhile")).to_be_visible()
    check_page(page, axe, "/access/approvals/away/")

    # A request that arrives meanwhile reaches Dora, who sees for whom she decides, and approves it.
    alice = world["alice"]
    arrived = access_request_submit(
        actor=alice.user,
        beneficiary_id=alice.pk,
        entitlement_id=world["later"].pk,
        duration=timedelta(hours=2),
        justification="Clear the stale cache",
    )
    sign_in_as(page, login, "dora")
    page.goto("/access/approvals/")
    card = page.locator(f"#req-{arrived.pk}")
    expect(card).to_contain_text("As deputy for Entowner")
    card.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(f"#req-{arrived.pk}.outcome")).to_contain_text("Approved")
    expect(page.locator("#queue-empty")).to_contain_text("Nothing waits for you")
    arrived.refresh_from_db()
    assert arrived.status == RequestStatus.APPROVED and arrived.approvals.get().approver.username == "dora"
