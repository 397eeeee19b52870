"""An identity's owners may let a colleague keep it true (edit its facts, suspend it) without owning it.

The delegation is a django-guardian object permission, so `user.has_perm(perm, identity)` answers
it everywhere; handing the identity over, offboarding it and naming delegates stay with its owners.
Only someone whose role may act is named (never an auditor alone), and `policies.can_edit_identity`
ignores a delegation held by someone who has become only an auditor since.
"""

from guardian.shortcuts import assign_perm, remove_perm

from audit.choices import AuditAction
from audit.services import ActorLike, audit_event_record, state_change

from .. import policies
from ..choices import IdentityKind, IdentityStatus
from ..errors import InvalidTransition, ValidationFailed
from ..locks import lock
from ..models import Identity
from .common import check


def _delegate_user(identity: Identity, delegate: Identity):
    if delegate.kind != IdentityKind.HUMAN or delegate.status != IdentityStatus.ACTIVE or delegate.user_id is None:
        raise ValidationFailed(
            "A delegate must be an active person who can sign in.",
            field_errors={"delegate": ["A delegate must be an active person who can sign in."]},
        )
    if not policies.may_act(delegate.user):
        # Delegation lets one edit and suspend: an auditor only reads, and a login with no role acts on nothing.
        message = f"{delegate} holds no role that may act (requester, approver, owner or admin); an auditor only reads."
        raise ValidationFailed(message, field_errors={"delegate": [message]})
    if delegate.pk in (identity.pk, identity.owner_id, identity.backup_owner_id):
        raise ValidationFailed(
            f"{delegate} already answers for {identity}.",
            field_errors={"delegate": [f"{delegate} already answers for {identity}."]},
        )
    return delegate.user


@state_change
def identity_delegate(*, identity_id: int, actor: ActorLike, delegate: Identity, reason: str = "") -> Identity:
    identity = lock(Identity, identity_id)
    check(actor, policies.can_manage_identity, identity, "Only the identity's owners or an admin name delegates.")
    if identity.status == IdentityStatus.OFFBOARDED:
        raise InvalidTransition(f"{identity} is offboarded.")
    user = _delegate_user(identity, delegate)
    if user.has_perm(policies.DELEGATED_PERMISSION, identity):
        raise InvalidTransition(f"{delegate} is already a delegate of {identity}.")
    assign_perm(policies.DELEGATED_PERMISSION, user, identity)
    audit_event_record(
        actor=actor,
        action=AuditAction.IDENTITY_DELEGATED,
        target=identity,
        data={"delegate": delegate.pk, "reason": reason},
    )
    return identity


@state_change
def identity_undelegate(*, identity_id: int, actor: ActorLike, delegate: Identity, reason: str = "") -> Identity:
    identity = lock(Identity, identity_id)
    check(actor, policies.can_manage_identity, identity, "Only the identity's owners or an admin remove delegates.")
    if delegate.user_id is None or delegate not in delegates_of(identity):
        raise InvalidTransition(f"{delegate} is not a delegate of {identity}.")
    _remove(identity, delegate, actor=actor, reason=reason)
    return identity


def drop_delegates(identity: Identity, *, actor: ActorLike, reason: str) -> int:
    """Remove every delegate of a (locked) identity, each audited: the caller's transaction."""
    delegates = delegates_of(identity)
    for delegate in delegates:
        _remove(identity, delegate, actor=actor, reason=reason)
    return len(delegates)


def _remove(identity: Identity, delegate: Identity, *, actor: ActorLike, reason: str) -> None:
    remove_perm(policies.DELEGATED_PERMISSION, delegate.user, identity)
    audit_event_record(
        actor=actor,
        action=AuditAction.IDENTITY_DELEGATION_REMOVED,
        target=identity,
        data={"delegate": delegate.pk, "reason": reason},
    )


def delegates_of(identity: Identity) -> list[Identity]:
    """The people an identity's owners delegated it to (one query)."""
    from guardian.models import UserObjectPermission

    codename = policies.DELEGATED_PERMISSION.split(".")[1]
    user_ids = UserObjectPermission.objects.filter(
        content_type__app_label="governance",
        content_type__model="identity",
        object_pk=str(identity.pk),
        permission__codename=codename,
    ).values("user_id")
    return list(Identity.objects.filter(user_id__in=user_ids).order_by("name"))
