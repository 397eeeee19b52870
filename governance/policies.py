"""Pure permission predicates over the inventory, shared by services, views, the API and templates.

Ownership decides: the owner (or backup owner) of an identity edits it, the owner of a system or
entitlement keeps it true. Admins may do everything; django-guardian object permissions let an
admin delegate a single object to someone else.
"""

from django.contrib.auth.models import AbstractBaseUser

from .choices import IdentityKind, IdentityStatus
from .errors import PermissionRefused
from .roles import READ_INVENTORY_ROLES, Role, has_role


def identity_of(user: AbstractBaseUser):
    """The Identity a login user is, or None (cached by Django on the user object)."""
    if not getattr(user, "is_authenticated", False):
        return None
    try:
        return user.identity
    except Exception:
        return None


DELEGATED_PERMISSION = "governance.change_identity"


def is_admin(user) -> bool:
    return has_role(user, Role.ADMIN)


def _is_person(user, identity_id: int | None) -> bool:
    """The user is this identity, and an active one: a suspended owner's powers are suspended too."""
    me = identity_of(user)
    return me is not None and identity_id is not None and me.pk == identity_id and me.status == IdentityStatus.ACTIVE


def can_view_inventory(user) -> bool:
    """Owners, approvers, auditors and admins read the whole inventory; requesters only their own part."""
    return has_role(user, *READ_INVENTORY_ROLES)


def can_view_identity(user, identity) -> bool:
    return (
        can_view_inventory(user)
        or _is_person(user, identity.pk)
        or _is_person(user, identity.owner_id)
        or _is_person(user, identity.backup_owner_id)
        or _is_person(user, identity.manager_id)
    )


def can_register_identity(user, identity) -> bool:
    """Admins register anyone; others register only the machine identities they will own (never a person).

    An auditor only reads: the read-only role registers nothing unless another role says otherwise.
    """
    if is_admin(user):
        return True
    return (
        may_own_machines(user)
        and identity.kind != IdentityKind.HUMAN
        and identity.owner_id is not None
        and _is_person(user, identity.owner_id)
    )


def may_own_machines(user) -> bool:
    """Who may register the machines they will own: a person in the inventory, unless they are only an auditor."""
    read_only = has_role(user, Role.AUDITOR) and not has_role(
        user, Role.REQUESTER, Role.OWNER, Role.APPROVER, Role.ADMIN
    )
    return identity_of(user) is not None and not read_only


def can_manage_identity(user, identity) -> bool:
    """Who answers for an identity: hands it over, offboards it, names delegates. Never a delegate."""
    return is_admin(user) or _is_person(user, identity.owner_id) or _is_person(user, identity.backup_owner_id)


def can_edit_identity(user, identity) -> bool:
    """Keep its facts true and suspend it: its owners, or someone they delegated (a guardian object permission)."""
    return can_manage_identity(user, identity) or user.has_perm(DELEGATED_PERMISSION, identity)


def can_edit_system(user, system) -> bool:
    return is_admin(user) or _is_person(user, system.owner_id) or user.has_perm("governance.change_system", system)


def can_edit_entitlement(user, entitlement) -> bool:
    return (
        is_admin(user)
        or _is_person(user, entitlement.owner_id)
        or _is_person(user, entitlement.system.owner_id)
        or user.has_perm("governance.change_entitlement", entitlement)
    )


def can_confirm_provisioning(user, grant) -> bool:
    """The system owner confirms what the manual connector asked them to do."""
    return is_admin(user) or _is_person(user, grant.entitlement.system.owner_id)


def can_mark_no_renew(user, grant) -> bool:
    """An owner who answers for the access reviews an expiring grant: the holder's owners or the entitlement's."""
    return (
        is_admin(user)
        or (grant.identity.kind != IdentityKind.HUMAN and _is_person(user, grant.identity.owner_id))
        or (grant.identity.kind != IdentityKind.HUMAN and _is_person(user, grant.identity.backup_owner_id))
        or _is_person(user, grant.entitlement.owner_id)
    )


def can_revoke_grant(user, grant) -> bool:
    return (
        is_admin(user)
        or _is_person(user, grant.entitlement.owner_id)
        or _is_person(user, grant.entitlement.system.owner_id)
        or _is_person(user, grant.identity.owner_id)
        or _is_person(user, grant.identity.backup_owner_id)
        or _is_person(user, grant.identity_id)
    )


def can_import(user) -> bool:
    return is_admin(user)


def is_auditor(user) -> bool:
    return has_role(user, Role.AUDITOR)


def require(allowed: bool, message: str = "You may not do this.") -> None:
    if not allowed:
        raise PermissionRefused(message)


def can_manage_grants(user, entitlement) -> bool:
    """Grant standing access directly: the entitlement's or system's owner, or an admin."""
    return can_edit_entitlement(user, entitlement)
