from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from audit.models import AuditEvent
from governance.choices import GrantStatus, IdentityStatus, RiskTier
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import Grant
from governance.services.grants import grant_confirm_provisioned
from governance.services.identities import identity_offboard
from jit.choices import RequestStatus
from jit.models import AccessRequest
from jit.services.approvals import access_request_decide
from jit.services.requests import access_request_activate, access_request_cancel, access_request_preview
from tests.factories.governance import EntitlementFactory, GrantFactory, PersonFactory, SodRuleFactory

pytestmark = pytest.mark.django_db


def approve(request, user, **kw):
    return access_request_decide(request_id=request.pk, approver=user, decision="approve", **kw)


def test_two_stages_approve_then_grant_is_issued_and_activated(submit, entitlement, ent_owner, sys_owner, alice):
    # given
    request = submit(entitlement)
    assert request.status == RequestStatus.PENDING
    assert [s.approver_source for s in request.stages.all()] == ["entitlement_owner", "system_owner"]
    # when
    approve(request, ent_owner, comment="ok")
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING  # stage 2 still open
    approve(request, sys_owner)
    # then
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED and request.grant.status == GrantStatus.PENDING_PROVISION
    grant = grant_confirm_provisioned(grant_id=request.grant_id, actor=sys_owner)
    assert grant.kind == "jit" and grant.expires_at - grant.granted_at == timedelta(hours=2)
    actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
    assert actions[-5:] == [
        "request.stage_approved",
        "request.stage_approved",
        "request.approved",
        "grant.created",
        "grant.activated",
    ]
    submitted = AuditEvent.objects.get(action="request.submitted")
    assert submitted.data["justification"] == "Fix incident 42"


def test_requester_cannot_approve_their_own_request(submit, entitlement, alice):
    from django.contrib.auth.models import Group

    entitlement.approval_stages = [{"approver": "group", "group": "approver", "quorum": 1}]
    entitlement.save()
    approvers = Group.objects.get(name="approver")
    alice.user.groups.add(approvers)
    PersonFactory(user__username="other-approver").user.groups.add(approvers)
    request = submit(entitlement)
    assert alice.user not in request.stages.get().eligible.all()
    with pytest.raises(PermissionRefused, match="request you made"):
        approve(request, alice.user)
    assert not request.approvals.exists()


def test_owner_of_a_machine_identity_cannot_approve_for_it(submit, entitlement, alice, alice_bot):
    from django.contrib.auth.models import Group

    entitlement.owner = alice  # alice owns the entitlement AND the bot
    entitlement.save()
    fallback = PersonFactory().user
    fallback.groups.add(Group.objects.get(name="admin"))
    requester = PersonFactory()
    alice_bot.backup_owner = requester
    alice_bot.save()
    request = submit(entitlement, actor=requester.user, beneficiary=alice_bot)
    # alice is excluded from routing and refused if she tries anyway
    assert list(request.stages.get(position=1).eligible.all()) == [fallback]
    with pytest.raises(PermissionRefused, match="identity you own"):
        approve(request, alice.user)


def test_one_person_cannot_satisfy_two_stages(submit, entitlement):
    from django.contrib.auth.models import Group

    # given two stages routed to the same group of two people
    group = Group.objects.create(name="payments-leads")
    first, second = PersonFactory().user, PersonFactory().user
    for user in (first, second):
        user.groups.add(group)
    entitlement.approval_stages = [{"approver": "group", "group": "payments-leads", "quorum": 1}] * 2
    entitlement.save()
    request = submit(entitlement)
    approve(request, first)

    # then the one who decided stage 1 cannot decide stage 2; the other can
    with pytest.raises(InvalidTransition, match="one person cannot approve two stages"):
        approve(request, first)
    approve(request, second)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED


def test_an_owner_of_both_stages_decides_the_first_and_the_fallback_the_second(submit, entitlement, ent_owner):
    from django.contrib.auth.models import Group

    # given the same person owns the entitlement and its system
    entitlement.system.owner = entitlement.owner
    entitlement.system.save()
    admin = PersonFactory(user__username="fallback-admin").user
    admin.groups.add(Group.objects.get(name="admin"))

    # when
    request = submit(entitlement)

    # then stage 2 is not routed to someone who must decide stage 1
    assert list(request.stages.get(position=1).eligible.all()) == [ent_owner]
    assert list(request.stages.get(position=2).eligible.all()) == [admin]
    approve(request, ent_owner)
    approve(request, admin)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED


def test_an_approval_path_nobody_can_complete_is_refused_in_the_preview_and_at_submission(submit, entitlement, alice):
    entitlement.system.owner = entitlement.owner  # one person, two stages, and no fallback approvers
    entitlement.system.save()

    with pytest.raises(ValidationFailed, match="Nobody can approve stage 2"):
        submit(entitlement)

    assert not AccessRequest.objects.exists()
    decision, approvers = access_request_preview(
        actor=alice.user, beneficiary=alice, entitlement=entitlement, duration=None, justification="why"
    )
    assert not decision.allowed and "Nobody can approve stage 2" in decision.reasons[-1]
    assert approvers[1] == []


def test_a_critical_entitlement_owned_by_one_person_gets_two_distinct_approvers_on_its_last_stage(
    submit, entitlement, ent_owner
):
    from django.contrib.auth.models import Group

    # given the demo's shape: critical, entitlement owner then system owner, the same person
    entitlement.risk_tier = RiskTier.CRITICAL
    entitlement.system.owner = entitlement.owner
    entitlement.system.save()
    entitlement.save()
    admin = PersonFactory(user__username="admin-1").user
    admin.groups.add(Group.objects.get(name="admin"))
    approver = PersonFactory(user__username="approver-1").user
    approver.groups.add(Group.objects.get(name="approver"))

    # when requested
    request = submit(entitlement, ticket="INC-1")

    # then the last stage needs two and has two who may give it, neither of them the owner
    last = request.stages.get(position=2)
    assert last.quorum == 2 and set(last.eligible.all()) == {admin, approver}
    approve(request, ent_owner)
    approve(request, admin)
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    approve(request, approver)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED


def test_not_an_eligible_approver(submit, entitlement):
    request = submit(entitlement)
    with pytest.raises(PermissionRefused, match="not an approver"):
        approve(request, PersonFactory().user)


def test_denial_ends_the_request_and_later_decisions_conflict(submit, entitlement, ent_owner, sys_owner):
    request = submit(entitlement)
    access_request_decide(request_id=request.pk, approver=ent_owner, decision="deny", comment="not needed")
    request.refresh_from_db()
    assert request.status == RequestStatus.DENIED
    with pytest.raises(InvalidTransition, match="already denied"):
        approve(request, sys_owner)


def test_a_denial_reaches_the_machines_other_owner_as_well_as_whoever_asked(submit, entitlement, alice, ent_owner):
    # given alice's machine, backed up by bob, for which alice asked
    from governance.models import Notification
    from tests.factories.governance import MachineFactory

    bob = PersonFactory()
    bot = MachineFactory(owner=alice, backup_owner=bob)
    request = submit(entitlement, beneficiary=bot)

    # when the request is denied
    access_request_decide(request_id=request.pk, approver=ent_owner, decision="deny", comment="use the shared role")

    # then both people answering for the machine hear it, once each
    told = Notification.objects.filter(kind="request.denied").values_list("recipient__username", flat=True)
    assert sorted(told) == sorted([alice.user.username, bob.user.username])


def test_deny_needs_a_reason(submit, entitlement, ent_owner):
    request = submit(entitlement)
    with pytest.raises(ValidationFailed):
        access_request_decide(request_id=request.pk, approver=ent_owner, decision="deny")
    assert not request.approvals.exists()


def test_replayed_approval_on_a_stage_that_moved_on_is_a_conflict(submit, entitlement, ent_owner, sys_owner):
    request = submit(entitlement)
    approve(request, ent_owner, stage_position=1)
    with pytest.raises(InvalidTransition, match="already been decided"):
        approve(request, sys_owner, stage_position=1)  # sys_owner's page was stale
    assert request.approvals.count() == 1


def test_cancel_is_for_the_requester_and_final(submit, entitlement, ent_owner, alice):
    request = submit(entitlement)
    with pytest.raises(PermissionRefused):
        access_request_cancel(request_id=request.pk, actor=ent_owner)
    access_request_cancel(request_id=request.pk, actor=alice.user)
    with pytest.raises(InvalidTransition):
        approve(request, ent_owner)
    with pytest.raises(InvalidTransition):
        access_request_cancel(request_id=request.pk, actor=alice.user)


def test_over_maximum_or_without_justification_writes_nothing(submit, entitlement):
    with pytest.raises(ValidationFailed) as error:
        submit(entitlement, duration=timedelta(days=30))
    assert error.value.field_errors == {"duration": ["The maximum duration for this entitlement is 7 days."]}
    with pytest.raises(ValidationFailed, match="justification is required"):
        submit(entitlement, justification="")
    assert not AccessRequest.objects.exists() and not AuditEvent.objects.filter(action="request.submitted").exists()


def test_a_second_pending_request_is_refused(submit, entitlement):
    submit(entitlement)
    with pytest.raises(InvalidTransition, match="already pending"):
        submit(entitlement)


def test_suspended_beneficiary_is_refused(submit, entitlement, alice_bot):
    alice_bot.status = IdentityStatus.SUSPENDED
    alice_bot.save()
    with pytest.raises(ValidationFailed, match="suspended"):
        submit(entitlement, beneficiary=alice_bot)


def test_offboarding_closes_pending_requests(submit, entitlement, alice_bot, alice):
    request = submit(entitlement, beneficiary=alice_bot)
    identity_offboard(identity_id=alice_bot.pk, actor=alice.user, reason="decommissioned")
    request.refresh_from_db()
    assert request.status == RequestStatus.CANCELLED and "offboarded" in request.decision_note


def test_machine_low_risk_auto_approval(submit, alice, alice_bot):
    entitlement = EntitlementFactory(risk_tier=RiskTier.LOW, auto_approve_machines=True)
    request = submit(entitlement, beneficiary=alice_bot)
    assert request.status == RequestStatus.APPROVED and request.grant is not None
    assert AuditEvent.objects.filter(action="request.auto_approved").count() == 1
    # the grant's trail names the request it fulfils, so an auditor can follow one to the other
    assert AuditEvent.objects.get(action="grant.created").data["request"] == request.pk


def test_automatic_approval_needs_no_approver_to_exist(submit, alice, alice_bot):
    # given a stage nobody could answer, on an entitlement machines get without asking
    entitlement = EntitlementFactory(
        risk_tier=RiskTier.LOW,
        auto_approve_machines=True,
        approval_stages=[{"approver": "group", "group": "nobody-is-in-this-group", "quorum": 1}],
    )
    decision, _ = access_request_preview(
        actor=alice.user, beneficiary=alice_bot, entitlement=entitlement, duration=timedelta(hours=1), justification="x"
    )
    assert decision.allowed and decision.auto_approve

    # when submitted, it does what the preview said
    request = submit(entitlement, beneficiary=alice_bot)
    assert request.status == RequestStatus.APPROVED and request.grant is not None


def test_critical_needs_two_distinct_approvers(submit, alice):
    from django.contrib.auth.models import Group

    approvers = Group.objects.get(name="approver")
    first, second = PersonFactory().user, PersonFactory().user
    for user in (first, second):
        user.groups.add(approvers)
    entitlement = EntitlementFactory(
        risk_tier=RiskTier.CRITICAL, approval_stages=[{"approver": "group", "group": "approver", "quorum": 1}]
    )
    request = submit(entitlement, duration=timedelta(hours=1))
    approve(request, first)
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    approve(request, second)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    # high/critical: the holder must activate within the window
    assert request.grant is None and request.activation_deadline is not None
    access_request_activate(request_id=request.pk, actor=alice.user)
    request.refresh_from_db()
    assert request.grant.status == GrantStatus.PENDING_PROVISION


def test_activation_window_lapses(submit, alice):
    entitlement = EntitlementFactory(risk_tier=RiskTier.HIGH, auto_approve_machines=False)
    request = submit(entitlement, duration=timedelta(hours=1))
    approve(request, entitlement.owner.user)
    with (
        time_machine.travel(timezone.now() + timedelta(hours=9), tick=False),
        pytest.raises(InvalidTransition, match="window has passed"),
    ):
        access_request_activate(request_id=request.pk, actor=alice.user)


def test_sod_conflict_adds_a_stage(submit, alice):
    from django.contrib.auth.models import Group

    PersonFactory().user.groups.add(Group.objects.get(name="approver"))
    held, wanted = EntitlementFactory(), EntitlementFactory()
    GrantFactory(identity=alice, entitlement=held)
    SodRuleFactory(name="Create and pay", entitlements=[held, wanted], action="extra_stage")
    request = submit(wanted)
    assert request.stages.count() == 2 and request.stages.last().reason == "SoD: Create and pay"
    assert request.policy["sod_conflicts"][0]["name"] == "Create and pay"


def test_retiring_the_entitlement_closes_pending_requests(submit, entitlement):
    from governance.services.catalogue import entitlement_retire

    request = submit(entitlement)
    entitlement_retire(entitlement_id=entitlement.pk, actor=None, reason="gone")
    request.refresh_from_db()
    assert request.status == RequestStatus.CANCELLED


def test_later_start_issues_the_grant_when_it_comes(submit, entitlement, ent_owner, sys_owner):
    from jit.tasks import access_requests_start_scheduled_task

    start = timezone.now() + timedelta(days=1)
    request = submit(entitlement, start_at=start)
    approve(request, ent_owner)
    approve(request, sys_owner)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED and request.grant is None
    assert access_requests_start_scheduled_task() == 0
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        assert access_requests_start_scheduled_task() == 1
        assert access_requests_start_scheduled_task() == 0
    request.refresh_from_db()
    assert Grant.objects.filter(pk=request.grant_id).exists()
