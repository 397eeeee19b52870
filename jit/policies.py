"""Pure predicates: who may decide on, cancel or activate a request (who may see one: `selectors.requests_visible_to`)."""

from audit.services import Actor, acting_user
from governance import policies as inventory
from governance.choices import IdentityStatus
from governance.errors import PermissionRefused
from governance.models import Identity
from governance.roles import Role, has_role
from governance.services.common import is_system

NOT_A_REQUESTER = "Requesting access needs the requester role; ask an admin to give it to you."
READ_ONLY = "An auditor reads and changes nothing."


def _me(user):
    return inventory.identity_of(user)


def owns_identity(user, identity) -> bool:
    me = _me(user)
    return me is not None and me.pk in (identity.owner_id, identity.backup_owner_id)


def is_beneficiary(user, request) -> bool:
    me = _me(user)
    return me is not None and me.pk == request.beneficiary_id


def conflict_of_interest(user, request) -> str | None:
    """Why this user may not decide on this request, or None.

    Nobody approves a request they made, one they benefit from, one for a non-human identity
    they own, or one a machine made on their behalf (a delegation chain naming them).
    """
    if request.requester_id is not None and request.requester_id == user.pk:
        return "You cannot decide on a request you made."
    if is_beneficiary(user, request):
        return "You cannot decide on a request for your own access."
    if request.beneficiary.kind != "human" and owns_identity(user, request.beneficiary):
        return "You cannot decide on a request for an identity you own."
    if on_behalf_of(user, request):
        return "You cannot decide on a request made on your behalf (you are in its delegation chain)."
    return None


def may_request(user) -> bool:
    """Asking for access, for oneself or a machine one owns, needs the requester role (README: roles)."""
    return has_role(user, Role.REQUESTER)


def suspended_approver(user) -> str | None:
    """Routing fixed the approvers at submission; someone suspended or offboarded since decides nothing.

    Nor does an auditor, whom routing may still have found (an entitlement's owner who is only an
    auditor): auditors change nothing. Read fresh: the identity cached on a long-lived user object
    may predate the suspension.
    """
    if inventory.is_read_only(user):
        return READ_ONLY
    status = Identity.objects.filter(user_id=user.pk).values_list("status", flat=True).first()
    if status is not None and status != IdentityStatus.ACTIVE:
        return f"Your identity is {IdentityStatus(status).label.lower()}; you cannot decide on requests."
    return None


def can_cancel(user, request) -> bool:
    return not inventory.is_read_only(user) and (
        request.requester_id == user.pk or owns_identity(user, request.beneficiary)
    )


def can_activate(user, request) -> bool:
    """The beneficiary, or the owner of a machine beneficiary, starts approved access; never an auditor."""
    return not inventory.is_read_only(user) and (
        is_beneficiary(user, request) or owns_identity(user, request.beneficiary)
    )


def can_hold(user, grant) -> bool:
    """The holder (or the owner of a machine holder) may activate, extend or release access; never an auditor."""
    me = _me(user)
    return (
        me is not None
        and not inventory.is_read_only(user)
        and (me.pk == grant.identity_id or owns_identity(user, grant.identity))
    )


can_mark_no_renew = inventory.can_mark_no_renew


def require(allowed: bool, message: str) -> None:
    if not allowed:
        raise PermissionRefused(message)


#
# A machine acting on its own (an API token): it cancels what it asked, activates and releases its own.
#
def machine_of(actor) -> Identity | None:
    """The machine identity acting without a login (a token), or None for a person or the system."""
    if isinstance(actor, Actor) and actor.user is None and actor.identity is not None:
        return actor.identity
    return None


def may_cancel(actor, request) -> bool:
    machine = machine_of(actor)
    if machine is not None:
        return request.requester_identity_id == machine.pk
    return can_cancel(acting_user(actor), request)


def may_activate(actor, request) -> bool:
    machine = machine_of(actor)
    if machine is not None:
        return request.beneficiary_id == machine.pk
    return can_activate(acting_user(actor), request)


def may_hold(actor, grant) -> bool:
    machine = machine_of(actor)
    if machine is not None:
        return grant.identity_id == machine.pk
    return can_hold(acting_user(actor), grant)


#
# Delegations: who speaks for an identity, and who may take that back
#
def _answers_for(user, identity) -> bool:
    """The user is this identity (active), or answers for it (its owners, an admin); never an auditor."""
    if user is None or not getattr(user, "is_authenticated", False) or inventory.is_read_only(user):
        return False
    me = _me(user)
    is_me = me is not None and me.pk == identity.pk and me.status == IdentityStatus.ACTIVE
    return is_me or inventory.can_manage_identity(user, identity)


def may_delegate_for(actor, delegator) -> bool:
    """The delegator itself (a person signed in, a machine with its token), a machine's owners, or an admin."""
    machine = machine_of(actor)
    if machine is not None:
        return machine.pk == delegator.pk
    return is_system(actor) or _answers_for(acting_user(actor), delegator)


def may_revoke_delegation(actor, delegation) -> bool:
    """The delegator's side (itself, its owners, admins) takes it back; the delegate's side may decline it."""
    machine = machine_of(actor)
    if machine is not None:
        return machine.pk in (delegation.delegator_id, delegation.delegate_id)
    user = acting_user(actor)
    return is_system(actor) or _answers_for(user, delegation.delegator) or _answers_for(user, delegation.delegate)


def on_behalf_of(user, request) -> bool:
    """The user is an identity the request's delegation chain acts for (pure: reads the stored chain)."""
    me = _me(user)
    if me is None:
        return False
    return any(
        isinstance(hop, dict) and hop.get("from", {}).get("id") == me.pk for hop in request.delegation_chain or ()
    )
