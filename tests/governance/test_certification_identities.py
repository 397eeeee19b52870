"""Certification of the identities themselves (issue 12, point 1): in a campaign that reviews them, the
owner of each non-human identity in scope attests it is still needed; revoking suspends it."""

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from governance.certification_reasons import reason_codes
from governance.choices import GrantStatus, IdentityStatus, RiskTier
from governance.errors import ValidationFailed
from governance.models import Grant, Identity, Notification, ReviewItem
from governance.selectors_certification import campaign_preview, review_queue
from governance.services.certification import (
    campaign_close,
    campaign_create,
    campaign_launch,
    remediation_retry,
    remediation_sync,
    review_decide,
)
from governance.services.certification_schedules import reviews_chase
from governance.services.grants import grant_confirm_revoked, grant_revoke_failed
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin():
    return with_role(PersonFactory(name="Ada Admin"), "admin").user


@pytest.fixture
def owner():
    return with_role(PersonFactory(name="Olga Owner", user__username="olga"), "owner")


def launched(admin, **fields):
    fields.setdefault("due_at", timezone.now() + timedelta(days=14))
    fields.setdefault("review_identities", True)
    campaign = campaign_create(actor=admin, name=fields.pop("name", "Machines Q4"), **fields)
    return campaign_launch(campaign_id=campaign.pk, actor=admin)


def identity_items(campaign):
    return ReviewItem.objects.filter(campaign=campaign, grant__isnull=True).order_by("identity_id", "stage")


#
# Launch: which identities, who attests, which tier
#
def test_a_campaign_reviewing_identities_opens_one_item_per_machine_in_scope_for_its_owner(admin, owner):
    bot = MachineFactory(owner=owner, name="payout-bot", team="Payments")
    GrantFactory(identity=bot, entitlement=EntitlementFactory(risk_tier=RiskTier.HIGH))
    GrantFactory(identity=bot, entitlement=EntitlementFactory(risk_tier=RiskTier.LOW))
    GrantFactory(identity=bot, entitlement=EntitlementFactory(risk_tier=RiskTier.CRITICAL), status=GrantStatus.REVOKED)
    idle = MachineFactory(owner=owner, team="Payments")  # holds nothing: low
    MachineFactory(owner=owner, team="Search")  # another team
    MachineFactory(owner=owner, team="Payments", status=IdentityStatus.OFFBOARDED)  # gone
    PersonFactory(team="Payments")  # a person is not attested

    campaign = launched(admin, scope={"teams": ["Payments"]})

    items = {item.identity_id: item for item in identity_items(campaign)}
    assert set(items) == {bot.pk, idle.pk}
    assert {item.reviewer for item in items.values()} == {owner.user}
    assert (items[bot.pk].risk_tier, items[idle.pk].risk_tier) == ("high", "low")  # the revoked critical is not held
    assert items[bot.pk].entitlement_id is None and items[bot.pk].subject == "payout-bot — Identity: still needed?"
    # The grants are reviewed too (review_grants defaults on): the two in force of the team's machine.
    assert ReviewItem.objects.filter(campaign=campaign, grant__isnull=False).count() == 2
    assert campaign.items_total == 4


def test_identities_only_and_the_scope_parts_that_apply_to_them(admin, owner):
    other = PersonFactory()
    mine = MachineFactory(owner=owner, kind="api_key")
    MachineFactory(owner=other, kind="api_key")  # another owner
    MachineFactory(owner=owner, kind="workload")  # another kind
    GrantFactory(identity=mine)

    campaign = launched(admin, review_grants=False, scope={"owners": [owner.pk], "identity_kinds": ["api_key"]})

    assert [item.identity_id for item in ReviewItem.objects.filter(campaign=campaign)] == [mine.pk]
    with pytest.raises(ValidationFailed, match="or both"):
        launched(admin, review_grants=False, review_identities=False)


def test_the_preview_counts_the_identities(admin, owner):
    MachineFactory(owner=owner)
    MachineFactory(owner=PersonFactory(status=IdentityStatus.OFFBOARDED))
    campaign = campaign_create(
        actor=admin, name="preview", due_at=timezone.now() + timedelta(days=3), review_identities=True
    )

    preview = campaign_preview(campaign)

    assert (preview.total, preview.without_reviewer) == (2, 1)
    assert dict(preview.per_reviewer)["olga"] == 1


def test_an_offboarded_or_loginless_owner_hands_the_attestation_to_the_fallback_group(admin):
    gone = MachineFactory(owner=PersonFactory(status=IdentityStatus.OFFBOARDED))
    suspended = MachineFactory(owner=PersonFactory(status=IdentityStatus.SUSPENDED))
    no_login = MachineFactory(owner=PersonFactory(user=None))

    campaign = launched(admin, fallback_group="admin")

    for identity in (gone, suspended, no_login):
        item = identity_items(campaign).get(identity=identity)
        assert (item.reviewer, item.reviewer_group) == (None, "admin")
    assert review_queue(admin).filter(identity=gone).exists()


def test_nobody_attests_the_same_identity_twice_in_a_two_stage_campaign(admin, owner):
    bot = MachineFactory(owner=owner)
    GrantFactory(identity=bot, entitlement=EntitlementFactory(risk_tier=RiskTier.CRITICAL))
    campaign = launched(admin, review_grants=False, second_stage=True, second_stage_reviewer="identity_owner")

    review_decide(item_ids=[identity_items(campaign).get().pk], actor=owner.user, decision="certify")

    second = identity_items(campaign).get(stage=2)
    # Stage 2's reviewer would be the owner again, who just certified it: the fallback group attests.
    assert (second.reviewer, second.reviewer_group, second.risk_tier) == (None, "admin", "critical")
    campaign.refresh_from_db()
    assert campaign.items_total == 2


#
# Recommendations
#
def test_the_reasons_about_an_identity_are_computed_for_its_item(admin, owner):
    old = timezone.now() - timedelta(days=400)
    stale = MachineFactory(owner=owner, last_used_at=old)
    exposed = MachineFactory(owner=owner, secret_location="embedded_in_code")
    overdue = MachineFactory(owner=owner, rotation_period_days=30, last_rotated_at=old)
    orphaned = MachineFactory(owner=PersonFactory(status=IdentityStatus.OFFBOARDED))
    suspended = MachineFactory(owner=owner, status=IdentityStatus.SUSPENDED)
    fine = MachineFactory(owner=owner)

    campaign = launched(admin)

    def reasons(identity):
        item = identity_items(campaign).get(identity=identity)
        return item.recommendation, set(reason_codes(item.reason_flags))

    assert reasons(stale) == ("revoke", {"stale_identity", "never_reviewed"})
    assert reasons(exposed) == ("certify", {"secret_exposed", "never_reviewed"})
    assert reasons(overdue) == ("certify", {"rotation_overdue", "never_reviewed"})
    assert reasons(orphaned) == ("revoke", {"orphaned", "never_reviewed"})
    assert reasons(suspended) == ("revoke", {"holder_inactive", "never_reviewed"})
    assert reasons(fine) == ("certify", {"never_reviewed"})


def test_an_identity_attested_before_is_not_never_reviewed(admin, owner):
    bot = MachineFactory(owner=owner)
    first = launched(admin, name="first", review_grants=False)
    review_decide(item_ids=[identity_items(first).get().pk], actor=owner.user, decision="certify")

    second = launched(admin, name="second", review_grants=False)

    assert reason_codes(identity_items(second).get(identity=bot).reason_flags) == []


#
# Decisions and remediation
#
def test_revoking_an_identity_suspends_it_which_revokes_its_grants(admin, owner):
    bot = MachineFactory(owner=owner)
    grants = [GrantFactory(identity=bot) for _ in range(2)]
    campaign = launched(admin, review_grants=False)
    item = identity_items(campaign).get()

    review_decide(item_ids=[item.pk], actor=owner.user, decision="revoke", comment="replaced by the new pipeline")

    bot.refresh_from_db()
    item.refresh_from_db()
    assert bot.status == IdentityStatus.SUSPENDED
    assert set(Grant.objects.filter(identity=bot).values_list("status", flat=True)) == {GrantStatus.REVOKING}
    assert item.remediation == "revoking"
    suspended = AuditEvent.objects.get(action="identity.suspended", target_id=str(bot.pk))
    assert f"review #{item.pk}" in suspended.data["reason"] and "olga" in suspended.data["reason"]
    for grant in grants:
        grant_confirm_revoked(grant_id=grant.pk, actor=admin)
    remediation_sync()
    item.refresh_from_db()
    assert item.remediation == "done"


def test_certifying_an_identity_records_it_and_changes_nothing(admin, owner):
    bot = MachineFactory(owner=owner)
    campaign = launched(admin, review_grants=False)

    review_decide(item_ids=[identity_items(campaign).get().pk], actor=owner.user, decision="certify")

    bot.refresh_from_db()
    assert bot.status == IdentityStatus.ACTIVE
    assert AuditEvent.objects.filter(action="review.certified", data__identity=bot.pk, data__grant=None).exists()


def test_a_connector_that_fails_leaves_the_identity_item_failed_until_retried(admin, owner):
    bot = MachineFactory(owner=owner)
    grant = GrantFactory(identity=bot)
    item = identity_items(launched(admin, review_grants=False)).get()
    review_decide(item_ids=[item.pk], actor=owner.user, decision="revoke")

    grant_revoke_failed(grant_id=grant.pk, actor=None, error="target refused")
    remediation_sync()
    item.refresh_from_db()
    assert item.remediation == "failed" and "could not remove" in item.remediation_error

    remediation_retry(item_ids=[item.pk], actor=admin)
    item.refresh_from_db()
    grant.refresh_from_db()
    assert item.remediation == "revoking" and grant.status == GrantStatus.REVOKING


def test_closing_applies_the_tier_rule_to_identity_items_and_suspends_at_close(admin, owner):
    critical_bot = MachineFactory(owner=owner)
    GrantFactory(identity=critical_bot, entitlement=EntitlementFactory(risk_tier=RiskTier.CRITICAL))
    idle_bot = MachineFactory(owner=owner)  # holds nothing: low, kept
    decided_bot = MachineFactory(owner=owner)
    campaign = launched(admin, review_grants=False, remediation="close")
    review_decide(item_ids=[identity_items(campaign).get(identity=decided_bot).pk], actor=owner.user, decision="revoke")
    decided_bot.refresh_from_db()
    assert decided_bot.status == IdentityStatus.ACTIVE  # waits for the close

    campaign_close(campaign_id=campaign.pk, actor=admin)

    statuses = dict(
        Identity.objects.filter(pk__in=[critical_bot.pk, idle_bot.pk, decided_bot.pk]).values_list("pk", "status")
    )
    assert statuses == {
        critical_bot.pk: IdentityStatus.SUSPENDED,  # critical and undecided: the rule revokes
        idle_bot.pk: IdentityStatus.ACTIVE,  # low and undecided: the rule keeps
        decided_bot.pk: IdentityStatus.SUSPENDED,
    }
    by_rule = identity_items(campaign).get(identity=critical_bot)
    assert (by_rule.decision, by_rule.decided_by_rule) == ("revoke", True)
    reasons = dict(AuditEvent.objects.filter(action="identity.suspended").values_list("target_id", "data__reason"))
    assert "decided by the campaign's rule" in reasons[str(critical_bot.pk)]
    assert "decided by olga" in reasons[str(decided_bot.pk)]  # her decision, carried out at the close


def test_owners_are_reminded_of_identity_items_and_escalation_counts_them(admin, owner):
    MachineFactory(owner=owner)
    MachineFactory(owner=PersonFactory(status=IdentityStatus.OFFBOARDED))  # to the fallback group "admin"
    launched(admin, review_grants=False, due_at=timezone.now() + timedelta(days=3))

    with time_machine.travel(timezone.now() + timedelta(hours=49), tick=False):
        result = reviews_chase()

    assert result["items"] == 2 and result["to_fallback"] == 2
    subjects = Notification.objects.filter(recipient=owner.user, kind="review.reminder").values_list(
        "subject", flat=True
    )
    assert list(subjects) == ["1 access review waiting for you"]


#
# Pages and reports
#
def test_the_queue_shows_the_identity_and_its_evidence(client, admin, owner):
    backup = PersonFactory(name="Bob Backup")
    bot = MachineFactory(
        owner=owner,
        backup_owner=backup,
        name="ledger-sync",
        description="Copies the ledger to the warehouse nightly",
        secret_location="ci_cd",
        rotation_period_days=45,
    )
    GrantFactory(identity=bot)
    GrantFactory(identity=bot)
    launched(admin, review_grants=False)
    client.force_login(owner.user)

    page = client.get(reverse("governance:review_queue")).content.decode()

    assert "ledger-sync — Identity: still needed?" in page
    assert "Bob Backup" in page and "Copies the ledger to the warehouse nightly" in page
    assert "CI/CD variables" in page.replace("ci/cd", "CI/CD") or "ci/cd variables" in page
    assert "every 45 days" in page and "2 grants in force" in page
    assert "Revoke: suspend it" in page

    grouped = client.get(reverse("governance:review_queue"), {"group": "entitlement", "order": "last_used"})
    assert "Identities: still needed?" in grouped.content.decode()


def test_deciding_an_identity_item_in_the_queue_answers_in_place(client, admin, owner):
    bot = MachineFactory(owner=owner, name="old-cron")
    item = identity_items(launched(admin, review_grants=False)).get()
    client.force_login(owner.user)

    response = client.post(
        reverse("governance:review_decide", args=[item.pk]), {"decision": "revoke"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    assert "Revoked: old-cron — Identity: still needed?" in response.content.decode()
    bot.refresh_from_db()
    assert bot.status == IdentityStatus.SUSPENDED


def test_the_campaign_page_and_reports_show_identity_items(client, admin, owner):
    MachineFactory(owner=owner, name="report-bot")
    campaign = launched(admin, review_grants=False)
    item = identity_items(campaign).get()
    review_decide(item_ids=[item.pk], actor=owner.user, decision="revoke")
    client.force_login(admin)

    detail = client.get(reverse("governance:campaign_detail", args=[campaign.pk])).content.decode()
    html = client.get(reverse("governance:report_campaign", args=[campaign.pk])).content.decode()
    response = client.get(reverse("governance:report_campaign_csv", args=[campaign.pk]))
    pdf = client.get(reverse("governance:report_campaign_pdf", args=[campaign.pk]))

    assert "Identity: still needed?" in detail and "the non-human identities themselves" in detail
    assert "Identity: still needed?" in html and "identity: suspended" in html
    assert "Identities revoked: suspended" in html
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert (row["item_kind"], row["grant"], row["entitlement"], row["identity"]) == (
        "identity",
        "",
        "Identity: still needed?",
        "report-bot",
    )
    assert (row["decision"], row["identity_status_now"]) == ("revoke", "suspended")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
