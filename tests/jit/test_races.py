"""Races on PostgreSQL with real concurrent connections: each must end in exactly one outcome.

Each race is repeated so that a lucky interleaving cannot hide a missing lock.
"""

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent, OutboxMessage
from audit.verify import verify_chain
from governance.choices import GrantStatus
from governance.errors import DomainError
from governance.models import Grant
from jit.choices import RequestStatus
from jit.models import AccessRequest
from jit.services.approvals import access_request_decide
from jit.services.expiry import grants_expire_due
from jit.services.lifecycle import grant_release
from jit.services.requests import access_request_cancel, access_request_submit
from tests.factories.governance import EntitlementFactory, GrantFactory, PersonFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROUNDS = 8


def race(*calls):
    """Run the calls at the same moment, each on its own connection; return results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def winners(results) -> int:
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, DomainError)]
    assert not unexpected, unexpected
    return sum(not isinstance(r, Exception) for r in results)


@pytest.fixture
def approvers_group():
    first, second = PersonFactory().user, PersonFactory().user
    group = Group.objects.get(name="approver")
    first.groups.add(group)
    second.groups.add(group)
    return first, second


def _pending_request(requester):
    entitlement = EntitlementFactory(approval_stages=[{"approver": "group", "group": "approver", "quorum": 1}])
    return access_request_submit(
        actor=requester.user,
        beneficiary_id=requester.pk,
        entitlement_id=entitlement.pk,
        duration=timedelta(hours=1),
        justification="race",
    )


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
        assert winners(results) == 1
        request.refresh_from_db()
        assert request.status == RequestStatus.APPROVED and request.approvals.count() == 1
        assert Grant.objects.filter(source_request=request).count() == 1
        assert AuditEvent.objects.for_target(request).filter(action="request.approved").count() == 1
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
        assert winners(results) == 1
        request.refresh_from_db()
        if request.status == RequestStatus.APPROVED:
            assert request.grant_id is not None
        else:
            assert request.status == RequestStatus.CANCELLED and request.grant_id is None
            assert not request.approvals.exists()


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

        assert winners(race(renew, renew)) == 1
        assert AccessRequest.objects.filter(renewal_of=grant, status=RequestStatus.PENDING).count() == 1


def test_sweep_racing_early_release_ends_the_grant_once():
    outcomes: set[str] = set()
    for _ in range(ROUNDS):
        holder = PersonFactory()
        grant = GrantFactory(identity=holder, kind="jit", expires_at=timezone.now() + timedelta(seconds=5))
        # The holder releases a grant in its last seconds while a sweep that sees it due runs:
        # whichever locks the row first ends it, the other passes over it or gets a conflict.
        sweep_clock = timezone.now() + timedelta(seconds=10)
        results = race(
            lambda t=sweep_clock: grants_expire_due(now=t),
            lambda g=grant, h=holder: grant_release(grant_id=g.pk, actor=h.user),
        )
        grant.refresh_from_db()
        assert grant.status == GrantStatus.REVOKING
        ended = AuditEvent.objects.filter(
            target_id=str(grant.pk), action__in=["grant.expiring", "grant.revoke_requested"]
        )
        assert ended.count() == 1, results
        assert OutboxMessage.objects.filter(kind="connector.revoke", payload__grant_id=grant.pk).count() == 1
        outcomes.add(ended.get().action)
    # both orders happened over the rounds, or at least the race was real for one of them
    assert outcomes <= {"grant.expiring", "grant.revoke_requested"}


def test_two_sweeps_at_once_expire_each_grant_once():
    due = [GrantFactory(kind="jit", expires_at=timezone.now() - timedelta(minutes=1)) for _ in range(300)]
    results = race(
        lambda: grants_expire_due(batch_size=50),
        lambda: grants_expire_due(batch_size=50),
        lambda: grants_expire_due(batch_size=50),
    )
    assert sum(results) == len(due)
    assert Grant.objects.filter(status=GrantStatus.REVOKING).count() == len(due)
    assert AuditEvent.objects.filter(action="grant.expiring").count() == len(due)
    assert OutboxMessage.objects.filter(kind="connector.revoke").count() == len(due)
    assert verify_chain().ok
