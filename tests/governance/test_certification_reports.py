"""Certification reports for auditors (issue 12, point 7): a campaign's evidence as a page, a streamed
CSV and a PDF, each naming the audit chain head; grants not certified within their cadence; who
held access at a time; and who may read them."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from audit.models import AuditEvent
from governance import certification_reports as reports
from governance.certification_reports import BREAK_GLASS_MARK
from governance.choices import GrantKind, GrantStatus, RiskTier
from governance.models import Campaign, Grant, ReviewItem
from governance.services.certification import (
    campaign_close,
    campaign_create,
    campaign_launch,
    remediation_sync,
    review_decide,
)
from governance.services.grants import grant_confirm_revoked, grant_revoke_failed
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db

FORMULA = '=HYPERLINK("http://evil")'


@pytest.fixture
def admin():
    return with_role(PersonFactory(name="Ada Admin"), "admin").user


@pytest.fixture
def auditor_user():
    return PersonFactory(name="Audrey Auditor", user__username="audrey", user__roles=["auditor"]).user


@pytest.fixture
def ent_owner():
    return with_role(PersonFactory(name="Eve Owner", user__username="eve"), "owner")


def client_for(client, user):
    client.force_login(user)
    return client


def event_seq(item: ReviewItem) -> int:
    decisions = ["review.certified", "review.revoked"]
    return AuditEvent.objects.get(target_type="governance.reviewitem", target_id=str(item.pk), action__in=decisions).seq


@pytest.fixture
def decided(admin, ent_owner):
    """A closed campaign: one item certified, two revoked (one done, one whose revocation failed), and a
    critical one nobody decided, revoked by the rule at close. Decisions 1 h, 2 h and 4 h after launch."""
    low = EntitlementFactory(owner=ent_owner, name="billing-read", system__owner=ent_owner)
    critical = EntitlementFactory(owner=ent_owner, name="prod-root", risk_tier=RiskTier.CRITICAL)
    kept, gone, failing = (GrantFactory(entitlement=low, last_used_at=timezone.now()) for _ in range(3))
    lapsed = GrantFactory(entitlement=critical)
    t0 = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
    with time_machine.travel(t0, tick=False):
        campaign = campaign_create(actor=admin, name="Q3 access review", due_at=t0 + timedelta(days=7))
        campaign = campaign_launch(campaign_id=campaign.pk, actor=admin)
    items = {grant: ReviewItem.objects.get(campaign=campaign, grant=grant) for grant in (kept, gone, failing, lapsed)}
    for hours, grant, decision, comment in (
        (1, kept, "certify", "still needed for billing"),
        (2, gone, "revoke", "left the team"),
        (4, failing, "revoke", FORMULA),
    ):
        with time_machine.travel(t0 + timedelta(hours=hours), tick=False):
            review_decide(item_ids=[items[grant].pk], actor=ent_owner.user, decision=decision, comment=comment)
    grant_confirm_revoked(grant_id=gone.pk, actor=admin)
    grant_revoke_failed(grant_id=failing.pk, actor=None, error="target refused")
    remediation_sync()
    with time_machine.travel(t0 + timedelta(days=8), tick=False):
        campaign_close(campaign_id=campaign.pk, actor=admin)
    for item in items.values():
        item.refresh_from_db()
    campaign.refresh_from_db()
    return {"campaign": campaign, "items": items, "kept": kept, "gone": gone, "failing": failing, "lapsed": lapsed}


#
# One campaign: contents
#
def test_the_summary_gives_completion_time_to_decide_and_what_revoking_did(decided):
    summary = reports.campaign_summary(decided["campaign"])

    assert (summary.total, summary.decided_by_people, summary.decided_by_rule, summary.undecided) == (4, 3, 1, 0)
    assert (summary.certified, summary.revoked) == (1, 3)
    assert summary.completion_percent == "75.0%"
    # Nearest rank over 1 h, 2 h, 4 h; the rule's decision at close is not a reviewer's time.
    assert summary.median_to_decide == timedelta(hours=2)
    assert summary.p90_to_decide == timedelta(hours=4)
    assert summary.remediation["Revoked"] == 1 and summary.remediation["Revocation failed"] == 1
    assert summary.remediation["Being revoked"] == 1  # the rule's revocation, waiting for the system's owner
    # The failed and the pending revocation: access still exists, and the report says so.
    assert (summary.revoked_grants_ended, summary.revoked_grants_live) == (1, 2)


def test_every_item_carries_who_when_comment_its_audit_event_and_the_revocations_result(decided):
    rows = {row["grant_id"]: row for row in reports.campaign_items(decided["campaign"])}
    items = decided["items"]

    kept = rows[decided["kept"].pk]
    assert (kept["decision"], kept["decided_by__username"], kept["comment"]) == (
        "certify",
        "eve",
        "still needed for billing",
    )
    assert kept["decided_at"] == items[decided["kept"]].decided_at
    for grant in (decided["kept"], decided["gone"], decided["failing"], decided["lapsed"]):
        assert rows[grant.pk]["audit_seq"] == event_seq(items[grant])
    assert (rows[decided["gone"].pk]["remediation"], rows[decided["gone"].pk]["grant__status"]) == ("done", "revoked")
    failing = rows[decided["failing"].pk]
    assert failing["remediation"] == "failed" and failing["remediation_error"]
    assert failing["grant__status"] == GrantStatus.REVOKE_FAILED
    lapsed = rows[decided["lapsed"].pk]
    assert (lapsed["decision"], lapsed["decided_by_rule"]) == ("revoke", True)


def test_the_report_page_shows_scope_reviewers_and_every_decision(client, auditor_user, decided):
    campaign, items = decided["campaign"], decided["items"]

    response = client_for(client, auditor_user).get(reverse("governance:report_campaign", args=[campaign.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Q3 access review" in page and "75.0%" in page and "2 h" in page and "4 h" in page
    assert "still needed for billing" in page and "left the team" in page and "by the non-response rule" in page
    assert "by eve" in page
    assert items[decided["kept"]].decided_at.strftime("%Y-%m-%d %H:%M:%S") in page
    for item in items.values():
        assert f"#{event_seq(item)}" in page
    assert "could not remove the access" in page  # the failed revocation stays visible
    assert "Reviewers" in page and "Scope" in page


def test_the_footer_names_the_chain_head_which_covers_the_reports_own_export_event(client, auditor_user, decided):
    response = client_for(client, auditor_user).get(
        reverse("governance:report_campaign", args=[decided["campaign"].pk])
    )

    head = AuditEvent.objects.order_by("-seq").first()
    assert head.action == "export.downloaded"
    assert head.data == {
        "what": "certification_report",
        "format": "html",
        "filters": {"campaign": decided["campaign"].pk},
    }
    assert f"manage.py verify_audit --expect {head.seq}:{head.hash}" in response.content.decode()


def test_a_big_campaign_lists_the_first_rows_and_says_the_csv_holds_them_all(
    client, auditor_user, decided, monkeypatch
):
    monkeypatch.setattr(reports, "REPORT_ROW_LIMIT", 2)
    monkeypatch.setattr(reports, "PDF_ROW_LIMIT", 3)
    client_for(client, auditor_user)

    page = client.get(reverse("governance:report_campaign", args=[decided["campaign"].pk]))
    pdf = client.get(reverse("governance:report_campaign_pdf", args=[decided["campaign"].pk]))

    assert "first 2 of 4 items; the CSV holds them all" in page.content.decode()
    assert len(page.context["items"]) == 2
    text = "".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "first 3 of 4 items; the CSV holds them all" in text


#
# One campaign: CSV
#
def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_csv_streams_every_item_spreadsheet_safe_with_the_chain_head_last(client, auditor_user, decided):
    campaign, items = decided["campaign"], decided["items"]

    response = client_for(client, auditor_user).get(reverse("governance:report_campaign_csv", args=[campaign.pk]))

    assert isinstance(response, StreamingHttpResponse)
    rows = read_csv(response)
    items_part = rows[: rows.index([BREAK_GLASS_MARK])]
    header, body = rows[0], [row for row in items_part[1:] if row and not row[0].startswith("#")]
    by_grant = {int(row[header.index("grant")]): dict(zip(header, row, strict=True)) for row in body}
    assert len(by_grant) == 4
    kept = by_grant[decided["kept"].pk]
    assert (kept["decision"], kept["decided_by"], kept["comment"]) == ("certify", "eve", "still needed for billing")
    assert kept["audit_event_seq"] == str(event_seq(items[decided["kept"]]))
    assert by_grant[decided["failing"].pk]["comment"] == "'" + FORMULA  # never run as a formula
    assert by_grant[decided["failing"].pk]["remediation"] == "failed"
    assert by_grant[decided["lapsed"].pk]["decided_by_rule"] == "yes"
    head = AuditEvent.objects.order_by("-seq").first()
    assert head.data["format"] == "csv"
    assert rows[-1][:2] == ["# audit chain head", f"{head.seq}:{head.hash}"]


def _csv_queries(client, campaign) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("governance:report_campaign_csv", args=[campaign.pk]))
        b"".join(response.streaming_content)
    return len(queries)


def test_the_csvs_query_count_does_not_grow_with_the_items(client, admin, ent_owner):
    small_ent, big_ent = EntitlementFactory(owner=ent_owner), EntitlementFactory(owner=ent_owner)
    GrantFactory(entitlement=small_ent)
    for _ in range(30):
        GrantFactory(entitlement=big_ent)
    small = campaign_create(
        actor=admin, name="small", due_at=timezone.now() + timedelta(days=3), scope={"entitlements": [small_ent.pk]}
    )
    campaign_launch(campaign_id=small.pk, actor=admin)
    big = campaign_create(
        actor=admin, name="big", due_at=timezone.now() + timedelta(days=3), scope={"entitlements": [big_ent.pk]}
    )
    campaign_launch(campaign_id=big.pk, actor=admin)
    review_decide(
        item_ids=list(ReviewItem.objects.filter(campaign=big).values_list("pk", flat=True)),
        actor=ent_owner.user,
        decision="certify",
    )
    client.force_login(admin)

    assert ReviewItem.objects.filter(campaign=big).count() == 30
    assert _csv_queries(client, big) == _csv_queries(client, small)


#
# One campaign: PDF
#
def test_the_pdf_opens_names_the_campaign_and_the_chain_head(client, auditor_user, decided):
    response = client_for(client, auditor_user).get(
        reverse("governance:report_campaign_pdf", args=[decided["campaign"].pk])
    )

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    compact = "".join(text.split())
    head = AuditEvent.objects.order_by("-seq").first()
    assert head.data["format"] == "pdf"
    assert "Q3 access review" in text
    assert f"#{head.seq}" in compact and head.hash in compact
    assert "stillneededforbilling" in compact


#
# Across campaigns: not certified within the cadence
#
def certified(grant: Grant, *, days_ago: int) -> ReviewItem:
    campaign = Campaign.objects.create(name=f"past {grant.pk}", due_at=timezone.now(), status="closed")
    return ReviewItem.objects.create(
        campaign=campaign,
        grant=grant,
        identity=grant.identity,
        entitlement=grant.entitlement,
        risk_tier=grant.entitlement.risk_tier,
        recommendation="certify",
        decision="certify",
        decided_at=timezone.now() - timedelta(days=days_ago),
    )


def test_grants_not_certified_within_their_cadence_are_the_never_and_the_lapsed(client, auditor_user):
    monthly, quarterly = EntitlementFactory(review_cadence_days=30), EntitlementFactory(review_cadence_days=90)
    never = GrantFactory(entitlement=monthly)
    recent = GrantFactory(entitlement=monthly)
    certified(recent, days_ago=10)
    lapsed = GrantFactory(entitlement=monthly)
    certified(lapsed, days_ago=40)
    certified(lapsed, days_ago=45)
    within_quarter = GrantFactory(entitlement=quarterly)
    certified(within_quarter, days_ago=40)
    GrantFactory(entitlement=monthly, status=GrantStatus.REVOKED, revoked_at=timezone.now())  # not live

    found = reports.grants_not_certified(now=timezone.now())

    assert set(found.values_list("pk", flat=True)) == {never.pk, lapsed.pk}
    assert (
        found.get(pk=lapsed.pk).last_certified_at
        == ReviewItem.objects.filter(grant=lapsed).latest("decided_at").decided_at
    )

    client_for(client, auditor_user)
    page = client.get(reverse("governance:report_not_certified"), {"never": "on"})
    assert list(page.context["page_obj"].object_list) == [never]
    rows = read_csv(client.get(reverse("governance:report_not_certified_csv"), {"entitlement": monthly.pk}))
    assert sorted(int(row[0]) for row in rows[1:]) == sorted([never.pk, lapsed.pk])
    assert AuditEvent.objects.order_by("-seq").first().data["what"] == "grants_not_certified"


#
# Across campaigns: who held access at a time
#
D = datetime(2031, 3, 15, 12, 0, tzinfo=UTC)


def test_who_held_access_at_a_moment_follows_each_grants_own_history(client, auditor_user):
    entitlement = EntitlementFactory(name="payments-admin")
    named = {}

    def grant(name, **fields):
        named[name] = GrantFactory(identity=MachineFactory(name=name), entitlement=entitlement, **fields)

    grant("held-before", granted_at=D - timedelta(days=10))
    grant("revoked-before", granted_at=D - timedelta(days=10), status="revoked", revoked_at=D - timedelta(days=1))
    grant("granted-after", granted_at=D + timedelta(days=1))
    grant("revoked-after", granted_at=D - timedelta(days=10), status="revoked", revoked_at=D + timedelta(hours=1))
    grant(
        "expired-before",
        kind=GrantKind.JIT,
        granted_at=D - timedelta(days=2),
        expires_at=D - timedelta(days=1),
        status="expired",
        revoked_at=D - timedelta(days=1) + timedelta(minutes=5),
    )
    grant("jit-through-d", kind=GrantKind.JIT, granted_at=D - timedelta(hours=1), expires_at=D + timedelta(hours=1))
    grant("never-granted", status="pending_provision", granted_at=None)
    # Ended without a revoked_at (imported so): its history (written now, years before D) says when.
    grant("ended-in-history", granted_at=D - timedelta(days=4000), status="revoked", revoked_at=None)
    GrantFactory(identity=MachineFactory(name="other-access"), entitlement=EntitlementFactory())

    at_d = reports.grants_held(since=D, until=D).filter(entitlement=entitlement)

    assert sorted(at_d.values_list("identity__name", flat=True)) == ["held-before", "jit-through-d", "revoked-after"]

    client_for(client, auditor_user)
    query = {"entitlement": entitlement.pk, "on": "2031-03-15", "at": "12:00:00"}
    rows = read_csv(client.get(reverse("governance:report_held_access_csv"), query))
    assert sorted(row[1] for row in rows[1:]) == ["held-before", "jit-through-d", "revoked-after"]
    # On the whole day, a grant that ended that morning was held too.
    grant("revoked-that-morning", granted_at=D - timedelta(days=3), status="revoked", revoked_at=D - timedelta(hours=3))
    page = client.get(reverse("governance:report_held_access"), {"entitlement": entitlement.pk, "on": "2031-03-15"})
    shown = {g.identity.name for g in page.context["page_obj"].object_list}
    assert shown == {"held-before", "jit-through-d", "revoked-after", "revoked-that-morning"}


def test_who_held_access_needs_an_entitlement_or_a_system(client, auditor_user):
    response = client_for(client, auditor_user).get(reverse("governance:report_held_access_csv"), {"on": "2031-03-15"})
    assert response.status_code == 400
    assert "Choose an entitlement or a system" in response.content.decode()


#
# Who reads the reports
#
def _get(client, user, name, *args):
    client.force_login(user)
    return client.get(reverse(name, args=args)).status_code


@pytest.mark.parametrize("form", ["report_campaign", "report_campaign_csv", "report_campaign_pdf"])
def test_auditors_admins_and_the_owners_concerned_read_a_campaigns_report_nobody_else(
    client, form, decided, admin, auditor_user, ent_owner
):
    campaign = decided["campaign"]
    name = f"governance:{form}"
    other_owner = with_role(PersonFactory(), "owner").user
    reviewer_only = PersonFactory(user__roles=["requester", "approver"]).user
    ReviewItem.objects.filter(pk=decided["items"][decided["lapsed"]].pk).update(reviewer=reviewer_only)
    stranger = PersonFactory().user

    assert _get(client, auditor_user, name, campaign.pk) == 200
    assert _get(client, admin, name, campaign.pk) == 200
    assert _get(client, ent_owner.user, name, campaign.pk) == 200  # owns what the campaign reviews
    assert _get(client, other_owner, name, campaign.pk) == 404
    assert _get(client, reviewer_only, name, campaign.pk) == 403  # sees the campaign, not its evidence
    assert _get(client, stranger, name, campaign.pk) == 404


@pytest.mark.parametrize(
    "name", ["report_not_certified", "report_not_certified_csv", "report_held_access", "report_held_access_csv"]
)
def test_only_auditors_and_admins_read_the_cross_campaign_reports(client, name, admin, auditor_user, ent_owner):
    entitlement = EntitlementFactory()
    url = reverse(f"governance:{name}")
    query = {"entitlement": entitlement.pk, "on": "2031-03-15"}

    for user, expected in ((auditor_user, 200), (admin, 200), (ent_owner.user, 403), (PersonFactory().user, 403)):
        client.force_login(user)
        assert client.get(url, query).status_code == expected, user


#
# One campaign: break-glass access in its scope while it ran
#
def test_the_report_lists_break_glass_access_in_scope_granted_while_the_campaign_ran(client, auditor_user, admin):
    system_entitlement = EntitlementFactory(name="prod-db-admin", risk_tier=RiskTier.CRITICAL)
    elsewhere = EntitlementFactory(name="other-admin")
    t0 = (timezone.now() - timedelta(days=10)).replace(microsecond=0)
    with time_machine.travel(t0, tick=False):
        campaign = campaign_create(
            actor=admin,
            name="Prod review",
            due_at=t0 + timedelta(days=30),
            scope={"systems": [system_entitlement.system_id], "grant_kinds": ["standing"]},
        )
        campaign = campaign_launch(campaign_id=campaign.pk, actor=admin)
    during = GrantFactory(
        entitlement=system_entitlement,
        kind=GrantKind.BREAK_GLASS,
        granted_at=t0 + timedelta(days=2),
        expires_at=t0 + timedelta(days=2, hours=1),
        reason="INC-4242: database down, failover by hand",
    )
    still_held = GrantFactory(
        entitlement=system_entitlement,
        kind=GrantKind.BREAK_GLASS,
        granted_at=t0 + timedelta(days=9),
        expires_at=timezone.now() + timedelta(hours=2),
        reason="INC-4243: disk full",
    )
    GrantFactory(entitlement=system_entitlement, kind=GrantKind.BREAK_GLASS, granted_at=t0 - timedelta(days=1))
    GrantFactory(entitlement=elsewhere, kind=GrantKind.BREAK_GLASS, granted_at=t0 + timedelta(days=2))
    GrantFactory(entitlement=system_entitlement, kind=GrantKind.STANDING, granted_at=t0 + timedelta(days=2))

    rows = reports.break_glass_rows(campaign, now=timezone.now())
    assert [row["pk"] for row in rows] == [during.pk, still_held.pk]
    assert rows[0]["ended_at"] == during.expires_at and rows[1]["ended_at"] is None

    client_for(client, auditor_user)
    page = client.get(reverse("governance:report_campaign", args=[campaign.pk])).content.decode()
    assert "Break-glass access in scope during the campaign" in page
    assert "INC-4242: database down, failover by hand" in page and "still held" in page
    assert "other-admin" not in page

    response = client.get(reverse("governance:report_campaign_csv", args=[campaign.pk]))
    csv_rows = read_csv(response)
    start = csv_rows.index([BREAK_GLASS_MARK])
    header = csv_rows[start + 1]
    section = [
        dict(zip(header, row, strict=True)) for row in csv_rows[start + 2 :] if row and not row[0].startswith("#")
    ]
    assert [int(row["grant"]) for row in section] == [during.pk, still_held.pk]
    assert section[0]["reason"] == "INC-4242: database down, failover by hand"
    assert section[0]["ended_at"] == during.expires_at.isoformat() and section[1]["ended_at"] == ""

    pdf = client.get(reverse("governance:report_campaign_pdf", args=[campaign.pk]))
    text = "".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Break-glass access in scope during the campaign" in text and "INC-4243: disk full" in text


def test_a_closed_campaign_lists_break_glass_access_only_until_its_close(admin):
    entitlement = EntitlementFactory()
    t0 = (timezone.now() - timedelta(days=10)).replace(microsecond=0)
    with time_machine.travel(t0, tick=False):
        campaign = campaign_create(
            actor=admin, name="Closed", due_at=t0 + timedelta(days=2), scope={"entitlements": [entitlement.pk]}
        )
        campaign = campaign_launch(campaign_id=campaign.pk, actor=admin)
    with time_machine.travel(t0 + timedelta(days=3), tick=False):
        campaign_close(campaign_id=campaign.pk, actor=admin)
    campaign.refresh_from_db()
    inside = GrantFactory(entitlement=entitlement, kind=GrantKind.BREAK_GLASS, granted_at=t0 + timedelta(days=1))
    GrantFactory(entitlement=entitlement, kind=GrantKind.BREAK_GLASS, granted_at=t0 + timedelta(days=5))

    assert [row["pk"] for row in reports.break_glass_rows(campaign, now=timezone.now())] == [inside.pk]
