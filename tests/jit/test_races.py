"""Races on PostgreSQL with real concurrent connections: each must end in exactly one outcome.

Each race is repeated so that a lucky interleaving cannot hide a missing lock. Which side wins a
round is up to the scheduler, so no test requires a given order to occur; instead every round is
checked for one consistent outcome: the winner's effects exactly once, the loser's not at all,
and the loser told why.
"""

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from audit.models import AuditEvent, OutboxMessage
from audit.verify import verify_chain
from governance.choices import GrantStatus
from governance.errors import DomainError, InvalidTransition
from governance.models import Grant
from governance.services.catalogue import entitlement_update, lock_entitlement
from governance.services.grants import grant_revoke
from governance.services.identities import identity_offboard
from jit.choices import RequestStatus, StageStatus
from jit.models import AccessRequest
from jit.services.approvals import access_request_decide
from jit.services.expiry import grants_expire_due
from jit.services.lifecycle import grant_release
from jit.services.requests import (
    _lock_request,
    access_request_cancel,
    access_request_submit,
    close_renewals_of_ended_grants,
)
from tests.concurrency import race, while_holding
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROUNDS = 8
GROUP_STAGE = {"approver": "group", "group": "approver", "quorum": 1}


def winners(results) -> int:
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, DomainError)]
    assert not unexpected, unexpected
    return sum(not isinstance(r, Exception) for r in results)


def one_winner_one_conflict(results) -> tuple[int, int]:
    """Exactly one call succeeded and the other got a conflict (409); return (winner, loser) indexes."""
    assert winners(results) == 1, results
    winner = next(i for i, r in enumerate(results) if not isinstance(r, Exception))
    loser = 1 - winner
    assert isinstance(results[loser], InvalidTransition), results
    assert results[loser].status_code == 409
    return winner, loser


def actions(obj, *names) -> list[str]:
    """The audit actions recorded on `obj` (only `names`, if given), in chain order."""
    events = AuditEvent.objects.for_target(obj).order_by("seq")
    if names:
        events = events.filter(action__in=names)
    return list(events.values_list("action", flat=True))


@pytest.fixture
def approvers_group():
    first, second = PersonFactory().user, PersonFactory().user
    group = Group.objects.get(name="approver")
    first.groups.add(group)
    second.groups.add(group)
    return first, second


def _pending_request(requester, stages=(GROUP_STAGE,)):
    entitlement = EntitlementFactory(approval_stages=list(stages))
    request = _request_for(requester, requester, entitlement_id=entitlement.pk)
    assert request.status == RequestStatus.PENDING and request.stages.count() == len(stages)
    return request


def _assert_approved_once(request, *, stages: int) -> None:
    """The request ended approved with one approval per stage, one grant and each event once."""
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    assert list(request.stages.order_by("position").values_list("status", flat=True)) == [StageStatus.APPROVED] * stages
    for stage in request.stages.all():
        assert stage.approvals.count() == 1, f"stage {stage.position} has {stage.approvals.count()} approvals"
    assert request.approvals.count() == stages
    grants = Grant.objects.filter(source_request=request)
    assert grants.count() == 1 and request.grant_id == grants.get().pk
    assert OutboxMessage.objects.filter(kind="connector.provision", payload__grant_id=request.grant_id).count() == 1
    assert actions(request, "request.stage_approved", "request.approved", "request.denied", "request.cancelled") == [
        *["request.stage_approved"] * stages,
        "request.approved",
    ]
    approved_stages = AuditEvent.objects.for_target(request).filter(action="request.stage_approved")
    assert sorted(e.data["stage"] for e in approved_stages) == list(range(1, stages + 1))


def test_two_approvers_on_the_last_stage_produce_one_approval(approvers_group):
    first, second = approvers_group
    for _ in range(ROUNDS):
        request = _pending_request(PersonFactory())
        results = race(
            lambda r=request: access_request_decide(
                request_id=r.pk, approver=first, decision="approve", stage_position=1
            ),
            lambda r=request: access_request_decide(
                request_id=r.pk, approver=second, decision="approve", stage_position=1
            ),
        )
        winner, _ = one_winner_one_conflict(results)
        _assert_approved_once(request, stages=1)
        assert request.approvals.get().approver == (first, second)[winner]
    assert verify_chain().ok


def test_two_approvers_on_the_last_of_two_stages_produce_one_approval(approvers_group):
    # The first stage (the entitlement's owner) is already approved; the two group approvers race
    # on the second and last stage, the one whose completion issues the grant.
    first, second = approvers_group
    for _ in range(ROUNDS):
        request = _pending_request(
            PersonFactory(), stages=({"approver": "entitlement_owner", "quorum": 1}, GROUP_STAGE)
        )
        access_request_decide(
            request_id=request.pk, approver=request.entitlement.owner.user, decision="approve", stage_position=1
        )
        request.refresh_from_db()
        assert request.status == RequestStatus.PENDING
        last = request.stages.get(position=2)
        assert last.status == StageStatus.PENDING and set(last.eligible.all()) >= {first, second}
        results = race(
            lambda r=request: access_request_decide(
                request_id=r.pk, approver=first, decision="approve", stage_position=2
            ),
            lambda r=request: access_request_decide(
                request_id=r.pk, approver=second, decision="approve", stage_position=2
            ),
        )
        winner, _ = one_winner_one_conflict(results)
        _assert_approved_once(request, stages=2)
        assert request.stages.get(position=2).approvals.get().approver == (first, second)[winner]
    assert verify_chain().ok


def test_approve_racing_cancel_has_one_consistent_outcome(approvers_group):
    first, _ = approvers_group
    for _ in range(ROUNDS):
        requester = PersonFactory()
        request = _pending_request(requester)
        results = race(
            lambda r=request: access_request_decide(request_id=r.pk, approver=first, decision="approve"),
            lambda r=request, u=requester.user: access_request_cancel(request_id=r.pk, actor=u),
        )
        winner, _ = one_winner_one_conflict(results)
        request.refresh_from_db()
        if winner == 0:  # the approval locked the request first; the cancel came too late
            _assert_approved_once(request, stages=1)
            assert "request.cancelled" not in actions(request)
        else:  # the cancel locked it first; the approval found it closed
            assert request.status == RequestStatus.CANCELLED and request.grant_id is None
            assert not request.approvals.exists()
            assert not Grant.objects.filter(source_request=request).exists()
            assert actions(request, "request.stage_approved", "request.approved", "request.cancelled") == [
                "request.cancelled"
            ]
    assert verify_chain().ok


def test_two_renewals_of_one_grant_make_one_request():
    for _ in range(ROUNDS):
        holder = PersonFactory()
        grant = GrantFactory(identity=holder, kind="jit", expires_at=timezone.now() + timedelta(hours=1))

        def renew(g=grant, h=holder):
            return access_request_submit(
                actor=h.user,
                beneficiary_id=h.pk,
                entitlement_id=g.entitlement_id,
                duration=timedelta(hours=1),
                justification="more time",
                renewal_of_id=g.pk,
            )

        results = race(renew, renew)
        winner, _ = one_winner_one_conflict(results)  # the loser: "already pending for this identity"
        made = results[winner]
        renewals = AccessRequest.objects.filter(renewal_of=grant)
        assert list(renewals.values_list("pk", "status")) == [(made.pk, RequestStatus.PENDING)]
        assert actions(made, "request.submitted") == ["request.submitted"]
        grant.refresh_from_db()
        assert grant.status == GrantStatus.ACTIVE  # asking for more time changes nothing yet
    assert verify_chain().ok


def test_sweep_racing_early_release_ends_the_grant_once():
    for _ in range(ROUNDS):
        holder = PersonFactory()
        grant = GrantFactory(identity=holder, kind="jit", expires_at=timezone.now() + timedelta(seconds=5))
        # The holder releases a grant in its last seconds while a sweep that sees it due runs:
        # whichever locks the row first ends it, the other passes over it (the sweep skips a
        # locked row) or gets a conflict (the release finds the grant already ending).
        sweep_clock = timezone.now() + timedelta(seconds=10)
        swept, released = race(
            lambda t=sweep_clock: grants_expire_due(now=t),
            lambda g=grant, h=holder: grant_release(grant_id=g.pk, actor=h.user),
        )
        assert not isinstance(swept, Exception), swept  # the sweep never fails, it skips
        grant.refresh_from_db()
        assert grant.status == GrantStatus.REVOKING
        trail = actions(grant, "grant.expiring", "grant.released", "grant.revoke_requested")
        if swept == 1:  # the sweep took it; the release found it ending
            assert isinstance(released, InvalidTransition), released
            assert grant.end_reason == "expired"
            assert trail == ["grant.expiring"], trail
        else:  # the release locked it first; the sweep passed over it
            assert swept == 0, swept
            assert isinstance(released, Grant) and released.pk == grant.pk, released
            assert grant.end_reason == "released"
            assert trail == ["grant.released", "grant.revoke_requested"], trail
        assert OutboxMessage.objects.filter(kind="connector.revoke", payload__grant_id=grant.pk).count() == 1
    assert verify_chain().ok


def test_two_sweeps_at_once_expire_each_grant_once():
    due = [GrantFactory(kind="jit", expires_at=timezone.now() - timedelta(minutes=1)) for _ in range(300)]
    results = race(
        lambda: grants_expire_due(batch_size=50),
        lambda: grants_expire_due(batch_size=50),
        lambda: grants_expire_due(batch_size=50),
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(results) == len(due)
    assert Grant.objects.filter(status=GrantStatus.REVOKING).count() == len(due)
    ids = {str(g.pk) for g in due}
    expiring = list(
        AuditEvent.objects.filter(action="grant.expiring", target_type="governance.grant").values_list(
            "target_id", flat=True
        )
    )
    assert len(expiring) == len(due) and set(expiring) == ids  # each grant exactly once
    revokes = list(OutboxMessage.objects.filter(kind="connector.revoke").values_list("payload__grant_id", flat=True))
    assert len(revokes) == len(due) and {str(pk) for pk in revokes} == ids
    assert verify_chain().ok


def while_a_decision_holds_its_locks(request, approver, other):
    """Start deciding `request`, pause right after its locks are taken, run `other` meanwhile."""
    return while_holding(
        lambda: _lock_request(request.pk),  # the decision's own first steps: its row locks
        lambda: access_request_decide(request_id=request.pk, approver=approver, decision="approve"),
        other,
    )


def test_offboarding_a_requester_while_their_machines_request_is_decided_does_not_deadlock(approvers_group, admin_user):
    # given Alice, who holds access, and her pending request for her machine, being decided
    first, _ = approvers_group
    alice = PersonFactory()
    GrantFactory(identity=alice)
    bot = MachineFactory(owner=alice)
    request = _request_for(alice, bot)

    # when Alice is offboarded meanwhile
    decided, offboarded = while_a_decision_holds_its_locks(
        request, first, lambda: identity_offboard(identity_id=alice.pk, actor=admin_user, reason="left")
    )

    # then both finish: the decision first, the offboarding after it
    assert not isinstance(decided, Exception), decided
    assert not isinstance(offboarded, Exception), offboarded
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    bot.refresh_from_db()
    assert bot.owner_id == alice.pk  # orphaned, flagged, not silently re-owned
    assert verify_chain().ok


def test_asking_for_an_entitlement_while_another_request_for_it_is_decided_does_not_deadlock(approvers_group):
    first, _ = approvers_group
    alice, bob = PersonFactory(), PersonFactory()
    request = _request_for(alice, alice)

    decided, submitted = while_a_decision_holds_its_locks(
        request, first, lambda: _request_for(bob, bob, entitlement_id=request.entitlement_id)
    )

    assert not isinstance(decided, Exception), decided
    assert not isinstance(submitted, Exception), submitted
    assert submitted.status == RequestStatus.PENDING
    assert verify_chain().ok


def test_an_automatically_approved_request_while_its_entitlement_is_edited_does_not_deadlock(admin_user):
    # given an entitlement machines get without asking, being edited (its locks taken)
    alice = PersonFactory()
    bot = MachineFactory(owner=alice)
    entitlement = EntitlementFactory(auto_approve_machines=True, approval_stages=[GROUP_STAGE])

    # when alice asks for it for her machine meanwhile
    edited, submitted = while_holding(
        lambda: lock_entitlement(entitlement.pk),  # as entitlement_update begins
        lambda: entitlement_update(
            entitlement_id=entitlement.pk, actor=admin_user, changes={"business_purpose": "Reworded"}
        ),
        lambda: _request_for(alice, bot, entitlement_id=entitlement.pk),
    )

    # then both happen, one after the other
    assert not isinstance(edited, Exception), edited
    assert not isinstance(submitted, Exception), submitted
    assert submitted.status == RequestStatus.APPROVED and submitted.grant_id is not None
    assert verify_chain().ok


def _request_for(requester, beneficiary, entitlement_id=None, **extra):
    return access_request_submit(
        actor=requester.user,
        beneficiary_id=beneficiary.pk,
        entitlement_id=entitlement_id or EntitlementFactory(approval_stages=[GROUP_STAGE]).pk,
        duration=timedelta(hours=1),
        justification="race",
        **extra,
    )


def test_the_sweep_closing_a_renewal_while_it_is_decided_does_not_deadlock(approvers_group, admin_user):
    # given a pending renewal of a grant an owner revoked, and a decision on it that has begun
    first, _ = approvers_group
    alice = PersonFactory()
    grant = GrantFactory(identity=alice, kind="jit", expires_at=timezone.now() + timedelta(hours=1))
    grant.entitlement.approval_stages = [GROUP_STAGE]
    grant.entitlement.save()
    renewal = _request_for(alice, alice, entitlement_id=grant.entitlement_id, renewal_of_id=grant.pk)
    grant_revoke(grant_id=grant.pk, actor=admin_user, reason="not needed")

    # when the sweep tidies renewals meanwhile
    decided, closed = while_holding(
        lambda: _lock_request(renewal.pk),  # a decision's first step: its row locks
        lambda: access_request_decide(request_id=renewal.pk, approver=first, decision="approve"),
        close_renewals_of_ended_grants,
    )

    # then one of them ends the renewal, and neither fails for a deadlock
    assert not isinstance(closed, Exception), closed
    assert not isinstance(decided, Exception) or isinstance(decided, DomainError), decided
    renewal.refresh_from_db()
    assert renewal.status in (RequestStatus.FAILED, RequestStatus.CANCELLED)
    assert verify_chain().ok


def test_decisions_on_requests_for_one_entitlement_do_not_queue_on_each_other(approvers_group):
    # given two people's requests for the same entitlement, and a decision on the first under way
    first, second = approvers_group
    alice, bob = PersonFactory(), PersonFactory()
    alices = _request_for(alice, alice)
    bobs = _request_for(bob, bob, entitlement_id=alices.entitlement_id)
    clock: dict[str, float] = {}

    def finish_alices():
        clock["alices_finish_starts"] = time.monotonic()
        return access_request_decide(request_id=alices.pk, approver=first, decision="approve")

    def decide_bobs():
        decided = access_request_decide(request_id=bobs.pk, approver=second, decision="approve")
        clock["bobs_done"] = time.monotonic()
        return decided

    # when the second decision comes while the first holds its locks (it holds the entitlement shared)
    alices_outcome, bobs_outcome = while_holding(lambda: _lock_request(alices.pk), finish_alices, decide_bobs)

    # then the second one went through without waiting for the first, and both granted
    assert not isinstance(alices_outcome, Exception), alices_outcome
    assert not isinstance(bobs_outcome, Exception), bobs_outcome
    assert clock["bobs_done"] < clock["alices_finish_starts"]
    assert set(AccessRequest.objects.filter(pk__in=[alices.pk, bobs.pk]).values_list("status", flat=True)) == {
        RequestStatus.APPROVED
    }
    assert Grant.objects.filter(entitlement_id=alices.entitlement_id).count() == 2
    assert verify_chain().ok
