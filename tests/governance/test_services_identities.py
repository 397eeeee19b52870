import pytest
from django.db import IntegrityError, transaction

from audit.models import AuditEvent
from governance.choices import GrantStatus, IdentityKind, IdentityStatus
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import Grant, Identity
from governance.services.identities import (
    identity_change_owner,
    identity_create,
    identity_offboard,
    identity_suspend,
    identity_update,
)
from tests.factories.governance import GrantFactory, MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db


def actions_for(obj) -> list[str]:
    return list(AuditEvent.objects.for_target(obj).order_by("seq").values_list("action", flat=True))


#
# Constraints the database itself enforces
#
def test_database_refuses_a_non_human_identity_without_owner():
    with pytest.raises(IntegrityError), transaction.atomic():
        Identity.objects.create(kind=IdentityKind.API_KEY, name="orphan-key")


def test_database_refuses_two_live_grants_for_one_identity_and_entitlement():
    grant = GrantFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        GrantFactory(identity=grant.identity, entitlement=grant.entitlement, status=GrantStatus.PENDING_PROVISION)


def test_ended_grants_do_not_block_a_new_one():
    grant = GrantFactory(status=GrantStatus.REVOKED)
    GrantFactory(identity=grant.identity, entitlement=grant.entitlement)
    assert Grant.objects.filter(identity=grant.identity).count() == 2


def test_database_refuses_a_jit_grant_without_expiry():
    with pytest.raises(IntegrityError), transaction.atomic():
        GrantFactory(kind="jit", expires_at=None)


#
# Services
#
def test_owner_registers_a_machine_identity_they_own(make_user):
    owner = PersonFactory()
    identity = identity_create(actor=owner.user, kind="api_key", name="billing-key", owner=owner)
    assert identity.owner == owner
    assert actions_for(identity) == ["identity.created"]


def test_someone_cannot_register_an_identity_for_another_owner():
    owner, stranger = PersonFactory(), PersonFactory()
    with pytest.raises(PermissionRefused):
        identity_create(actor=stranger.user, kind="api_key", name="x", owner=owner)
    assert not Identity.objects.filter(name="x").exists()


def test_owner_must_be_an_active_person():
    admin_actor = None  # the system actor: permission is not the question here
    machine = MachineFactory()
    with pytest.raises(ValidationFailed, match="must be an active person"):
        identity_create(actor=admin_actor, kind="workload", name="w", owner=machine)
    gone = PersonFactory(name="Secret Bob", status=IdentityStatus.OFFBOARDED)
    with pytest.raises(ValidationFailed, match="must be an active person") as refused:
        identity_create(actor=admin_actor, kind="workload", name="w", owner=gone)
    assert "Secret Bob" not in refused.value.message  # the answer names nobody


def test_update_records_before_and_after_of_changed_fields_only():
    machine = MachineFactory(team="Payments")
    identity_update(identity_id=machine.pk, actor=machine.owner.user, changes={"team": "Data", "name": machine.name})
    event = AuditEvent.objects.get(action="identity.updated")
    assert event.data == {"before": {"team": "Payments"}, "after": {"team": "Data"}}


def test_a_stranger_cannot_edit_or_offboard_what_they_do_not_own():
    machine, stranger = MachineFactory(), PersonFactory()
    with pytest.raises(PermissionRefused):
        identity_update(identity_id=machine.pk, actor=stranger.user, changes={"team": "x"})
    with pytest.raises(PermissionRefused):
        identity_offboard(identity_id=machine.pk, actor=stranger.user, reason="x")
    machine.refresh_from_db()
    assert machine.status == IdentityStatus.ACTIVE and machine.team != "x"


def test_change_owner_is_audited_with_reason():
    machine, new_owner = MachineFactory(), PersonFactory()
    identity_change_owner(identity_id=machine.pk, actor=machine.owner.user, owner=new_owner, reason="team move")
    event = AuditEvent.objects.get(action="identity.owner_changed")
    assert event.data["after"] == {"owner": new_owner.pk} and event.data["reason"] == "team move"


def test_suspending_twice_is_a_conflict():
    machine = MachineFactory()
    identity_suspend(identity_id=machine.pk, actor=None, reason="leak")
    with pytest.raises(InvalidTransition):
        identity_suspend(identity_id=machine.pk, actor=None, reason="leak")


#
# Offboarding
#
def test_offboarding_revokes_grants_transfers_or_orphans_owned_identities_in_one_step():
    # given: a leaver with a login, a grant, and three machine identities
    leaver, backup = PersonFactory(), PersonFactory()
    with_backup = MachineFactory(owner=leaver, backup_owner=backup)
    without_backup = MachineFactory(owner=leaver)
    backup_gone = MachineFactory(owner=leaver, backup_owner=PersonFactory(status=IdentityStatus.OFFBOARDED))
    grant = GrantFactory(identity=leaver)
    key = MachineFactory(owner=leaver, credential_type="static_secret")
    # when
    result = identity_offboard(identity_id=leaver.pk, actor=None, reason="left the company")
    # then
    leaver.refresh_from_db()
    leaver.user.refresh_from_db()
    assert leaver.status == IdentityStatus.OFFBOARDED and not leaver.user.is_active
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING and grant.end_reason == "offboarded"
    with_backup.refresh_from_db()
    assert with_backup.owner == backup and with_backup.backup_owner is None
    assert set(result.orphaned) == {without_backup.pk, backup_gone.pk, key.pk}
    assert result.transferred == [with_backup.pk]
    assert actions_for(without_backup) == ["identity.orphaned"]
    offboarded = AuditEvent.objects.get(action="identity.offboarded")
    assert offboarded.data["grants_revoked"] == [grant.pk]


def test_offboarding_suspends_the_credentials_record():
    machine = MachineFactory(credential_type="static_secret")
    identity_offboard(identity_id=machine.pk, actor=machine.owner.user, reason="decommissioned")
    machine.refresh_from_db()
    assert machine.credentials_suspended_at is not None


def test_offboarding_twice_is_a_conflict_and_changes_nothing():
    person = PersonFactory()
    identity_offboard(identity_id=person.pk, actor=None, reason="left")
    count = AuditEvent.objects.count()
    with pytest.raises(InvalidTransition):
        identity_offboard(identity_id=person.pk, actor=None, reason="left")
    assert AuditEvent.objects.count() == count


def test_offboarding_rolls_back_entirely_when_a_step_fails(monkeypatch):
    from governance.services import identities

    leaver = PersonFactory()
    grant = GrantFactory(identity=leaver)

    def broken_hook(identity, actor):
        raise RuntimeError("downstream failure")

    monkeypatch.setattr(identities, "OFFBOARDING_HOOKS", [broken_hook])
    with pytest.raises(RuntimeError):
        identity_offboard(identity_id=leaver.pk, actor=None, reason="left")
    leaver.refresh_from_db()
    grant.refresh_from_db()
    assert leaver.status == IdentityStatus.ACTIVE and grant.status == GrantStatus.ACTIVE
    assert not AuditEvent.objects.exists()
