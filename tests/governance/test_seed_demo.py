"""`manage.py seed_demo`: a believable organisation, every identity kind, findings to look at. Ref: #3 item 9."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import transaction
from django.urls import reverse

from audit.choices import AuditAction
from audit.models import AuditEvent
from governance.choices import FindingKind, FindingStatus, GrantKind, GrantStatus, IdentityKind, RiskTier
from governance.models import (
    Campaign,
    CampaignStatus,
    Entitlement,
    Finding,
    FindingException,
    Grant,
    Identity,
    SodRule,
    System,
)
from governance.selectors_certification import campaign_progress, campaigns_visible_to, review_queue
from jit.choices import RequestStatus, StageStatus
from jit.demo import DEMO_REQUESTS
from jit.models import AccessRequest, Heartbeat

pytestmark = pytest.mark.django_db


def seed(*args) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_small_run_builds_the_organisation_and_a_second_run_changes_nothing():
    # when
    output = seed("--identities", "60", "--seed", "7")

    # then: every kind of identity, a catalogue at every tier, grants and findings
    assert set(Identity.objects.values_list("kind", flat=True)) == set(IdentityKind.values)
    assert Identity.objects.count() == 60
    assert Identity.history.count() >= 60  # a demo-sized run keeps history rows for every identity
    assert {"AWS production", "Payments DB", "GitHub", "Snowflake", "Kubernetes prod", "Salesforce"} <= set(
        System.objects.values_list("name", flat=True)
    )
    assert set(Entitlement.objects.values_list("risk_tier", flat=True)) == set(RiskTier.values)
    for critical in Entitlement.objects.filter(risk_tier=RiskTier.CRITICAL):
        assert [s["approver"] for s in critical.approval_stages] == ["entitlement_owner", "system_owner"]
    assert SodRule.objects.exists()
    assert Grant.objects.filter(kind=GrantKind.JIT, expires_at__isnull=False).exists()
    kinds = set(Finding.objects.filter(status=FindingStatus.OPEN).values_list("kind", flat=True))
    assert {
        FindingKind.ORPHANED,
        FindingKind.ROTATION_OVERDUE,
        FindingKind.SECRET_OUTSIDE_MANAGER,
        FindingKind.STALE,
        FindingKind.STANDING_HIGH_RISK,
        FindingKind.SOD_CONFLICT,
        FindingKind.ENTITLEMENT_WITHOUT_OWNER,
        FindingKind.RENEWED_AS_STANDING,
    } <= kinds
    assert Heartbeat.objects.exists()  # the expiry sweep ran once
    assert AuditEvent.objects.filter(action=AuditAction.IMPORT_APPLIED).count() == 1
    assert "Demo organisation:" in output

    # and when run again
    identities, grants = Identity.objects.count(), Grant.objects.count()
    again = seed("--identities", "60")

    # then
    assert "exists already" in again
    assert (Identity.objects.count(), Grant.objects.count()) == (identities, grants)
    assert AuditEvent.objects.filter(action=AuditAction.IMPORT_APPLIED).count() == 1


def test_demo_logins_are_linked_to_people_with_something_to_see():
    seed()
    users = {u.username: u for u in get_user_model().objects.all()}
    owner = Identity.objects.get(user=users["owner"])
    requester = Identity.objects.get(user=users["requester"])

    assert owner.owned_identities.count() >= 3
    assert owner.owned_systems.count() >= 2 and owner.owned_entitlements.count() >= 3
    assert requester.manager is not None and requester.manager.user == users["approver"]
    assert requester.owned_identities.count() == 1
    for login in ("approver", "auditor", "admin"):
        assert Identity.objects.filter(user=users[login], kind=IdentityKind.HUMAN).exists()
    assert Finding.objects.filter(owner_to_act=owner, status=FindingStatus.OPEN).exists()


def test_demo_requests_leave_work_in_every_approver_queue():
    # when
    output = seed()

    # then: made by the services, so stages, routing and the audit trail are real
    users = {u.username: u for u in get_user_model().objects.all()}
    pending = AccessRequest.objects.filter(status=RequestStatus.PENDING)
    for approver in ("approver", "owner", "admin"):
        assert set(pending_for(users[approver])), f"{approver} has nothing to decide"
    deploy = pending.get(beneficiary__user=users["requester"], entitlement__name="DeployRole")
    assert deploy.approvals.get().approver == users["approver"]  # first stage done by her manager
    assert users["owner"] in deploy.stages.get(position=2).eligible.all()
    assert Grant.objects.in_force().filter(kind=GrantKind.JIT, identity__name="svc-riya-report-bot").count() == 1
    assert Grant.objects.filter(status=GrantStatus.PENDING_PROVISION, identity__name="svc-riya-report-bot").exists()
    assert AuditEvent.objects.filter(action=AuditAction.REQUEST_SUBMITTED).count() == len(DEMO_REQUESTS)
    assert "Demo requests: 6 submitted" in output


def test_a_new_user_sees_a_running_review_part_decided_and_a_closed_one():
    # when
    output = seed()

    # then: a running campaign the owners are part-way through, with work left in their queues
    users = {u.username: u for u in get_user_model().objects.all()}
    running = Campaign.objects.get(status=CampaignStatus.ACTIVE)
    progress = campaign_progress(running)
    assert 0 < progress["decided"] < progress["total"]
    assert progress["revoked"] >= 1 and progress["certified"] >= 1
    for reviewer in ("owner", "admin"):
        assert review_queue(users[reviewer]).filter(campaign=running).exists(), reviewer
    # and a closed one: decided by people and, for what nobody decided, by the rule
    closed = Campaign.objects.get(status=CampaignStatus.CLOSED)
    assert not closed.items.filter(decision="").exists()
    assert closed.items.filter(decided_by_rule=True).exists() and closed.items.filter(decided_by_rule=False).exists()
    assert set(campaigns_visible_to(users["auditor"])) == {running, closed}
    assert "Demo campaigns: one running" in output

    # and when run again: nothing more
    reviews = AuditEvent.objects.filter(action__regex=r"^(campaign|review)\.")
    events = reviews.count()
    seed()
    assert Campaign.objects.count() == 2 and reviews.count() == events


def test_the_exception_register_shows_one_accepted_risk_from_the_start(client):
    seed()

    accepted = FindingException.objects.get()
    assert accepted.finding.status == FindingStatus.ACCEPTED and accepted.accepted_by.username == "admin"
    client.force_login(get_user_model().objects.get(username="auditor"))
    register = client.get(reverse("governance:finding_exception_list")).content.decode()
    assert accepted.reason in register

    seed()  # once: a second run adds none
    assert FindingException.objects.count() == 1


def pending_for(user):
    return AccessRequest.objects.filter(
        status=RequestStatus.PENDING, stages__status=StageStatus.PENDING, stages__eligible=user
    ).values_list("pk", flat=True)


def test_the_same_seed_builds_the_same_organisation():
    # given a first build, rolled back
    with transaction.atomic():
        seed("--identities", "80", "--seed", "3")
        first = sorted(Identity.objects.values_list("name", "kind", "status"))
        transaction.set_rollback(True)
    assert not Identity.objects.exists()

    # when built again with the same seed
    seed("--identities", "80", "--seed", "3")

    # then
    assert sorted(Identity.objects.values_list("name", "kind", "status")) == first


def test_negative_size_is_refused():
    with pytest.raises(CommandError):
        seed("--identities", "-1")


def test_every_demo_entitlement_has_an_approval_path_the_requester_can_complete():
    from jit.services.requests import access_request_preview

    seed()
    riya = get_user_model().objects.get(username="requester")
    checked = set()
    for entitlement in Entitlement.objects.filter(requestable=True, status="active", owner__status="active"):
        decision, approvers = access_request_preview(
            actor=riya,
            beneficiary=riya.identity,
            entitlement=entitlement,
            duration=None,
            justification="Incident 7 needs it.",
            ticket="INC-7",
        )
        if decision.sod_conflicts:  # an extra stage on top may outnumber the demo's five logins
            continue
        assert decision.allowed, (entitlement, decision.reasons)
        for stage, people in zip(decision.stages, approvers, strict=True):
            assert len(people) >= stage.get("quorum", 1), (entitlement, stage)
            assert riya not in people
        checked.add(entitlement.risk_tier)
    assert checked == {"low", "medium", "high", "critical"}
