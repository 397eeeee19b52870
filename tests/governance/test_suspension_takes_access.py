"""Suspending an identity takes its access away at once and for good: reactivating restores none of it."""

import pytest

from audit.models import AuditEvent, OutboxMessage
from governance.choices import GrantKind, GrantStatus, IdentityStatus
from governance.models import Grant
from governance.services.identities import identity_reactivate, identity_suspend
from tests.factories.governance import GrantFactory, MachineFactory

pytestmark = pytest.mark.django_db


def test_a_suspended_identitys_grants_stop_being_in_force_in_the_same_transaction():
    machine = MachineFactory()
    standing = GrantFactory(identity=machine)
    jit = GrantFactory(identity=machine, kind=GrantKind.JIT)

    identity_suspend(identity_id=machine.pk, actor=machine.owner.user, reason="key leaked")

    assert not Grant.objects.in_force().filter(identity=machine).exists()
    for grant in (standing, jit):
        grant.refresh_from_db()
        assert grant.status == GrantStatus.REVOKING
        assert grant.end_reason == "suspended"


def test_the_target_is_asked_to_remove_each_grant_through_its_connector():
    machine = MachineFactory()
    grants = [GrantFactory(identity=machine), GrantFactory(identity=machine)]

    identity_suspend(identity_id=machine.pk, actor=None, reason="investigation")

    revokes = OutboxMessage.objects.filter(kind="connector.revoke")
    assert sorted(m.payload["grant_id"] for m in revokes) == sorted(g.pk for g in grants)


def test_the_suspension_event_names_the_grants_it_took_away():
    machine = MachineFactory()
    grant = GrantFactory(identity=machine)

    identity_suspend(identity_id=machine.pk, actor=None, reason="investigation")

    event = AuditEvent.objects.for_target(machine).get(action="identity.suspended")
    assert event.data["grants_revoked"] == [grant.pk]


def test_reactivating_does_not_bring_the_access_back():
    machine = MachineFactory()
    GrantFactory(identity=machine)
    identity_suspend(identity_id=machine.pk, actor=None, reason="investigation")

    identity_reactivate(identity_id=machine.pk, actor=None, reason="cleared")

    machine.refresh_from_db()
    assert machine.status == IdentityStatus.ACTIVE
    assert not Grant.objects.in_force().filter(identity=machine).exists()
    assert not Grant.objects.live().filter(identity=machine, status=GrantStatus.ACTIVE).exists()
