"""Break-glass from the emergency to the auditor's report. Ref: issue 13, "Done when".

An eligible person breaks glass with step-up, at once and without approval; the reviewers hear of it;
the holder sees the banner with the time left; the hard cap passes and the sweep ends the access by
itself; another person reviews it after the fact (the holder cannot); the auditor finds it in the
report and takes the CSV away.
"""

import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.utils import timezone
from playwright.sync_api import expect

from governance.choices import GrantStatus, RiskTier
from governance.models import Grant
from jit.models import BreakGlassActivation
from jit.services.break_glass import eligibility_create
from jit.services.expiry import grants_expire_due
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REVIEWERS = "incident-reviewers"


@pytest.fixture
def estate():
    admin = PersonFactory(name="Bo Admin", user__username="bo", user__roles=["admin"])
    PersonFactory(name="Ada Auditor", user__username="ada", user__roles=["auditor"])
    holly = PersonFactory(name="Holly Oncall", user__username="holly", user__roles=["requester"])
    rita = PersonFactory(name="Rita Reviewer", user__username="rita", user__roles=["requester", "approver"])
    sysowner = PersonFactory(name="Sy Owner", user__username="sysowner", user__roles=["requester", "owner"])
    group = Group.objects.create(name=REVIEWERS)
    for person in (holly, rita):  # Holly is a reviewer too: never of her own activation
        person.user.groups.add(group)
    ledger = SystemFactory(name="Ledger DB", owner=sysowner)
    root = EntitlementFactory(
        name="db-root", system=ledger, owner=sysowner, risk_tier=RiskTier.CRITICAL, break_glass_eligible=True
    )
    eligibility_create(
        actor=admin.user,
        entitlement=root,
        identity=holly,
        max_duration=timedelta(hours=1),
        reviewer_group=REVIEWERS,
        expires_at=timezone.now() + timedelta(days=90),
        reason="On-call DBA",
    )
    return {"root": root}


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


def test_break_glass_from_the_incident_to_the_auditors_report(page, login, estate):
    page.on("dialog", lambda dialog: dialog.accept())  # "Break glass now?" asks before it acts

    # Holly breaks glass: the access, the incident, why, and her password again.
    sign_in_as(page, login, "holly")
    nav(page, "Break glass")
    page.get_by_label("Incident reference").fill("INC-4242")
    page.get_by_label("Reason").fill("The ledger rejects every write; the replica needs a manual failover.")
    page.get_by_label("Your password").fill("wrong password")
    page.get_by_role("button", name="Break glass").click()
    expect(page.locator("#id_password_error")).to_be_visible()  # refused beside the field, nothing granted
    assert not BreakGlassActivation.objects.exists()
    page.get_by_label("Your password").fill("pw-for-tests")
    page.get_by_role("button", name="Break glass").click()
    expect(page.locator("#messages")).to_contain_text("Break-glass activated")
    activation = BreakGlassActivation.objects.get()
    assert activation.step_up == "password" and activation.grant.kind == "break_glass"

    # The reviewers are told at once (in-app; the email leaves through the outbox).
    sign_in_as(page, login, "rita")
    page.get_by_role("navigation", name="Main").get_by_role("link", name=re.compile("^Notifications")).click()
    expect(page.locator("main")).to_contain_text("Break-glass: Holly Oncall holds Ledger DB / db-root")

    # The system's owner confirms the access is in place (the manual connector).
    sign_in_as(page, login, "sysowner")
    page.goto(f"/inventory/grants/{activation.grant_id}/")
    page.get_by_role("button", name="Confirm granted in Ledger DB").click()
    expect(page.get_by_role("status").filter(has_text="the grant is active")).to_be_visible()

    # Holly sees the banner with the time left, on every page.
    sign_in_as(page, login, "holly")
    banner = page.locator(".break-glass-banner")
    expect(banner).to_contain_text("Ledger DB / db-root")
    expect(banner.locator(".time-left")).to_have_text(re.compile(r"^(59|58) min left$"))
    nav(page, "My grants")
    expect(page.locator(".break-glass-banner")).to_be_visible()

    # The hard cap passes: the sweep (the beat's job, run here) ends the access by itself.
    with time_machine.travel(activation.ends_at + timedelta(minutes=5), tick=True):
        assert grants_expire_due(now=timezone.now()) == 1
        assert Grant.objects.get(pk=activation.grant_id).status in (GrantStatus.REVOKING, GrantStatus.EXPIRED)
        sign_in_as(page, login, "holly")
        expect(page.locator(".break-glass-banner")).to_have_count(0)
        # Holly is in the reviewer group, yet her own activation is not hers to review.
        page.goto("/access/break-glass/reviews/")
        expect(page.locator(".empty-state")).to_contain_text("No break-glass review is waiting for you")
        page.goto(f"/access/break-glass/reviews/{activation.pk}/")
        expect(page.get_by_role("button", name="Record the review")).to_have_count(0)

        # Rita reviews it: the activation, and every event of its window, then the outcome.
        sign_in_as(page, login, "rita")
        page.goto("/access/break-glass/reviews/")
        row = page.get_by_role("row").filter(has_text="INC-4242")
        row.get_by_role("button", name=re.compile("^Review")).click()  # a link styled as a button
        main = page.locator("main")
        expect(main).to_contain_text("The ledger rejects every write")
        expect(main).to_contain_text("password")  # how she re-authenticated
        events = page.locator("table", has=page.locator("caption", has_text="Audit events of the break-glass window"))
        expect(events).to_contain_text("break_glass.activated")
        expect(events).to_contain_text("grant.expir")
        page.get_by_label("Needs follow-up").check()
        page.get_by_role("button", name="Record the review").click()
        expect(page.locator("#id_notes_error")).to_be_visible()  # a follow-up says what to follow up
        assert_accessible(page)
        page.get_by_label("Justified", exact=True).check()
        page.get_by_label("Notes").fill("Failover confirmed in the incident timeline.")
        page.get_by_role("button", name="Record the review").click()
        expect(page.locator("#messages")).to_contain_text("Review recorded")

        # The auditor finds it in the report, and takes the CSV away.
        sign_in_as(page, login, "ada")
        page.goto("/access/break-glass/report/")
        row = page.get_by_role("row").filter(has_text="INC-4242")
        expect(row).to_contain_text("Holly Oncall")
        expect(row).to_contain_text("Justified")
        expect(row).to_contain_text("Rita Reviewer")
        expect(row).to_contain_text("1 hour")
        assert_accessible(page)
        with page.expect_download() as download:
            page.get_by_role("button", name="Download CSV").click()  # a link styled as a button
        csv_text = download.value.path().read_text()
        page.goto("/access/break-glass/drills/")
        expect(page.locator(".empty-state")).to_contain_text("No drill scheduled yet")
        assert_accessible(page)
    assert "INC-4242" in csv_text and "Justified" in csv_text and "rita" in csv_text
    assert "Failover confirmed in the incident timeline." in csv_text
    activation.refresh_from_db()
    assert activation.outcome == "justified" and activation.reviewed_by.username == "rita"
