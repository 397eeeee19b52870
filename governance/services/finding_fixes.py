"""Fixes an owner takes on a hygiene finding, and accepted risks (the exception register).

Each fix is one service: it refuses anyone but the identity's owner, backup owner or an admin
(`can_fix_finding`), makes the change through the service that owns it (identity, grant), records
what was fixed and why on the finding's trail, and lets that service's re-check close the finding
once the change commits. Accepting a risk is the one fix that changes the finding itself: it turns
`accepted` with an exception row until a date, and the scan reopens it after that date.

Lock order: the services called lock the identity or grant first (governance.locks); the finding
row is locked last, and the scan's lock is taken before it, so an accept never races a scan.
"""

from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import ActorLike, Target, acting_user, audit_event_record, state_change

from .. import policies
from ..choices import FindingExceptionStatus, FindingKind, FindingStatus, GrantKind, GrantStatus, SecretLocation
from ..errors import InvalidTransition, ValidationFailed
from ..locks import lock
from ..models import Finding, FindingException, Grant, Identity
from .catalogue import entitlement_update
from .common import check
from .findings import findings_recheck_on_commit, lock_findings
from .grants import grant_revoke
from .identities import identity_change_owner, identity_suspend, identity_update
from .reconciliation import DRIFT_KINDS

#
# Which fixes each kind offers
#
ASSIGN_OWNER = "assign-owner"
MARK_ROTATED = "mark-rotated"
REVOKE = "revoke"
CONVERT_TO_JIT = "convert-to-jit"
ACCEPT = "accept"
SUSPEND = "suspend"
SECRET_MOVED = "secret-moved"
ASSIGN_ENTITLEMENT_OWNER = "assign-entitlement-owner"
REVOKE_ONE = "revoke-one"
# The fixes of drift (their own service, for the system's owner: governance.services.reconciliation).
REVOKE_AT_TARGET = "revoke-at-target"
ADOPT = "adopt"
REPROVISION = "reprovision"


@dataclass(frozen=True)
class Fix:
    """A fix as pages offer it: its slug (in the URL), its button label, and whether it asks for input."""

    slug: str
    label: str
    asks: bool = True


FIXES = {
    fix.slug: fix
    for fix in (
        Fix(ASSIGN_OWNER, "Assign an owner"),
        Fix(MARK_ROTATED, "Mark rotated"),
        Fix(REVOKE, "Revoke the grant"),
        Fix(CONVERT_TO_JIT, "Make it just-in-time"),
        Fix(ACCEPT, "Accept the risk"),
        Fix(SUSPEND, "Suspend the identity"),
        Fix(SECRET_MOVED, "Record the move to the secrets manager"),
        Fix(ASSIGN_ENTITLEMENT_OWNER, "Name a new owner"),
        Fix(REVOKE_ONE, "Revoke one of them"),
        Fix(REVOKE_AT_TARGET, "Revoke at the target", asks=False),
        Fix(ADOPT, "Adopt and send to review", asks=False),
        Fix(REPROVISION, "Provision again", asks=False),
    )
}
FIXES_BY_KIND: dict[str, tuple[str, ...]] = {
    FindingKind.ORPHANED: (ASSIGN_OWNER, ACCEPT),
    FindingKind.STALE: (SUSPEND, ACCEPT),
    FindingKind.ROTATION_OVERDUE: (MARK_ROTATED, ACCEPT),
    FindingKind.SECRET_OUTSIDE_MANAGER: (SECRET_MOVED, ACCEPT),
    FindingKind.EXCESSIVE_PRIVILEGE: (REVOKE, ACCEPT),
    FindingKind.STANDING_HIGH_RISK: (CONVERT_TO_JIT, REVOKE, ACCEPT),
    FindingKind.SOD_CONFLICT: (REVOKE_ONE, ACCEPT),
    FindingKind.ENTITLEMENT_WITHOUT_OWNER: (ASSIGN_ENTITLEMENT_OWNER, ACCEPT),
    FindingKind.RENEWED_AS_STANDING: (REVOKE, ACCEPT),
    FindingKind.UNGOVERNED_ACCESS: (REVOKE_AT_TARGET, ADOPT),
    FindingKind.MISSING_AT_TARGET: (REPROVISION,),
}
# The longest an accepted risk may last before someone must decide again.
MAX_ACCEPT_DAYS = getattr(settings, "FINDING_EXCEPTION_MAX_DAYS", 365)


def can_fix_finding(user, finding: Finding, *, delegated: Container[int] | None = None) -> bool:
    """Who fixes a hygiene finding: its identity's owner or backup owner (active people), or an admin.

    Never an auditor, never a delegate. An ownerless entitlement's finding is for those who may edit the
    entitlement (its system's owner names the new owner; `delegated`: see `policies.can_edit_entitlement`).
    Drift has its own rule (the system's owner): `reconciliation.can_fix_drift`.
    """
    if policies.is_read_only(user):
        return False
    if policies.is_admin(user):
        return True
    if finding.identity_id is None:
        entitlement = finding.entitlement if finding.entitlement_id else None
        return (
            finding.kind == FindingKind.ENTITLEMENT_WITHOUT_OWNER
            and entitlement is not None
            and policies.can_edit_entitlement(user, entitlement, delegated=delegated)
        )
    return policies.can_manage_identity(user, finding.identity)


def fixes_for(user, finding: Finding, *, delegated: Container[int] | None = None) -> list[Fix]:
    """The hygiene fixes this user may take on this finding now (drift's are the findings page's)."""
    if (
        finding.status != FindingStatus.OPEN
        or finding.kind in DRIFT_KINDS
        or not can_fix_finding(user, finding, delegated=delegated)
    ):
        return []
    return [FIXES[slug] for slug in FIXES_BY_KIND.get(finding.kind, ())]


def fixes_for_each(user, findings: Sequence[Finding]) -> list[list[Fix]]:
    """`fixes_for` of every finding of a page. Whether an entitlement was delegated to the user is asked
    once for the page: each ownerless entitlement's finding cost a system owner two queries."""
    nothing: frozenset[int] = frozenset()
    undecided = [  # open, ownerless, and neither the entitlement's nor its system's owner nor an admin
        finding.entitlement_id
        for finding in findings
        if finding.kind == FindingKind.ENTITLEMENT_WITHOUT_OWNER
        and finding.status == FindingStatus.OPEN
        and finding.identity_id is None
        and finding.entitlement_id is not None
        and not policies.is_read_only(user)
        and not can_fix_finding(user, finding, delegated=nothing)
    ]
    delegated = policies.entitlements_delegated(user, undecided)
    return [fixes_for(user, finding, delegated=delegated) for finding in findings]


#
# Shared steps
#
def _authorise(finding_id: int, actor: ActorLike, fix: str) -> Finding:
    """The finding as read (unlocked), once the actor may fix it and the fix applies to its kind."""
    finding = Finding.objects.select_related("identity", "grant", "entitlement__system").filter(pk=finding_id).first()
    if finding is None:
        raise ValidationFailed(f"Finding {finding_id} does not exist.")
    check(
        actor,
        can_fix_finding,
        finding,
        "Only the identity's owner, its backup owner (or, for an entitlement, its system's owner) or an admin "
        "may fix this finding.",
    )
    if finding.kind in DRIFT_KINDS or fix not in FIXES_BY_KIND.get(finding.kind, ()):
        raise ValidationFailed(f"“{FIXES[fix].label}” does not fix a finding of this kind.")
    if finding.status != FindingStatus.OPEN:
        raise InvalidTransition(f"Finding {finding.pk} is {finding.get_status_display().lower()} already.")
    return finding


def _still_open(finding_id: int) -> Finding:
    """Lock the finding (last, see the module) and make sure nobody closed or accepted it meanwhile."""
    finding = lock(Finding, finding_id)
    if finding.status != FindingStatus.OPEN:
        raise InvalidTransition(f"Finding {finding.pk} is {finding.get_status_display().lower()} already.")
    return finding


def _target(finding: Finding) -> Target:
    return Target("governance.finding", str(finding.pk), str(finding)[:200])


def _record_fix(finding: Finding, actor: ActorLike, fix: str, **data) -> None:
    audit_event_record(
        actor=actor,
        action=AuditAction.FINDING_FIXED,
        target=_target(finding),
        data={"fix": fix.replace("-", "_"), "kind": finding.kind, "identity": finding.identity_id, **data},
    )


def _grant_of(finding: Finding) -> Grant:
    if finding.grant_id is None:
        raise ValidationFailed(f"Finding {finding.pk} names no grant.")
    return finding.grant


#
# The fixes
#
@state_change
def finding_fix_assign_owner(*, finding_id: int, actor: ActorLike, owner: Identity, reason: str = "") -> Finding:
    """Hand an orphaned identity to a new owner; its backup owner stays unless they are the new owner."""
    finding = _authorise(finding_id, actor, ASSIGN_OWNER)
    identity = finding.identity
    backup = identity.backup_owner if identity.backup_owner_id not in (None, owner.pk) else None
    identity_change_owner(
        identity_id=identity.pk,
        actor=actor,
        owner=owner,
        backup_owner=backup,
        reason=reason or f"Fix of finding #{finding.pk}",
    )
    _record_fix(_still_open(finding_id), actor, ASSIGN_OWNER, owner=owner.pk, reason=reason)
    return finding


@state_change
def finding_fix_mark_rotated(*, finding_id: int, actor: ActorLike, evidence: str) -> Finding:
    """Record that the identity's credential was rotated now, with the evidence (a ticket, a vault version)."""
    evidence = (evidence or "").strip()
    if not evidence:
        raise ValidationFailed(
            "Say how it was rotated: a ticket, a change or the secret's new version.",
            field_errors={"evidence": ["Required: the evidence that it was rotated."]},
        )
    finding = _authorise(finding_id, actor, MARK_ROTATED)
    now = clock.database_now()
    identity_update(identity_id=finding.identity_id, actor=actor, changes={"last_rotated_at": now})
    _record_fix(_still_open(finding_id), actor, MARK_ROTATED, evidence=evidence, rotated_at=now)
    return finding


@state_change
def finding_fix_revoke(*, finding_id: int, actor: ActorLike, reason: str = "") -> Finding:
    """Revoke the grant the finding is about (the target is asked; the finding closes as it stops being in force)."""
    finding = _authorise(finding_id, actor, REVOKE)
    grant = _grant_of(finding)
    why = reason.strip() or f"Fix of finding #{finding.pk}: {finding.get_kind_display().lower()}"
    grant_revoke(grant_id=grant.pk, actor=actor, reason=why, end_reason="revoked")
    _record_fix(_still_open(finding_id), actor, REVOKE, grant=grant.pk, reason=reason)
    return finding


@state_change
def finding_fix_suspend(*, finding_id: int, actor: ActorLike, reason: str) -> Finding:
    """Suspend an identity nobody uses: its access ends now, and the owner reactivates it if it was needed."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("Say why it is suspended.", field_errors={"reason": ["Required: why it is suspended."]})
    finding = _authorise(finding_id, actor, SUSPEND)
    identity_suspend(identity_id=finding.identity_id, actor=actor, reason=f"Fix of finding #{finding.pk}: {reason}")
    _record_fix(_still_open(finding_id), actor, SUSPEND, reason=reason)
    return finding


@state_change
def finding_fix_secret_moved(*, finding_id: int, actor: ActorLike, evidence: str) -> Finding:
    """Record that the machine's static secret now lives in the secrets manager, with the evidence (its path)."""
    evidence = (evidence or "").strip()
    if not evidence:
        raise ValidationFailed(
            "Say where the secret now lives: the secrets manager's path, or the change that moved it.",
            field_errors={"evidence": ["Required: the secret's path in the manager, or the change."]},
        )
    finding = _authorise(finding_id, actor, SECRET_MOVED)
    identity_update(
        identity_id=finding.identity_id, actor=actor, changes={"secret_location": SecretLocation.SECRETS_MANAGER}
    )
    _record_fix(_still_open(finding_id), actor, SECRET_MOVED, evidence=evidence)
    return finding


@state_change
def finding_fix_assign_entitlement_owner(
    *, finding_id: int, actor: ActorLike, owner: Identity, reason: str = ""
) -> Finding:
    """Name an active person the owner of an entitlement whose owner left; it can be requested again."""
    finding = _authorise(finding_id, actor, ASSIGN_ENTITLEMENT_OWNER)
    if finding.entitlement_id is None:
        raise ValidationFailed(f"Finding {finding.pk} names no entitlement.")
    entitlement_update(entitlement_id=finding.entitlement_id, actor=actor, changes={"owner": owner})
    _record_fix(_still_open(finding_id), actor, ASSIGN_ENTITLEMENT_OWNER, owner=owner.pk, reason=reason)
    return finding


def conflicting_grants(finding: Finding, now: datetime | None = None) -> list[Grant]:
    """The grants in force (at `now`, the database's clock in a service) that make an SoD finding: the
    identity's grants of the rule's entitlements."""
    rule_id = (finding.details or {}).get("sod_rule")
    if finding.kind != FindingKind.SOD_CONFLICT or rule_id is None or finding.identity_id is None:
        return []
    return list(
        Grant.objects.in_force(now or clock.now())
        .filter(identity_id=finding.identity_id, entitlement__sod_rules=rule_id)
        .select_related("entitlement__system")
        .order_by("entitlement__system__name", "entitlement__name", "pk")
    )


@state_change
def finding_fix_revoke_one(*, finding_id: int, actor: ActorLike, grant_id: int, reason: str = "") -> Finding:
    """Break a separation-of-duties conflict by revoking one of the grants that make it (the owner picks which)."""
    finding = _authorise(finding_id, actor, REVOKE_ONE)
    if grant_id not in {grant.pk for grant in conflicting_grants(finding, clock.database_now())}:
        raise ValidationFailed(
            "Pick one of the grants that make this conflict.",
            field_errors={"grant": ["Pick one of the grants listed."]},
        )
    why = reason.strip() or f"Fix of finding #{finding.pk}: separation-of-duties conflict"
    grant_revoke(grant_id=grant_id, actor=actor, reason=why, end_reason="revoked")
    _record_fix(_still_open(finding_id), actor, REVOKE_ONE, grant=grant_id, reason=reason)
    return finding


@state_change
def grant_convert_to_jit(*, grant_id: int, actor: ActorLike, duration: timedelta | None = None) -> Grant:
    """Turn a standing grant in force into just-in-time access that ends after `duration` (at most the
    entitlement's maximum, which is also the default): after that the holder requests it when needed."""
    grant = lock(Grant, grant_id)
    check(actor, policies.can_revoke_grant, grant, "You may not change this grant.")
    now = clock.database_now()
    if grant.kind != GrantKind.STANDING or grant.status != GrantStatus.ACTIVE:
        raise InvalidTransition(f"Grant #{grant.pk} is not standing access in force.")
    longest = grant.entitlement.effective_max_duration
    duration = min(duration or longest, longest)
    if duration <= timedelta(0):
        raise ValidationFailed("The duration must be positive.", field_errors={"duration": ["Must be positive."]})
    grant.kind, grant.expires_at = GrantKind.JIT, now + duration
    grant.save(update_fields=["kind", "expires_at", "updated_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.GRANT_CONVERTED_TO_JIT,
        target=grant,
        data={"before": {"kind": GrantKind.STANDING}, "after": {"kind": GrantKind.JIT}, "expires_at": grant.expires_at},
    )
    findings_recheck_on_commit([grant.identity_id])
    return grant


@state_change
def finding_fix_convert_to_jit(*, finding_id: int, actor: ActorLike) -> Grant:
    """Make the standing grant the finding is about just-in-time, for at most its entitlement's maximum."""
    finding = _authorise(finding_id, actor, CONVERT_TO_JIT)
    grant = grant_convert_to_jit(grant_id=_grant_of(finding).pk, actor=actor)
    _record_fix(_still_open(finding_id), actor, CONVERT_TO_JIT, grant=grant.pk, expires_at=grant.expires_at)
    return grant


@state_change
def finding_accept_risk(*, finding_id: int, actor: ActorLike, reason: str, until: datetime) -> FindingException:
    """Accept a finding's risk until a date, for a reason: it leaves the open findings and enters the
    exception register, and the scan reopens it at `until` (audited both times).

    `until` must be in the future and at most MAX_ACCEPT_DAYS away: a risk accepted for ever is a
    risk nobody owns.
    """
    reason = (reason or "").strip()
    errors: dict[str, list[str]] = {}
    if not reason:
        errors["reason"] = ["Required: why this risk is acceptable for now."]
    now = clock.database_now()
    if until <= now:
        errors["until"] = ["Must be in the future."]
    elif until > now + timedelta(days=MAX_ACCEPT_DAYS):
        errors["until"] = [f"At most {MAX_ACCEPT_DAYS} days from now: decide again then."]
    if errors:
        raise ValidationFailed(
            "The risk was not accepted: " + " ".join(m for ms in errors.values() for m in ms), field_errors=errors
        )
    _authorise(finding_id, actor, ACCEPT)
    lock_findings()  # the scan's lock: it never sees a finding half-accepted
    finding = _still_open(finding_id)
    user = acting_user(actor)
    me = policies.identity_of(user) if user is not None else None
    exception = FindingException.objects.create(
        finding=finding,
        reason=reason,
        accepted_by=user if getattr(user, "is_authenticated", False) else None,
        accepted_by_name=(me.name if me is not None else getattr(user, "username", "")) or "system",
        accepted_at=now,
        expires_at=until,
        status=FindingExceptionStatus.ACTIVE,
    )
    finding.status = FindingStatus.ACCEPTED
    finding.save(update_fields=["status"])
    audit_event_record(
        actor=actor,
        action=AuditAction.FINDING_RISK_ACCEPTED,
        target=_target(finding),
        data={"exception": exception.pk, "reason": reason, "until": until, "kind": finding.kind},
    )
    return exception
