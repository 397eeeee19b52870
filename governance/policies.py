"""Pure permission predicates over the inventory, shared by services, views, the API and templates.

Ownership decides: the owner (or backup owner) of an identity edits it, the owner of a system or
entitlement keeps it true. Admins may do everything; django-guardian object permissions let an
admin delegate a single object to someone else.

Roles mean what the README says: an auditor reads and changes nothing. Every predicate that allows a
change refuses a user whose only portal role is auditor, whatever they own or were delegated.
"""

from collections.abc import Container, Iterable

from django.contrib.auth.models import AbstractBaseUser
from guardian.shortcuts import get_objects_for_user

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


# Every role but the auditor's may change something.
ACTING_ROLES = (Role.REQUESTER, Role.APPROVER, Role.OWNER, Role.ADMIN)
AUDIT_READ_PERMISSION = "audit.view_auditevent"


def is_admin(user) -> bool:
    return has_role(user, Role.ADMIN)


def may_act(user) -> bool:
    """The user holds a role that may change something (any but auditor): who may be named a delegate."""
    return has_role(user, *ACTING_ROLES)


def is_read_only(user) -> bool:
    """An auditor and nothing else: reads, never changes, even an object they own or were delegated.

    A login with no portal role at all is not read-only: what it may change comes from what it owns.
    """
    return has_role(user, Role.AUDITOR) and not may_act(user)


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
    return identity_of(user) is not None and not is_read_only(user)


def can_manage_identity(user, identity) -> bool:
    """Who answers for an identity: hands it over, offboards it, names delegates. Never a delegate."""
    return not is_read_only(user) and (
        is_admin(user) or _is_person(user, identity.owner_id) or _is_person(user, identity.backup_owner_id)
    )


def can_edit_identity(user, identity) -> bool:
    """Keep its facts true and suspend it: its owners, or someone they delegated (a guardian object permission).

    A delegate who is only an auditor (named before the rule, or made one since) changes nothing.
    """
    return can_manage_identity(user, identity) or (
        not is_read_only(user) and user.has_perm(DELEGATED_PERMISSION, identity)
    )


def can_edit_system(user, system) -> bool:
    return not is_read_only(user) and (
        is_admin(user) or _is_person(user, system.owner_id) or user.has_perm("governance.change_system", system)
    )


EDIT_ENTITLEMENT_PERMISSION = "governance.change_entitlement"


def can_edit_entitlement(user, entitlement, *, delegated: Container[int] | None = None) -> bool:
    """Its owner, its system's owner, an admin, or someone it was delegated to (a guardian object permission).

    `delegated`: the entitlements delegated to this user as `entitlements_delegated` found them for a
    whole page; without it `has_perm` asks for this one entitlement (a query).
    """
    return not is_read_only(user) and (
        is_admin(user)
        or _is_person(user, entitlement.owner_id)
        or _is_person(user, entitlement.system.owner_id)
        or (
            entitlement.pk in delegated
            if delegated is not None
            else user.has_perm(EDIT_ENTITLEMENT_PERMISSION, entitlement)
        )
    )


def entitlements_delegated(user, entitlement_ids: Iterable[int]) -> set[int]:
    """Those of these entitlements delegated to this user to edit, directly or through a group: the answer
    `has_perm` gives one entitlement at a time, asked of django-guardian once for a page of them."""
    from .models import Entitlement

    wanted = set(entitlement_ids)
    if not wanted or not getattr(user, "is_active", False) or not isinstance(getattr(user, "pk", None), int):
        return set()  # has_perm: an inactive login holds nothing; a machine's token no object permission
    delegated = get_objects_for_user(
        user, EDIT_ENTITLEMENT_PERMISSION, klass=Entitlement.objects.filter(pk__in=wanted), accept_global_perms=False
    )
    return set(delegated.values_list("pk", flat=True))


def can_confirm_provisioning(user, grant) -> bool:
    """The system owner confirms what the manual connector asked them to do."""
    return not is_read_only(user) and (is_admin(user) or _is_person(user, grant.entitlement.system.owner_id))


def can_mark_no_renew(user, grant) -> bool:
    """An owner who answers for the access reviews an expiring grant: the holder's owners or the entitlement's."""
    return not is_read_only(user) and (
        is_admin(user)
        or (grant.identity.kind != IdentityKind.HUMAN and _is_person(user, grant.identity.owner_id))
        or (grant.identity.kind != IdentityKind.HUMAN and _is_person(user, grant.identity.backup_owner_id))
        or _is_person(user, grant.entitlement.owner_id)
    )


def can_revoke_grant(user, grant) -> bool:
    return not is_read_only(user) and (
        is_admin(user)
        or _is_person(user, grant.entitlement.owner_id)
        or _is_person(user, grant.entitlement.system.owner_id)
        or _is_person(user, grant.identity.owner_id)
        or _is_person(user, grant.identity.backup_owner_id)
        or _is_person(user, grant.identity_id)
    )


def answers_for(user, obj) -> bool:
    """The people accountable for an inventory object (its owners), whose work its history is.

    An identity: its owner and backup owner. A system: its owner. An entitlement: its owner and its
    system's owner. A grant: whoever answers for its entitlement, and the owners of a machine holder.
    Not the person an identity is, not its delegates, not an approver: they see the object, not its trail.
    """
    kind = obj._meta.model_name
    if kind == "identity":
        return _is_person(user, obj.owner_id) or _is_person(user, obj.backup_owner_id)
    if kind == "system":
        return _is_person(user, obj.owner_id)
    if kind == "entitlement":
        return _is_person(user, obj.owner_id) or _is_person(user, obj.system.owner_id)
    if kind == "grant":
        return answers_for(user, obj.entitlement) or (
            obj.identity.kind != IdentityKind.HUMAN and answers_for(user, obj.identity)
        )
    return False


def can_view_history(user, obj) -> bool:
    """Who sees an object's audit events on its page: the audit trail's readers (auditors, admins) all of
    them, and those who answer for the object its own. Reading the inventory (approvers, owners) shows
    the object, never another person's trail: the audit trail is closed to them."""
    return user.has_perm(AUDIT_READ_PERMISSION) or answers_for(user, obj)


def can_import(user) -> bool:
    """Admins import everything; an owner imports what they answer for (`imports.scope` checks each row)."""
    return is_admin(user) or (has_role(user, Role.OWNER) and not is_read_only(user) and identity_of(user) is not None)


def is_auditor(user) -> bool:
    return has_role(user, Role.AUDITOR)


def require(allowed: bool, message: str = "You may not do this.") -> None:
    if not allowed:
        raise PermissionRefused(message)


def can_manage_grants(user, entitlement) -> bool:
    """Grant standing access directly: the entitlement's or system's owner, or an admin."""
    return can_edit_entitlement(user, entitlement)


#
# Certification
#
def can_manage_campaigns(user) -> bool:
    """Admins define, launch, close and cancel campaigns."""
    return is_admin(user)


def can_read_all_campaigns(user) -> bool:
    return is_admin(user) or is_auditor(user)
