"""What stands between an approval and a grant: separation of duties across requests in flight,
a holder that stopped being active, a scheduled start that cannot happen, and direct grants that
skip the workflow. Ref: #3 item 1 (SoD), #4 items 3, 5, 6, 8."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from audit.models import AuditEvent
from governance.choices import GrantKind, GrantStatus, IdentityKind, RiskTier
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import Grant
from governance.services.grants import grant_confirm_provisioned, grant_create, grant_issue
from governance.services.identities import identity_offboard, identity_suspend
from jit.choices import RequestStatus
from jit.services.approvals import access_request_decide
from jit.tasks import access_requests_start_scheduled_task
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, SodRuleFactory

pytestmark = pytest.mark.django_db

ONE_STAGE = [{"approver": "entitlement_owner", "quorum": 1}]


def approve(request, user):
    return access_request_decide(request_id=request.pk, approver=user, decision="approve")


@pytest.fixture
def blocked_pair(entitlement):
    """Two entitlements nobody may hold together (a blocking SoD rule), same owners as `entitlement`."""
    payee = EntitlementFactory(
        name="create_payee", system=entitlement.system, owner=entitlement.owner, approval_stages=ONE_STAGE
    )
    approve_payment = EntitlementFactory(
        name="approve_payment", system=entitlement.system, owner=entitlement.owner, approval_stages=ONE_STAGE
    )
    SodRuleFactory(name="Payee vs approval", action="block", entitlements=[payee, approve_payment])
    return payee, approve_payment


#
# Separation of duties
#
def test_the_second_half_of_a_blocked_pair_is_refused_while_the_first_is_pending(submit, blocked_pair):
    payee, approve_payment = blocked_pair
    submit(payee)

    with pytest.raises(ValidationFailed, match="Payee vs approval"):
        submit(approve_payment)


def test_the_second_half_is_refused_while_the_first_waits_for_activation(submit, blocked_pair, ent_owner, alice):
    # given high-risk access approved but not activated yet: no grant exists
    payee, approve_payment = blocked_pair
    payee.risk_tier = RiskTier.HIGH
    payee.save()
    first = submit(payee)
    approve(first, ent_owner)
    first.refresh_from_db()
    assert first.status == RequestStatus.APPROVED and first.grant is None

    # then the other half is refused, and so is asking for the same access again
    with pytest.raises(ValidationFailed, match="Payee vs approval"):
        submit(approve_payment)
    with pytest.raises(InvalidTransition, match="waiting to start"):
        submit(payee)


def test_issuing_refuses_a_blocked_combination_whatever_the_path(blocked_pair, alice):
    payee, approve_payment = blocked_pair
    GrantFactory(identity=alice, entitlement=payee)
    events = AuditEvent.objects.count()

    with pytest.raises(InvalidTransition, match="Separation of duties"):
        grant_issue(actor=None, identity=alice, entitlement=approve_payment)

    assert not Grant.objects.filter(entitlement=approve_payment).exists()
    assert AuditEvent.objects.count() == events


#
# The holder or the access changed while the request waited
#
def test_final_approval_for_a_suspended_holder_fails_the_request_and_keeps_the_decision(
    submit, entitlement, ent_owner, sys_owner, alice
):
    # given
    request = submit(entitlement)
    approve(request, ent_owner)
    identity_suspend(identity_id=alice.pk, actor=None, reason="on leave")

    # when the last stage approves
    request = approve(request, sys_owner)

    # then the approval stands, no grant is issued, and the request says why it failed
    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED and request.grant is None
    assert "suspended" in request.decision_note
    assert request.approvals.count() == 2
    assert AuditEvent.objects.filter(action="request.failed", target_id=str(request.pk)).count() == 1
    assert not Grant.objects.filter(identity=alice, entitlement=entitlement).exists()
    alice.user.refresh_from_db()
    assert not alice.user.is_active  # suspension turned her login off; she sees the outcome when back
    assert not alice.user.notifications.filter(kind="request.failed").exists()


def test_a_request_whose_asker_was_suspended_grants_nothing_to_the_machine(
    submit, entitlement, ent_owner, sys_owner, alice, alice_bot
):
    # given alice asked for her machine, then was suspended; the machine itself is still active
    request = submit(entitlement, beneficiary=alice_bot)
    approve(request, ent_owner)
    identity_suspend(identity_id=alice.pk, actor=None, reason="on leave")

    # when the last stage approves
    approve(request, sys_owner)

    # then her request no longer stands
    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED and request.grant is None
    assert "who asked, is suspended" in request.decision_note
    assert not Grant.objects.filter(identity=alice_bot, entitlement=entitlement).exists()


def test_a_renewal_approved_after_suspension_does_not_extend_the_access(
    submit, entitlement, ent_owner, sys_owner, alice
):
    # given an active JIT grant and a pending extension
    grant = GrantFactory(
        identity=alice,
        entitlement=entitlement,
        kind=GrantKind.JIT,
        granted_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    renewal = submit(entitlement, renewal_of_id=grant.pk)
    approve(renewal, ent_owner)
    identity_suspend(identity_id=alice.pk, actor=None, reason="on leave")

    # when
    approve(renewal, sys_owner)

    # then
    renewal.refresh_from_db()
    grant.refresh_from_db()
    assert renewal.status == RequestStatus.FAILED
    assert grant.status == GrantStatus.REVOKING and grant.end_reason == "suspended"  # suspension took it away
    assert not Grant.objects.filter(renewal_of=grant).exists()


def test_a_scheduled_start_that_cannot_happen_fails_alone_and_the_others_start(
    submit, entitlement, ent_owner, sys_owner, alice
):
    # given two approved requests starting tomorrow; alice's identity is suspended meanwhile
    start = timezone.now() + timedelta(days=1)
    blocked = submit(entitlement, start_at=start)
    bob = PersonFactory()
    fine = submit(entitlement, actor=bob.user, beneficiary=bob, start_at=start)
    for request in (blocked, fine):
        approve(request, ent_owner)
        approve(request, sys_owner)
    identity_suspend(identity_id=alice.pk, actor=None, reason="on leave")

    # when the start comes
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        started = access_requests_start_scheduled_task()
        again = access_requests_start_scheduled_task()

    # then one started, one failed once, and nothing is left to retry every minute
    blocked.refresh_from_db()
    fine.refresh_from_db()
    assert (started, again) == (1, 0)
    assert fine.grant is not None
    assert blocked.status == RequestStatus.FAILED and blocked.grant is None
    assert AuditEvent.objects.filter(action="request.failed").count() == 1
    started = AuditEvent.objects.get(action="request.started")
    assert started.target_id == str(fine.pk) and started.data["grant"] == fine.grant_id


def test_offboarding_closes_approved_requests_that_have_no_grant_yet(submit, entitlement, ent_owner, sys_owner, alice):
    request = submit(entitlement, start_at=timezone.now() + timedelta(days=1))
    approve(request, ent_owner)
    approve(request, sys_owner)

    identity_offboard(identity_id=alice.pk, actor=None, reason="left")

    request.refresh_from_db()
    assert request.status == RequestStatus.CANCELLED and request.grant is None


#
# Direct grants skip the workflow, not the rules
#
def test_an_owner_cannot_grant_to_themself_or_to_what_they_own(entitlement, alice):
    owner = entitlement.owner
    their_bot = MachineFactory(owner=owner)

    for grantee in (owner, their_bot):
        with pytest.raises(PermissionRefused, match="request it instead"):
            grant_create(actor=owner.user, identity=grantee, entitlement=entitlement)

    grant = grant_create(actor=owner.user, identity=alice, entitlement=entitlement)
    assert grant.status == GrantStatus.PENDING_PROVISION


def test_a_direct_grant_keeps_to_the_catalogue_limits(entitlement, alice, alice_bot):
    owner = entitlement.owner.user
    entitlement.allowed_identity_kinds = [IdentityKind.HUMAN]
    entitlement.save()

    with pytest.raises(ValidationFailed) as kind:
        grant_create(actor=owner, identity=alice_bot, entitlement=entitlement)
    with pytest.raises(ValidationFailed) as too_long:
        grant_create(
            actor=owner,
            identity=alice,
            entitlement=entitlement,
            kind=GrantKind.JIT,
            duration=entitlement.effective_max_duration + timedelta(hours=1),
        )

    assert "identity" in kind.value.field_errors and "duration" in too_long.value.field_errors
    assert not Grant.objects.filter(entitlement=entitlement).exists()


def test_the_system_owner_confirms_a_direct_grant_it_did_not_make(entitlement, alice, sys_owner):
    grant = grant_create(
        actor=entitlement.owner.user,
        identity=alice,
        entitlement=entitlement,
        kind=GrantKind.JIT,
        duration=timedelta(hours=1),
    )
    grant = grant_confirm_provisioned(grant_id=grant.pk, actor=sys_owner)
    assert grant.status == GrantStatus.ACTIVE


def test_the_scheduled_start_task_stops_when_out_of_time_and_leaves_the_rest_for_the_next_run(
    submit, entitlement, ent_owner, sys_owner, alice, alice_bot, monkeypatch
):
    from celery.exceptions import SoftTimeLimitExceeded

    import jit.tasks

    # given two approved requests whose start has come
    start = timezone.now() + timedelta(hours=1)
    for beneficiary in (alice, alice_bot):
        request = submit(entitlement, start_at=start, beneficiary=beneficiary)
        approve(request, ent_owner)
        approve(request, sys_owner)
    calls = []

    def out_of_time(*, request_id):
        calls.append(request_id)
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(jit.tasks, "access_request_start_scheduled", out_of_time)

    # when the task runs out of time on the first
    with time_machine.travel(start, tick=False), pytest.raises(SoftTimeLimitExceeded):
        access_requests_start_scheduled_task()

    # then it stopped there instead of going on until the hard limit kills the worker
    assert len(calls) == 1
