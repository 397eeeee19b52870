"""Set-based revocation: retirement and offboarding revoke thousands of grants in a few statements."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent, OutboxMessage
from audit.outbox import outbox_dispatch
from audit.verify import verify_chain
from governance.choices import GrantStatus
from governance.locks import lock_ids
from governance.models import Grant
from governance.services.catalogue import entitlement_retire
from governance.services.grants import grant_confirm_revoked, grants_revoke_many
from governance.services.identities import identity_offboard
from jit.services.expiry import grants_expire_due
from tests.concurrency import while_holding
from tests.factories.governance import EntitlementFactory, GrantFactory, PersonFactory

pytestmark = pytest.mark.django_db


def events(action: str) -> list[str]:
    return sorted(AuditEvent.objects.filter(action=action).values_list("target_id", flat=True))


def test_each_status_moves_as_a_single_revocation_would(admin_user):
    # given one grant in each state
    active = GrantFactory()
    pending = GrantFactory(status=GrantStatus.PENDING_PROVISION)
    never_provisioned = GrantFactory(status=GrantStatus.PROVISION_FAILED)
    failed_removal = GrantFactory(status=GrantStatus.REVOKE_FAILED)
    ending = GrantFactory(status=GrantStatus.REVOKING)
    ended = GrantFactory(status=GrantStatus.EXPIRED)
    everything = [active, pending, never_provisioned, failed_removal, ending, ended]

    # when they are revoked together
    changed = grants_revoke_many(
        grant_ids=[g.pk for g in everything], actor=admin_user, reason="cleanup", end_reason="retired"
    )

    # then access that may exist is asked to go, access never provisioned is simply revoked,
    # and what was already ending or ended is left alone
    assert sorted(changed) == sorted(g.pk for g in (active, pending, never_provisioned, failed_removal))
    status = dict(Grant.objects.values_list("pk", "status"))
    assert [status[g.pk] for g in everything] == [
        GrantStatus.REVOKING,
        GrantStatus.REVOKING,
        GrantStatus.REVOKED,
        GrantStatus.REVOKING,
        GrantStatus.REVOKING,
        GrantStatus.EXPIRED,
    ]
    asked = sorted(str(g.pk) for g in (active, pending, failed_removal))
    assert events("grant.revoke_requested") == asked
    assert events("grant.revoked") == [str(never_provisioned.pk)]
    revokes = OutboxMessage.objects.filter(kind="connector.revoke")
    assert sorted(str(pk) for pk in revokes.values_list("payload__grant_id", flat=True)) == asked
    revoked = Grant.objects.get(pk=active.pk)
    assert (revoked.end_reason, revoked.revoked_by_id) == ("retired", admin_user.pk)
    assert revoked.history.first().status == GrantStatus.REVOKING  # its history has the change
    assert verify_chain().ok


def test_asking_twice_changes_nothing_the_second_time(admin_user):
    grants = [GrantFactory() for _ in range(3)]
    ids = [g.pk for g in grants]
    grants_revoke_many(grant_ids=ids, actor=admin_user, reason="x", end_reason="retired")

    assert grants_revoke_many(grant_ids=ids, actor=admin_user, reason="x", end_reason="retired") == []
    assert OutboxMessage.objects.filter(kind="connector.revoke").count() == 3
    assert len(events("grant.revoke_requested")) == 3


def test_the_connector_confirms_each_removal_as_usual(admin_user):
    grant = GrantFactory()
    grants_revoke_many(grant_ids=[grant.pk], actor=admin_user, reason="x", end_reason="retired")
    outbox_dispatch()  # the manual connector asks the system owner
    grant_confirm_revoked(grant_id=grant.pk, actor=grant.entitlement.system.owner.user)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED


@pytest.mark.postgres  # SQLite splits bulk inserts by its limit on parameters
def test_retirement_costs_the_same_queries_for_ten_grants_as_for_two_hundred(admin_user, count_queries):
    def retire(holders: int) -> int:
        entitlement = EntitlementFactory()
        for _ in range(holders):
            GrantFactory(entitlement=entitlement)
        return count_queries(lambda: entitlement_retire(entitlement_id=entitlement.pk, actor=admin_user, reason="gone"))

    assert retire(200) == retire(10)
    assert Grant.objects.filter(status=GrantStatus.REVOKING).count() == 210


def test_offboarding_revokes_every_live_grant_at_once(admin_user):
    person = PersonFactory()
    grants = [GrantFactory(identity=person) for _ in range(5)]

    result = identity_offboard(identity_id=person.pk, actor=admin_user, reason="left")

    assert sorted(result.grants_revoked) == sorted(g.pk for g in grants)
    assert set(Grant.objects.filter(identity=person).values_list("status", "end_reason")) == {
        (GrantStatus.REVOKING, "offboarded")
    }
    assert verify_chain().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_sweep_skips_a_grant_another_transaction_holds_and_takes_it_next_time():
    # given two due grants, one of them locked by someone else's transaction
    past = timezone.now() - timedelta(minutes=1)
    held, free = GrantFactory(kind="jit", expires_at=past), GrantFactory(kind="jit", expires_at=past)

    def sweep_meanwhile():
        swept = grants_expire_due()
        return swept, dict(Grant.objects.filter(pk__in=[held.pk, free.pk]).values_list("pk", "status"))

    # when the sweep runs meanwhile, it does not wait: it passes over the held row
    _, outcome = while_holding(lambda: lock_ids(Grant, [held.pk]), lambda: None, sweep_meanwhile)
    assert not isinstance(outcome, Exception), outcome
    assert outcome == (1, {free.pk: GrantStatus.REVOKING, held.pk: GrantStatus.ACTIVE})

    # then the next sweep takes it
    assert grants_expire_due() == 1
    assert Grant.objects.get(pk=held.pk).status == GrantStatus.REVOKING
    assert verify_chain().ok
