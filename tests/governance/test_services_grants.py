from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from audit.models import OutboxMessage
from audit.outbox import outbox_dispatch
from governance.choices import GrantStatus
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import Notification
from governance.services.catalogue import entitlement_retire, system_retire
from governance.services.grants import (
    grant_confirm_provisioned,
    grant_confirm_revoked,
    grant_create,
    grant_revoke,
    grant_revoke_failed,
)
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db


def test_grant_is_pending_until_the_system_owner_confirms_and_its_clock_starts_then():
    # given
    entitlement = EntitlementFactory()
    machine = MachineFactory()
    grant = grant_create(
        actor=entitlement.owner.user, identity=machine, entitlement=entitlement, kind="jit", duration=timedelta(hours=2)
    )
    assert grant.status == GrantStatus.PENDING_PROVISION and grant.expires_at is None
    # when: the manual connector asks the system owner
    outbox_dispatch()
    assert Notification.objects.filter(
        recipient=entitlement.system.owner.user, kind="grant.provision_requested"
    ).exists()
    # and the owner confirms an hour later
    later = timezone.now() + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        grant = grant_confirm_provisioned(grant_id=grant.pk, actor=entitlement.system.owner.user)
    # then
    assert grant.status == GrantStatus.ACTIVE
    assert grant.expires_at == later + timedelta(hours=2)


def test_only_the_system_owner_confirms():
    grant = GrantFactory(status=GrantStatus.PENDING_PROVISION)
    with pytest.raises(PermissionRefused):
        grant_confirm_provisioned(grant_id=grant.pk, actor=PersonFactory().user)


def test_revocation_is_intent_until_the_target_confirms():
    grant = GrantFactory()
    grant_revoke(grant_id=grant.pk, actor=None, reason="no longer needed")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING
    assert OutboxMessage.objects.filter(kind="connector.revoke").count() == 1
    grant_confirm_revoked(grant_id=grant.pk, actor=None)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED and grant.revoked_at is not None


def test_revoking_twice_asks_the_target_once():
    grant = GrantFactory()
    grant_revoke(grant_id=grant.pk, actor=None, reason="x")
    grant_revoke(grant_id=grant.pk, actor=None, reason="x")
    assert OutboxMessage.objects.filter(kind="connector.revoke").count() == 1


def test_a_refused_revocation_stays_visible_as_failed():
    grant = GrantFactory()
    grant_revoke(grant_id=grant.pk, actor=None, reason="x")
    grant_revoke_failed(grant_id=grant.pk, actor=None, error="target said no")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKE_FAILED and "target said no" in grant.last_error


def test_confirming_a_revoked_grant_as_provisioned_is_a_conflict():
    grant = GrantFactory(status=GrantStatus.REVOKED)
    with pytest.raises(InvalidTransition):
        grant_confirm_provisioned(grant_id=grant.pk, actor=None)


def test_a_second_live_grant_is_refused():
    grant = GrantFactory()
    with pytest.raises(InvalidTransition, match="already holds"):
        grant_create(actor=None, identity=grant.identity, entitlement=grant.entitlement)


def test_retiring_an_entitlement_revokes_live_grants_and_refuses_new_ones():
    grant = GrantFactory()
    entitlement_retire(entitlement_id=grant.entitlement_id, actor=None, reason="replaced")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING and grant.end_reason == "retired"
    with pytest.raises(ValidationFailed, match="retired"):
        grant_create(actor=None, identity=MachineFactory(), entitlement=grant.entitlement)


def test_recreating_a_retired_system_revives_nothing():
    from governance.services.catalogue import system_create

    grant = GrantFactory()
    system = grant.entitlement.system
    system_retire(system_id=system.pk, actor=None, reason="decommissioned")
    fresh = system_create(actor=None, name=system.name, owner=PersonFactory())
    assert fresh.pk != system.pk and fresh.entitlements.count() == 0
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING
