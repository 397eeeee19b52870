"""A certification campaign from definition to the auditor's evidence. Ref: issue 12, "Done when".

An admin defines a campaign, previews and launches it; one reviewer decides item by item, another
revokes a selection at once; the due date passes and the closing beat revokes the critical access
nobody decided; every revocation reaches the connector; the auditor takes the report away as HTML,
CSV and PDF.
"""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from playwright.sync_api import expect

from audit.models import OutboxMessage
from governance.choices import RiskTier
from governance.models import Campaign, ReviewItem
from governance.tasks_certification import certification_close_due_task
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, SystemFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def estate():
    PersonFactory(name="Bo Admin", user__username="bo", user__roles=["admin"])
    PersonFactory(name="Ada Auditor", user__username="ada", user__roles=["auditor"])
    rita = PersonFactory(name="Rita Reviewer", user__username="rita", user__roles=["requester", "owner"])
    ravi = PersonFactory(name="Ravi Reviewer", user__username="ravi", user__roles=["requester", "owner"])
    payments = SystemFactory(name="Payments", owner=rita)
    ledger_write = EntitlementFactory(name="ledger-write", system=payments, owner=rita, risk_tier=RiskTier.CRITICAL)
    ledger_read = EntitlementFactory(name="ledger-read", system=payments, owner=rita, risk_tier=RiskTier.LOW)
    reports = EntitlementFactory(
        name="reports-read", system=SystemFactory(name="BI", owner=ravi), owner=ravi, risk_tier=RiskTier.MEDIUM
    )
    bots = {name: MachineFactory(name=name) for name in ("billing-bot", "payout-bot", "bi-bot", "etl-bot")}
    return {
        "lapsed": GrantFactory(identity=bots["billing-bot"], entitlement=ledger_write),
        "kept": GrantFactory(identity=bots["payout-bot"], entitlement=ledger_write),
        "read": GrantFactory(identity=bots["billing-bot"], entitlement=ledger_read),
        "bi": GrantFactory(identity=bots["bi-bot"], entitlement=reports),
        "etl": GrantFactory(identity=bots["etl-bot"], entitlement=reports),
    }


def sign_in_as(page, login, username):
    page.context.clear_cookies()
    login(username)
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()


def assert_accessible(page):
    """axe-core's WCAG 2.1 A/AA rules, as tests/browser/test_accessibility.py runs them."""
    from axe_playwright_python.sync_playwright import Axe

    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
    violations = Axe().run(page, options=options).response["violations"]
    assert not violations, [f"{v['id']}: {v['nodes'][0]['target']}" for v in violations]


def nav(page, label):
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label, exact=True).click()


def test_a_campaign_from_definition_to_the_auditors_report(page, login, estate, tmp_path):
    page.on("dialog", lambda dialog: dialog.accept())  # "Launch …?" asks before it acts
    due = timezone.now() + timedelta(days=14)

    # The admin defines the campaign: three entitlements typed in, the due date in UTC.
    sign_in_as(page, login, "bo")
    nav(page, "Campaigns")
    expect(page.locator(".empty-state")).to_contain_text("No campaign yet")
    page.get_by_role("button", name="New campaign").click()  # a link styled as a button
    assert_accessible(page)
    page.get_by_role("textbox", name="Name", exact=True).fill("Payments Q4")
    page.get_by_label("Entitlements").fill("Payments / ledger-write\nPayments / ledger-read\nBI / reports-read")
    page.get_by_label("Time zone of the dates below").select_option("UTC")
    page.locator("#id_due_at").fill(due.strftime("%Y-%m-%dT%H:%M"))
    expect(page.get_by_label("Undecided critical items")).to_have_value("revoke")  # the default per tier
    page.get_by_role("button", name="Save the draft").click()
    expect(page.locator("#messages")).to_contain_text("Check the preview, then launch it")

    # The preview: how many items, for whom; then the launch.
    preview = page.locator("#preview")
    expect(preview).to_contain_text("Launching now opens 5 items")
    assert_accessible(page)
    expect(preview.get_by_role("row", name="rita 3")).to_be_visible()
    expect(preview.get_by_role("row", name="ravi 2")).to_be_visible()
    preview.get_by_role("button", name="Launch").click()
    expect(page.locator("#messages")).to_contain_text("Launched Payments Q4: 5 items")
    expect(page.locator("#progress")).to_contain_text("0 of 5 decided")
    campaign = Campaign.objects.get()

    # Rita decides item by item, in place: she keeps payout-bot's write access and billing-bot's read.
    sign_in_as(page, login, "rita")
    nav(page, "My reviews")
    rows = page.locator("article.review-row")
    expect(rows).to_have_count(3)
    assert_accessible(page)
    kept = rows.filter(has_text="payout-bot — Payments / ledger-write")
    expect(kept).to_contain_text("Recommended:")
    kept.get_by_label("Comment").fill("Pays out salaries: still needed")
    kept.get_by_role("button", name="Certify").click()
    expect(page.locator("article.review-row.decided")).to_contain_text("Certified: payout-bot")
    read = rows.filter(has_text="billing-bot — Payments / ledger-read")
    read.get_by_role("button", name="Certify").focus()  # keyboard: a real button takes Enter
    page.keyboard.press("Enter")
    expect(page.locator("article.review-row.decided")).to_have_count(2)
    # billing-bot's critical write access is left for the due date.

    # Ravi revokes both of his at once: a selection needs a comment, said beside the field.
    sign_in_as(page, login, "ravi")
    nav(page, "My reviews")
    for bot in ("bi-bot", "etl-bot"):
        page.locator("article.review-row", has_text=bot).get_by_label("Select").check()
    page.get_by_role("button", name="Revoke selected").click()
    expect(page.locator("#id_comment_error")).to_have_text("Required.")
    assert_accessible(page)
    for bot in ("bi-bot", "etl-bot"):  # the selection is kept
        expect(page.locator("article.review-row", has_text=bot).get_by_label("Select")).to_be_checked()
    page.get_by_label("Comment for the selection").fill("The BI migration retired both jobs")
    page.get_by_role("button", name="Revoke selected").click()
    expect(page.locator("#messages")).to_contain_text("Revoked 2 item(s)")
    expect(page.locator(".empty-state")).to_contain_text("Nothing waits for your review")

    # The due date passes; the closing beat applies the rule: critical access nobody decided is revoked.
    with time_machine.travel(due + timedelta(minutes=5), tick=True):
        assert certification_close_due_task()["closed"] == 1
    lapsed = ReviewItem.objects.get(grant=estate["lapsed"])
    assert (lapsed.decision, lapsed.decided_by_rule) == ("revoke", True)
    assert ReviewItem.objects.get(grant=estate["kept"]).decision == "certify"

    # Every revocation reached the connector: one outbox message per revoked grant.
    revoked = {estate[name].pk for name in ("lapsed", "bi", "etl")}
    asked = OutboxMessage.objects.filter(kind="connector.revoke").values_list("payload__grant_id", flat=True)
    assert set(asked) == revoked

    # The auditor reads the campaign and takes the evidence away.
    sign_in_as(page, login, "ada")
    nav(page, "Campaigns")
    page.get_by_role("link", name="Payments Q4").click()
    expect(page.locator("h1")).to_contain_text("Closed")
    expect(page.locator("#progress")).to_contain_text("5 of 5 decided")
    assert_accessible(page)
    expect(page.get_by_role("button", name="Close now")).to_have_count(0)  # auditors change nothing
    expect(page.get_by_role("row", name="billing-bot").filter(has_text="ledger-write")).to_contain_text("by the rule")

    with page.expect_download() as csv_download:
        page.get_by_role("link", name="Report (CSV)").click()
    csv_text = csv_download.value.path().read_text()
    for bot in ("billing-bot", "payout-bot", "bi-bot", "etl-bot"):
        assert bot in csv_text
    assert "The BI migration retired both jobs" in csv_text

    with page.expect_download() as pdf_download:
        page.get_by_role("link", name="Report (PDF)").click()
    pdf = pdf_download.value.path().read_bytes()
    assert pdf.startswith(b"%PDF")

    page.get_by_role("link", name="Report (HTML)").click()
    report = page.locator("main")
    expect(report).to_contain_text("Payments Q4")
    expect(report).to_contain_text("Pays out salaries: still needed")
    expect(report).to_contain_text("The BI migration retired both jobs")
    assert page.url.endswith(f"/certification/reports/campaigns/{campaign.pk}/")
