"""Identity lifecycle: create, edit, change owner, suspend, reactivate, offboard."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import ActorLike, audit_event_record, state_change

from .. import policies
from ..choices import IdentityKind, IdentityStatus
from ..errors import InvalidTransition, PermissionRefused, ValidationFailed
from ..locks import lock, lock_ids, lock_many
from ..models import Identity
from .certification_schedules import micro_review_identity_moved, micro_review_owner_changed
from .common import check, diff, full_clean_or_fail, snapshot
from .credentials import api_tokens_kill
from .delegation import drop_delegates
from .external_ids import refuse_reserved_external_id
from .federation import workload_trusts_end
from .findings import findings_recheck_on_commit

# What may be edited and what the audit trail records of an identity (never credentials themselves).
EDITABLE_FIELDS = [
    "name",
    "email",
    "team",
    "description",
    "manager",
    "last_used_at",
    "credential_type",
    "secret_location",
    "last_rotated_at",
    "rotation_period_days",
    "may_self_request",
    "external_id",
]
AUDITED_FIELDS = ["kind", "status", "owner", "backup_owner", *EDITABLE_FIELDS]
# Usage is a fact the systems report (imports, connectors) or an admin corrects: an owner who could
# type it in could silence the stale finding that asks them to act.
USAGE_FIELDS = ["last_used_at"]
USAGE_MESSAGE = "When it was last used comes from the systems (imports, connectors) or an admin."


def _refuse_usage_edits(actor: ActorLike, names: set[str]) -> None:
    if names & set(USAGE_FIELDS):
        try:
            check(actor, lambda user, _obj: policies.is_admin(user), None, USAGE_MESSAGE)
        except PermissionRefused:
            errors = {name: [USAGE_MESSAGE] for name in names & set(USAGE_FIELDS)}
            raise ValidationFailed(USAGE_MESSAGE, field_errors=errors) from None


# Later layers (jit) register what else offboarding must close, e.g. pending requests.
OffboardingHook = Callable[[Identity, ActorLike], dict[str, Any]]
OFFBOARDING_HOOKS: list[OffboardingHook] = []


def _validate_owner(identity: Identity, owner: Identity | None, role: str = "owner") -> None:
    if owner is None:
        return
    if owner.pk is not None and owner.pk == identity.pk:
        raise ValidationFailed(f"An identity cannot be its own {role}.", field_errors={role: ["Cannot be itself."]})
    # One answer for a machine, a person who left, and (in the API) an unknown id: it names nobody,
    # so asking cannot tell a caller which identities exist.
    if owner.kind != IdentityKind.HUMAN or owner.status != IdentityStatus.ACTIVE:
        message = f"The {role.replace('_', ' ')} must be an active person."
        raise ValidationFailed(message, field_errors={role: ["Must be an active person."]})


def _validate(identity: Identity, *, manager_changed: bool = False) -> None:
    """Check an identity before it is saved; the manager only when it is being set (one who left stays valid)."""
    if identity.kind != IdentityKind.HUMAN and identity.owner_id is None:
        raise ValidationFailed(
            "A non-human identity needs an owner.", field_errors={"owner": ["Required for non-human identities."]}
        )
    if identity.kind == IdentityKind.HUMAN:
        for role in ("owner", "backup_owner"):
            if getattr(identity, f"{role}_id") is not None:
                raise ValidationFailed(
                    f"A person has no {role.replace('_', ' ')}; their manager answers for them.",
                    field_errors={role: ["A human identity has no owner."]},
                )
    _validate_owner(identity, identity.owner)
    _validate_owner(identity, identity.backup_owner, "backup_owner")
    if identity.backup_owner_id is not None and identity.backup_owner_id == identity.owner_id:
        # The backup steps in when the owner leaves: the owner as their own backup is no backup at all.
        raise ValidationFailed(
            "The owner cannot be their own backup owner.",
            field_errors={"backup_owner": ["Cannot be the owner: name someone else, or nobody."]},
        )
    if manager_changed:
        _validate_owner(identity, identity.manager, "manager")
    if identity.kind == IdentityKind.HUMAN and (identity.credential_type or identity.may_self_request):
        identity.credential_type, identity.may_self_request = "", False
    full_clean_or_fail(identity, exclude=["owner", "backup_owner", "manager", "user"])


@state_change
def identity_create(
    *, actor: ActorLike, kind: str, name: str, owner: Identity | None = None, **fields: Any
) -> Identity:
    """Add an identity to the inventory.

    A non-human one must name an active human owner; a person has no owner, and only admins register
    people. A manager, when given, must be an active person.
    """
    if kind not in IdentityKind.values:
        raise ValidationFailed(f"Unknown identity kind {kind!r}.", field_errors={"kind": ["Unknown kind."]})
    _refuse_usage_edits(actor, {name for name, value in fields.items() if value is not None})
    refuse_reserved_external_id(fields.get("external_id"))
    identity = Identity(kind=kind, name=name, owner=owner, **fields)
    _validate(identity, manager_changed=True)  # bad input is reported as such before the permission question
    check(actor, policies.can_register_identity, identity, "You may only register identities that you will own.")
    identity.save()
    audit_event_record(
        actor=actor,
        action=AuditAction.IDENTITY_CREATED,
        target=identity,
        data={"after": snapshot(identity, AUDITED_FIELDS)},
    )
    return identity


@state_change
def identity_update(*, identity_id: int, actor: ActorLike, changes: dict[str, Any]) -> Identity:
    """Edit the descriptive and credential facts of an identity (not its owner or status)."""
    identity = lock(Identity, identity_id)
    check(actor, policies.can_edit_identity, identity, "Only the identity's owner or an admin may edit it.")
    if identity.status == IdentityStatus.OFFBOARDED:
        raise InvalidTransition(f"{identity} is offboarded; its record stays as it was when it left.")
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationFailed(f"These fields cannot be edited here: {', '.join(sorted(unknown))}.")
    if "external_id" in changes:
        refuse_reserved_external_id(changes["external_id"], current=identity.external_id)
    # A usage time sent back unchanged is no edit of it.
    _refuse_usage_edits(actor, {name for name in changes if changes[name] != getattr(identity, name)})
    before = snapshot(identity, AUDITED_FIELDS)
    for name, value in changes.items():
        setattr(identity, name, value)
    _validate(identity, manager_changed=identity.manager_id != before["manager"])
    change = diff(before, snapshot(identity, AUDITED_FIELDS))
    if not change["after"]:
        return identity
    identity.save()
    audit_event_record(actor=actor, action=AuditAction.IDENTITY_UPDATED, target=identity, data=change)
    micro_review_identity_moved(identity, change)  # a move opens a review of the access held
    findings_recheck_on_commit([identity.pk])  # e.g. a rotation recorded closes its finding at once
    return identity


@state_change
def identity_change_owner(
    *,
    identity_id: int,
    actor: ActorLike,
    owner: Identity | None,
    backup_owner: Identity | None = None,
    reason: str = "",
) -> Identity:
    """Hand an identity to a new (active, human) owner and backup owner."""
    identity = lock(Identity, identity_id)
    check(actor, policies.can_manage_identity, identity, "Only the identity's owner or an admin may change its owner.")
    if identity.status == IdentityStatus.OFFBOARDED:
        raise InvalidTransition(f"{identity} is offboarded.")
    before = snapshot(identity, ["owner", "backup_owner"])
    identity.owner, identity.backup_owner = owner, backup_owner
    _validate(identity)
    change = diff(before, snapshot(identity, ["owner", "backup_owner"]))
    if not change["after"]:
        return identity
    identity.save(update_fields=["owner", "backup_owner", "updated_at"])
    # Delegates were chosen by the old owners: the new ones start with none.
    drop_delegates(identity, actor=actor, reason="owner changed")
    audit_event_record(
        actor=actor, action=AuditAction.IDENTITY_OWNER_CHANGED, target=identity, data={**change, "reason": reason}
    )
    micro_review_owner_changed(identity, change)  # the new owner attests the access is still needed
    findings_recheck_on_commit([identity.pk])  # an orphan with an owner again closes its finding at once
    return identity


@state_change
def identity_suspend(*, identity_id: int, actor: ActorLike, reason: str) -> Identity:
    """Stop an identity from being used or requesting, and take away the access it holds.

    A suspension is what an owner does when a key leaks or a person is under investigation, so its
    grants stop being in force in this same transaction and their revocation goes to each target's
    connector. Reactivating restores none of them: access comes back only through new requests.
    A suspended person's login stops working too: nobody keeps the owner's or approver's powers.
    """
    from .grants import grants_revoke_many

    identity = lock(Identity, identity_id)
    check(actor, policies.can_edit_identity, identity, "Only the identity's owner or an admin may suspend it.")
    if identity.status != IdentityStatus.ACTIVE:
        raise InvalidTransition(f"{identity} is {identity.get_status_display().lower()}, not active.")
    revoked = grants_revoke_many(
        grant_ids=identity.grants.live().values_list("pk", flat=True),
        actor=actor,
        reason=f"Suspended: {reason}",
        end_reason="suspended",
    )
    api_tokens_kill(identity, actor=actor, reason=f"Suspended: {reason}")
    workload_trusts_end(identity, actor=actor, reason=f"Suspended: {reason}")
    return _move_status(
        identity, IdentityStatus.SUSPENDED, actor, AuditAction.IDENTITY_SUSPENDED, reason, grants_revoked=revoked
    )


def _set_login_active(identity: Identity, active: bool) -> bool:
    """Turn a person's login on or off with their status; True when there was one to change."""
    if identity.user_id is None:
        return False
    type(identity.user).objects.filter(pk=identity.user_id).update(is_active=active)
    return True


@state_change
def identity_reactivate(*, identity_id: int, actor: ActorLike, reason: str = "") -> Identity:
    identity = lock(Identity, identity_id)
    check(actor, policies.can_edit_identity, identity, "Only the identity's owner or an admin may reactivate it.")
    if identity.status != IdentityStatus.SUSPENDED:
        raise InvalidTransition(f"Only a suspended identity can be reactivated; {identity} is {identity.status}.")
    return _move_status(identity, IdentityStatus.ACTIVE, actor, AuditAction.IDENTITY_REACTIVATED, reason)


def _move_status(identity: Identity, status: str, actor: ActorLike, action: str, reason: str, **data: Any) -> Identity:
    """Change a locked identity's status, its login with it, and audit both together."""
    findings_recheck_on_commit([identity.pk])
    identity.status = status
    identity.save(update_fields=["status", "updated_at"])
    active = status == IdentityStatus.ACTIVE
    login_changed = _set_login_active(identity, active)
    login_key = "login_enabled" if active else "login_disabled"
    audit_event_record(
        actor=actor, action=action, target=identity, data={"reason": reason, login_key: login_changed, **data}
    )
    return identity


@dataclass
class OffboardingResult:
    identity: Identity
    grants_revoked: list[int] = field(default_factory=list)
    transferred: list[int] = field(default_factory=list)
    orphaned: list[int] = field(default_factory=list)
    hooks: dict[str, Any] = field(default_factory=dict)


@state_change
def identity_offboard(*, identity_id: int, actor: ActorLike, reason: str) -> OffboardingResult:
    """Remove an identity from the organisation in one transaction.

    Revokes all its live grants, suspends its credentials record and its login, runs the
    registered hooks (jit closes pending requests), and for each non-human identity it owned
    moves ownership to that identity's backup owner or flags it orphaned.
    """
    from .grants import grants_revoke_many

    identity = lock(Identity, identity_id)
    check(actor, policies.can_manage_identity, identity, "Only the identity's owner or an admin may offboard it.")
    if identity.status == IdentityStatus.OFFBOARDED:
        raise InvalidTransition(f"{identity} is already offboarded.")
    now = clock.database_now()
    previous_status = identity.status
    identity.status = IdentityStatus.OFFBOARDED
    if identity.credential_type:
        identity.credentials_suspended_at = now
    identity.save(update_fields=["status", "credentials_suspended_at", "updated_at"])
    _set_login_active(identity, False)
    api_tokens_kill(identity, actor=actor, reason=f"Offboarded: {reason}")
    workload_trusts_end(identity, actor=actor, reason=f"Offboarded: {reason}")
    result = OffboardingResult(identity=identity)
    # The lock order (governance.locks): identities (the ones it owns or backs), then requests
    # (the hooks), then grants (set-based, with one audit batch).
    owned = lock_many(Identity.objects.filter(owner=identity).exclude(status=IdentityStatus.OFFBOARDED))
    # Their backup owners too, read again under the lock: one being offboarded at the same moment
    # is seen as offboarded (the identity is then orphaned, flagged), never handed to a leaver.
    backups = {
        backup.pk: backup
        for backup in lock_many(Identity.objects.all(), {c.backup_owner_id for c in owned if c.backup_owner_id})
    }
    lock_ids(Identity, Identity.objects.filter(backup_owner=identity).values_list("pk", flat=True))
    for hook in OFFBOARDING_HOOKS:
        result.hooks[hook.__name__] = hook(identity, actor)
    result.grants_revoked = grants_revoke_many(
        grant_ids=identity.grants.live().values_list("pk", flat=True),
        actor=actor,
        reason=f"Offboarded: {reason}",
        end_reason="offboarded",
    )
    for child in owned:
        backup = backups.get(child.backup_owner_id)
        if backup is not None and backup.status == IdentityStatus.ACTIVE and backup.pk != identity.pk:
            child.owner, child.backup_owner = backup, None
            child.save(update_fields=["owner", "backup_owner", "updated_at"])
            drop_delegates(child, actor=actor, reason="owner offboarded")
            audit_event_record(
                actor=actor,
                action=AuditAction.IDENTITY_OWNER_CHANGED,
                target=child,
                data={"before": {"owner": identity.pk}, "after": {"owner": backup.pk}, "reason": "owner offboarded"},
            )
            result.transferred.append(child.pk)
        else:
            audit_event_record(
                actor=actor,
                action=AuditAction.IDENTITY_ORPHANED,
                target=child,
                data={"former_owner": identity.pk, "reason": "owner offboarded and no active backup owner"},
            )
            result.orphaned.append(child.pk)
    backed_list = list(Identity.objects.filter(backup_owner=identity).order_by("pk"))  # locked above
    for backed in backed_list:
        backed.backup_owner = None
        backed.save(update_fields=["backup_owner", "updated_at"])
        audit_event_record(
            actor=actor,
            action=AuditAction.IDENTITY_OWNER_CHANGED,
            target=backed,
            data={"before": {"backup_owner": identity.pk}, "after": {"backup_owner": None}, "reason": "offboarded"},
        )
    audit_event_record(
        actor=actor,
        action=AuditAction.IDENTITY_OFFBOARDED,
        target=identity,
        data={
            "reason": reason,
            "before": {"status": previous_status},
            "grants_revoked": result.grants_revoked,
            "ownership_transferred": result.transferred,
            "orphaned": result.orphaned,
        },
    )
    # Its own findings close; the machines it owned or backed are orphaned or handed over.
    findings_recheck_on_commit([identity.pk, *(child.pk for child in owned), *(b.pk for b in backed_list)])
    return result
