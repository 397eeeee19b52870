"""What happens to a JIT grant while it runs: warnings before expiry, early release, do-not-renew."""

from django.urls import reverse

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import Actor, ActorLike, acting_user, audit_event_record, state_change
from governance.choices import GrantStatus
from governance.errors import InvalidTransition
from governance.locks import lock
from governance.models import Grant
from governance.services.grants import grant_revoke
from governance.services.notifications import holders_of, notify

from .. import policies
from .requests import close_renewals_of


@state_change
def grant_release(*, grant_id: int, actor: ActorLike, reason: str = "") -> Grant:
    """The holder gives access back before it expires.

    Locks the grant; if the expiry sweep already took it (or is taking it: SKIP LOCKED makes the
    sweep pass over a row locked here), exactly one of the two ends the grant.
    """
    grant = lock(Grant, grant_id)
    policies.require(policies.may_hold(actor, grant), "Only the holder may release this access.")
    if not (grant.is_in_force() or grant.status == GrantStatus.PENDING_PROVISION):
        raise InvalidTransition(f"Grant #{grant.pk} is already ending ({grant.get_status_display().lower()}).")
    audit_event_record(actor=actor, action=AuditAction.GRANT_RELEASED, target=grant, data={"reason": reason})
    grant = grant_revoke(
        grant_id=grant.pk,
        actor=actor,
        reason=reason or "released early",
        end_reason="released",
    )
    close_renewals_of([grant.pk], actor=actor, note="Closed: the access was released")
    return grant


@state_change
def grant_mark_no_renew(*, grant_id: int, actor: ActorLike, note: str = "") -> Grant:
    """An owner reviewed this expiring access: no more warnings, and no renewal."""
    grant = lock(Grant, grant_id)
    policies.require(policies.can_mark_no_renew(acting_user(actor), grant), "Only an owner may mark this grant.")
    if grant.no_renew:
        return grant
    grant.no_renew = True
    grant.save(update_fields=["no_renew", "updated_at"])
    audit_event_record(actor=actor, action=AuditAction.GRANT_MARKED_NO_RENEW, target=grant, data={"note": note})
    close_renewals_of([grant.pk], actor=actor, note="Closed: reviewed, not to be renewed")
    return grant


@state_change
def grant_warn_expiry(*, grant_id: int) -> bool:
    """Tell the holder their access ends soon, once, with a link to extend it (beat task)."""
    grant = lock(Grant, grant_id)
    if grant.status != GrantStatus.ACTIVE or grant.expiry_warned_at or grant.no_renew or grant.expires_at is None:
        return False
    grant.expiry_warned_at = clock.database_now()
    grant.save(update_fields=["expiry_warned_at", "updated_at"])
    identity = grant.identity
    notify(
        recipients=holders_of(identity),
        kind="grant.expiring",
        subject=(
            f"{grant.entitlement.name} on {grant.entitlement.system.name} for {identity.name} "
            f"expires at {grant.expires_at:%H:%M} UTC"
        ),
        body="Extend it if the work is not finished.",
        link=reverse("jit:grant_extend", args=[grant.pk]),
        key=f"grant:{grant.pk}:expiry-warning",
    )
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.GRANT_EXPIRY_WARNED,
        target=grant,
        data={"expires_at": grant.expires_at},
    )
    return True
