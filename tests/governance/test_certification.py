"""Certification campaigns: scope, reviewers, recommendations, decisions, remediation and closing."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from audit.models import AuditEvent, OutboxMessage
from governance.certification_reasons import reason_codes
from governance.choices import GrantKind, GrantStatus, IdentityKind, RiskTier
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import Campaign, CampaignStatus, Grant, ReviewItem
from governance.selectors_certification import campaign_preview, campaigns_visible_to, review_queue
from governance.services.certification import (
    campaign_cancel,
    campaign_close,
    campaign_create,
    campaign_launch,
    campaign_launch_in_background,
    campaign_update,
    remediation_retry,
    remediation_sync,
    review_decide,
    review_reassign,
)
from governance.services.grants import grant_revoke_failed
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SodRuleFactory,
    SystemFactory,
    with_role,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin():
    return with_role(PersonFactory(name="Ada Admin"), "admin").user


@pytest.fixture
def ent_owner():
    return PersonFactory(name="Eve Owner")


def draft(admin, **fields):
    fields.setdefault("due_at", timezone.now() + timedelta(days=14))
    return campaign_create(actor=admin, name=fields.pop("name", "Q4 review"), **fields)


def launched(admin, **fields):
    return campaign_launch(campaign_id=draft(admin, **fields).pk, actor=admin)


def items_of(campaign):
    return ReviewItem.objects.filter(campaign=campaign).order_by("grant_id", "stage")


#
# Definition
#
def test_only_admins_define_campaigns_and_only_drafts_are_edited(admin, ent_owner):
    with pytest.raises(PermissionRefused):
        draft(ent_owner.user)
    campaign = draft(admin)
    campaign_update(campaign_id=campaign.pk, actor=admin, changes={"name": "Renamed"})
    campaign_launch(campaign_id=campaign.pk, actor=admin)
    with pytest.raises(InvalidTransition, match="only a draft"):
        campaign_update(campaign_id=campaign.pk, actor=admin, changes={"name": "Again"})
    assert [e.action for e in AuditEvent.objects.for_target(campaign).order_by("seq")] == [
        "campaign.created",
        "campaign.updated",
        "campaign.launched",
    ]


def test_a_lapsed_critical_review_never_keeps_the_access_by_default(admin):
    assert draft(admin).undecided["critical"] == "revoke"


def test_a_group_reviewer_needs_a_group_and_every_tier_needs_a_rule(admin):
    with pytest.raises(ValidationFailed, match="group"):
        draft(admin, reviewer="group")
    with pytest.raises(ValidationFailed, match="every risk tier"):
        draft(admin, undecided={"low": "keep"})


#
# Scope and reviewers
#
def test_the_scope_selects_grants_in_force_by_system_tier_kind_and_grant_kind(admin):
    system = SystemFactory()
    critical = EntitlementFactory(system=system, risk_tier=RiskTier.CRITICAL)
    low = EntitlementFactory(system=system, risk_tier=RiskTier.LOW)
    wanted = GrantFactory(entitlement=critical, identity=MachineFactory())
    GrantFactory(entitlement=low)  # another tier
    GrantFactory(entitlement=critical, identity=PersonFactory())  # a person, not a machine
    GrantFactory(entitlement=critical, status=GrantStatus.REVOKED)  # not in force
    GrantFactory(entitlement=EntitlementFactory(risk_tier=RiskTier.CRITICAL))  # another system
    GrantFactory(entitlement=critical, kind=GrantKind.JIT)  # a JIT grant

    campaign = launched(
        admin,
        scope={
            "systems": [system.pk],
            "risk_tiers": ["critical"],
            "identity_kinds": list(IdentityKind.non_human()),
            "grant_kinds": ["standing"],
        },
    )

    assert [item.grant_id for item in items_of(campaign)] == [wanted.pk]
    assert campaign.items_total == 1


def test_each_item_goes_to_the_strategys_reviewer(admin, ent_owner):
    grant = GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    machine_owner = grant.identity.owner

    by_entitlement = launched(admin, name="by entitlement owner")
    by_identity = launched(admin, name="by identity owner", reviewer="identity_owner")

    assert items_of(by_entitlement).get().reviewer == ent_owner.user
    assert items_of(by_identity).get().reviewer == machine_owner.user


def test_nobody_reviews_their_own_access_and_a_missing_or_offboarded_reviewer_goes_to_the_fallback(admin, ent_owner):
    own = GrantFactory(identity=ent_owner, entitlement=EntitlementFactory(owner=ent_owner))
    gone = PersonFactory(status="offboarded")
    orphan = GrantFactory(entitlement=EntitlementFactory(owner=gone))

    campaign = launched(admin)

    for grant in (own, orphan):
        item = items_of(campaign).get(grant=grant)
        assert item.reviewer is None and item.reviewer_group == "admin"
    assert ent_owner.user not in {i.reviewer for i in items_of(campaign)}


def test_the_preview_tells_what_launching_would_open_and_writes_nothing(admin, ent_owner):
    entitlement = EntitlementFactory(owner=ent_owner)
    GrantFactory(entitlement=entitlement)
    GrantFactory(entitlement=entitlement)
    GrantFactory(entitlement=EntitlementFactory(owner=PersonFactory(status="offboarded")))
    campaign = draft(admin)

    preview = campaign_preview(campaign)

    assert preview.total == 3 and preview.without_reviewer == 1
    assert dict(preview.per_reviewer)[ent_owner.user.username] == 2
    assert not ReviewItem.objects.exists()


#
# Recommendations
#
def reasons_for(admin, grant):
    campaign = launched(admin, name=f"for {grant.pk}")
    item = items_of(campaign).get(grant=grant)
    return item.recommendation, set(reason_codes(item.reason_flags))


def test_an_unused_grant_is_recommended_for_revocation(admin):
    grant = GrantFactory(granted_at=timezone.now() - timedelta(days=200), last_used_at=None)
    recommendation, reasons = reasons_for(admin, grant)
    assert recommendation == "revoke" and "unused" in reasons


def test_a_used_low_risk_grant_is_recommended_for_certification(admin):
    grant = GrantFactory(last_used_at=timezone.now())
    recommendation, reasons = reasons_for(admin, grant)
    assert recommendation == "certify" and reasons == {"never_reviewed"}


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: GrantFactory(identity=MachineFactory(owner=PersonFactory(status="offboarded"))), "orphaned"),
        (lambda: GrantFactory(identity=MachineFactory(status="suspended")), "holder_inactive"),
        (
            lambda: GrantFactory(identity=MachineFactory(last_used_at=timezone.now() - timedelta(days=365))),
            "stale_identity",
        ),
        (lambda: GrantFactory(identity=MachineFactory(secret_location="embedded_in_code")), "secret_exposed"),
        (
            lambda: GrantFactory(
                identity=MachineFactory(rotation_period_days=30, last_rotated_at=timezone.now() - timedelta(days=90))
            ),
            "rotation_overdue",
        ),
        (lambda: GrantFactory(entitlement=EntitlementFactory(risk_tier=RiskTier.HIGH)), "high_risk"),
    ],
    ids=["orphaned", "holder-inactive", "stale", "secret", "rotation", "high-risk"],
)
def test_each_reason_is_named(admin, make, reason):
    assert reason in reasons_for(admin, make())[1]


def test_an_sod_conflict_and_repeated_renewals_are_named(admin):
    machine = MachineFactory()
    pay, approve = EntitlementFactory(), EntitlementFactory()
    SodRuleFactory(action="block", entitlements=[pay, approve])
    conflicted = GrantFactory(identity=machine, entitlement=pay)
    GrantFactory(identity=machine, entitlement=approve)
    assert "sod_conflict" in reasons_for(admin, conflicted)[1]

    entitlement = EntitlementFactory()
    previous = None
    for _ in range(4):  # the first grant and three renewals
        if previous is not None:
            Grant.objects.filter(pk=previous.pk).update(status=GrantStatus.EXPIRED)
        previous = GrantFactory(identity=machine, entitlement=entitlement, renewal_of=previous)
    assert "renewed_often" in reasons_for(admin, previous)[1]


def test_a_grant_certified_before_is_not_never_reviewed(admin, ent_owner):
    grant = GrantFactory(entitlement=EntitlementFactory(owner=ent_owner), last_used_at=timezone.now())
    first = launched(admin, name="first")
    review_decide(item_ids=[items_of(first).get().pk], actor=ent_owner.user, decision="certify")
    assert "never_reviewed" not in reasons_for(admin, grant)[1]


#
# Decisions
#
def test_the_reviewer_certifies_and_each_decision_is_audited(admin, ent_owner):
    GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    campaign = launched(admin)
    item = items_of(campaign).get()

    review_decide(item_ids=[item.pk], actor=ent_owner.user, decision="certify", comment="still needed")

    item.refresh_from_db()
    assert (item.decision, item.decided_by, item.comment) == ("certify", ent_owner.user, "still needed")
    event = AuditEvent.objects.get(action="review.certified", target_id=str(item.pk))
    assert event.data["grant"] == item.grant_id and event.actor_user_id == ent_owner.user.pk


def test_someone_else_cannot_decide_an_item_and_nothing_changes(admin, ent_owner):
    GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    item = items_of(launched(admin)).get()
    stranger = PersonFactory().user

    with pytest.raises(PermissionRefused):
        review_decide(item_ids=[item.pk], actor=stranger, decision="revoke", comment="no")
    item.refresh_from_db()
    assert item.decision == ""


def test_a_bulk_revoke_needs_a_comment_and_revokes_through_the_connector(admin, ent_owner):
    entitlement = EntitlementFactory(owner=ent_owner)
    grants = [GrantFactory(entitlement=entitlement) for _ in range(3)]
    campaign = launched(admin)
    ids = list(items_of(campaign).values_list("pk", flat=True))

    with pytest.raises(ValidationFailed, match="Say why"):
        review_decide(item_ids=ids, actor=ent_owner.user, decision="revoke")
    review_decide(item_ids=ids, actor=ent_owner.user, decision="revoke", comment="project ended")

    assert set(Grant.objects.filter(pk__in=[g.pk for g in grants]).values_list("status", flat=True)) == {"revoking"}
    assert OutboxMessage.objects.filter(kind="connector.revoke").count() == 3
    assert set(items_of(campaign).values_list("remediation", flat=True)) == {"revoking"}


def test_a_member_of_the_fallback_group_decides_its_items(admin):
    GrantFactory(entitlement=EntitlementFactory(owner=PersonFactory(status="offboarded")))
    item = items_of(launched(admin)).get()
    assert review_queue(admin).filter(pk=item.pk).exists()

    review_decide(item_ids=[item.pk], actor=admin, decision="certify")


def test_revocations_wait_for_the_close_when_the_campaign_says_so(admin, ent_owner):
    grant = GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    campaign = launched(admin, remediation="close")
    item = items_of(campaign).get()

    review_decide(item_ids=[item.pk], actor=ent_owner.user, decision="revoke")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    campaign_close(campaign_id=campaign.pk, actor=admin)

    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING


def test_a_failed_revocation_stays_visible_and_is_retried(admin, ent_owner):
    grant = GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    item = items_of(launched(admin)).get()
    review_decide(item_ids=[item.pk], actor=ent_owner.user, decision="revoke")

    grant_revoke_failed(grant_id=grant.pk, actor=None, error="target refused")
    remediation_sync()
    item.refresh_from_db()
    assert item.remediation == "failed" and item.decision == "revoke"

    remediation_retry(item_ids=[item.pk], actor=admin)
    item.refresh_from_db()
    grant.refresh_from_db()
    assert item.remediation == "revoking" and grant.status == GrantStatus.REVOKING


def test_reassigning_hands_the_item_over_with_a_reason_never_to_the_holder(admin, ent_owner):
    holder = PersonFactory()
    GrantFactory(identity=holder, entitlement=EntitlementFactory(owner=ent_owner))
    item = items_of(launched(admin)).get()
    colleague = PersonFactory().user

    with pytest.raises(ValidationFailed, match="own access"):
        review_reassign(item_id=item.pk, actor=ent_owner.user, reviewer=holder.user, reason="they know")
    review_reassign(item_id=item.pk, actor=ent_owner.user, reviewer=colleague, reason="on leave")

    item.refresh_from_db()
    assert item.reviewer == colleague and item.reassign_reason == "on leave"
    assert review_queue(colleague).filter(pk=item.pk).exists() and not review_queue(ent_owner.user).exists()
    assert AuditEvent.objects.filter(action="review.reassigned", target_id=str(item.pk)).exists()


def test_high_risk_certified_in_a_two_stage_campaign_is_asked_again_of_someone_else(admin, ent_owner):
    system_owner = PersonFactory()
    entitlement = EntitlementFactory(owner=ent_owner, risk_tier=RiskTier.HIGH, system=SystemFactory(owner=system_owner))
    GrantFactory(entitlement=entitlement)
    campaign = launched(admin, second_stage=True, second_stage_reviewer="system_owner")

    review_decide(item_ids=[items_of(campaign).get().pk], actor=ent_owner.user, decision="certify")

    second = items_of(campaign).get(stage=2)
    assert second.reviewer == system_owner.user and second.decision == ""


#
# Closing
#
def test_closing_applies_the_rule_per_tier_to_undecided_items(admin, ent_owner):
    critical = GrantFactory(entitlement=EntitlementFactory(owner=ent_owner, risk_tier=RiskTier.CRITICAL))
    low = GrantFactory(entitlement=EntitlementFactory(owner=ent_owner, risk_tier=RiskTier.LOW))
    campaign = launched(admin)

    campaign_close(campaign_id=campaign.pk, actor=None)

    by_grant = {item.grant_id: item for item in items_of(campaign)}
    assert (by_grant[critical.pk].decision, by_grant[critical.pk].decided_by_rule) == ("revoke", True)
    assert by_grant[low.pk].decision == "certify"
    critical.refresh_from_db()
    low.refresh_from_db()
    assert critical.status == GrantStatus.REVOKING and low.status == GrantStatus.ACTIVE
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.CLOSED
    assert AuditEvent.objects.filter(action="review.revoked", target_id=str(by_grant[critical.pk].pk)).exists()


def test_closing_twice_changes_nothing_the_second_time(admin, ent_owner):
    GrantFactory(entitlement=EntitlementFactory(owner=ent_owner, risk_tier=RiskTier.CRITICAL))
    campaign = launched(admin)
    campaign_close(campaign_id=campaign.pk, actor=None)
    events = AuditEvent.objects.count()

    campaign_close(campaign_id=campaign.pk, actor=None)

    assert AuditEvent.objects.count() == events
    assert OutboxMessage.objects.filter(kind="connector.revoke").count() == 1


def test_a_cancelled_campaign_takes_no_more_decisions(admin, ent_owner):
    GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    campaign = launched(admin)
    campaign_cancel(campaign_id=campaign.pk, actor=admin, reason="wrong scope")

    with pytest.raises(InvalidTransition):
        review_decide(item_ids=[items_of(campaign).get().pk], actor=ent_owner.user, decision="certify")


#
# Who sees what
#
def test_reviewers_and_owners_see_their_campaigns_and_others_none(admin, ent_owner, make_user):
    GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    campaign = launched(admin)
    stranger = PersonFactory().user
    auditor = make_user("aud", roles=("auditor",))

    assert list(campaigns_visible_to(ent_owner.user)) == [campaign]
    assert list(campaigns_visible_to(auditor)) == [campaign]
    assert not campaigns_visible_to(stranger).exists()
    assert not review_queue(auditor).exists()
    assert Group.objects.filter(name="admin").exists()


def test_a_big_campaign_is_launched_by_a_worker_through_the_outbox(admin, ent_owner):
    from audit.outbox import outbox_dispatch

    GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    campaign = draft(admin)

    campaign_launch_in_background(campaign_id=campaign.pk, actor=admin)
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.LAUNCHING
    outbox_dispatch()

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE and campaign.items_total == 1
