"""Break-glass: eligibility kept in advance, activation at once with step-up, loud, hard-capped.

Activation asks nobody: the eligibility was the approval. It re-authenticates the person (password,
plus a one-time code when they enrolled a second factor), issues a `break_glass` grant through the
system's connector with its end fixed now (never later than the global cap), opens a review due
after the fact and tells the reviewers, the owners and the security group at once. A refused attempt
leaves an audit event of its own, written after the failed transaction rolled back.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.urls import reverse
from django_otp import devices_for_user, user_has_device

from audit.choices import AuditAction
from audit.kernel import clock
from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from audit.services import Actor, ActorLike, Target, acting_user, audit_event_record, state_change
from governance import policies as inventory
from governance.choices import GrantKind, GrantStatus, IdentityKind, IdentityStatus, LifecycleStatus
from governance.errors import DomainError, InvalidTransition, PermissionRefused, ValidationFailed
from governance.locks import hold_entitlement, lock, lock_ids, share_ids
from governance.models import Entitlement, Grant, Identity
from governance.services.grants import grant_issue, grants_revoke_many
from governance.services.notifications import notify, users_of

from ..choices import DrillStatus
from ..models import BreakGlassActivation, BreakGlassDrill, BreakGlassEligibility
from ..policy import human_duration
from .requests import BREAK_GLASS_NO_EXTENSION

ADMINS_ONLY = "Only an admin may manage break-glass eligibility."
NOT_ELIGIBLE = "You are not eligible to break glass into this access."
# Eligibility is access too: it ends, and is reviewed before it is renewed.
ELIGIBILITY_LONGEST = timedelta(days=366)
NO_EXTENSION = BREAK_GLASS_NO_EXTENSION
STEP_UP_PASSWORD = "password"
STEP_UP_TOTP = "password+totp"


#
# Eligibility (admins)
#
def _require_admin(actor: ActorLike) -> None:
    user = acting_user(actor)
    if user is None or not inventory.is_admin(user) or inventory.is_read_only(user):
        raise PermissionRefused(ADMINS_ONLY)


def _check_duration(max_duration: timedelta | None) -> timedelta:
    duration = settings.BREAK_GLASS_DEFAULT_DURATION if max_duration is None else max_duration
    cap = settings.BREAK_GLASS_MAX_DURATION
    if duration <= timedelta(0):
        raise ValidationFailed("The emergency duration must be positive.", field_errors={"max_duration": ["Positive."]})
    if duration > cap:
        message = f"The emergency duration may be at most {human_duration(cap)} (the global cap)."
        raise ValidationFailed(message, field_errors={"max_duration": [message]})
    return duration


def _check_expiry(expires_at: datetime, now: datetime) -> None:
    if expires_at is None or expires_at <= now:
        message = "Eligibility must end in the future."
        raise ValidationFailed(message, field_errors={"expires_at": [message]})
    if expires_at > now + ELIGIBILITY_LONGEST:
        message = "Eligibility may run at most a year; renew it when it is reviewed."
        raise ValidationFailed(message, field_errors={"expires_at": [message]})


def _check_group(name: str, field_name: str) -> str:
    from django.contrib.auth.models import Group

    name = (name or "").strip()
    if name and not Group.objects.filter(name=name).exists():
        message = f"There is no group named {name!r}."
        raise ValidationFailed(message, field_errors={field_name: [message]})
    return name


def _eligibility_data(eligibility: BreakGlassEligibility, **extra) -> dict:
    data = {
        "entitlement": eligibility.entitlement_id,
        "identity": eligibility.identity_id,
        "group": eligibility.group,
        "max_duration": eligibility.max_duration,
        "reviewer_group": eligibility.reviewer_group,
        "expires_at": eligibility.expires_at,
        "is_active": eligibility.is_active,
    }
    data.update(extra)
    return data


@state_change
def eligibility_create(
    *,
    actor: ActorLike,
    entitlement: Entitlement,
    identity: Identity | None = None,
    group: str = "",
    max_duration: timedelta | None = None,
    reviewer_group: str = "",
    expires_at: datetime,
    reason: str = "",
) -> BreakGlassEligibility:
    """An admin names who may break glass into a break-glass-eligible entitlement, for how long at most.

    One holder: an identity (a person, or a machine for automated incident response) or a group of
    people. The duration is the hard cap of every activation, never above the global cap.
    """
    _require_admin(actor)
    now = clock.database_now()
    if identity is not None:
        identity = lock(Identity, identity.pk)
    entitlement = hold_entitlement(entitlement.pk, "owner")
    if not entitlement.break_glass_eligible:
        message = f"{entitlement} is not marked break-glass eligible; an owner must mark it first."
        raise ValidationFailed(message, field_errors={"entitlement": [message]})
    if not entitlement.is_live or entitlement.system.status != LifecycleStatus.ACTIVE:
        raise ValidationFailed(f"{entitlement} is retired.", field_errors={"entitlement": ["Retired."]})
    group = _check_group(group, "group")
    if (identity is None) == (not group):
        message = "Name either one identity or one group, not both."
        raise ValidationFailed(message, field_errors={"identity": [message], "group": [message]})
    if identity is not None:
        if identity.status != IdentityStatus.ACTIVE:
            message = f"{identity} is {identity.get_status_display().lower()}."
            raise ValidationFailed(message, field_errors={"identity": [message]})
        if entitlement.allowed_identity_kinds and identity.kind not in entitlement.allowed_identity_kinds:
            message = f"{entitlement} may not be held by a {identity.get_kind_display().lower()}."
            raise ValidationFailed(message, field_errors={"identity": [message]})
    duration = _check_duration(max_duration)
    reviewer_group = _check_group(reviewer_group, "reviewer_group")
    _check_expiry(expires_at, now)
    _check_reason(reason, "reason")
    eligibility = BreakGlassEligibility.objects.create(
        entitlement=entitlement,
        identity=identity,
        group=group,
        max_duration=duration,
        reviewer_group=reviewer_group,
        expires_at=expires_at,
        reason=reason,
        created_by=acting_user(actor),
        reviewed_at=now,
        reviewed_by=acting_user(actor),
    )
    audit_event_record(
        actor=actor,
        action=AuditAction.BREAK_GLASS_ELIGIBILITY_GRANTED,
        target=eligibility,
        data=_eligibility_data(eligibility, reason=reason),
    )
    return eligibility


def _lock_eligibility(eligibility_id: int) -> BreakGlassEligibility:
    eligibility = (
        BreakGlassEligibility.objects.select_for_update(of=("self",), no_key=True)
        .select_related("entitlement", "entitlement__system", "identity")
        .filter(pk=eligibility_id)
        .first()
    )
    if eligibility is None:
        raise ValidationFailed(f"Break-glass eligibility {eligibility_id} does not exist.")
    return eligibility


@state_change
def eligibility_update(
    *,
    eligibility_id: int,
    actor: ActorLike,
    max_duration: timedelta | None = None,
    reviewer_group: str | None = None,
    reason: str | None = None,
) -> BreakGlassEligibility:
    """Change the hard cap, the reviewers or the reason (None: unchanged). The holder stays: another
    holder is another eligibility, and the end date moves only by a review (`eligibility_renew`)."""
    _require_admin(actor)
    eligibility = _lock_eligibility(eligibility_id)
    if not eligibility.is_active:
        raise InvalidTransition("This eligibility was revoked; create a new one.")
    before = _eligibility_data(eligibility)
    if max_duration is not None:
        eligibility.max_duration = _check_duration(max_duration)
    if reviewer_group is not None:
        eligibility.reviewer_group = _check_group(reviewer_group, "reviewer_group")
    if reason is not None:
        _check_reason(reason, "reason")
        eligibility.reason = reason
    eligibility.save(update_fields=["max_duration", "reviewer_group", "reason", "updated_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.BREAK_GLASS_ELIGIBILITY_UPDATED,
        target=eligibility,
        data={"before": before, "after": _eligibility_data(eligibility)},
    )
    return eligibility


@state_change
def eligibility_renew(*, eligibility_id: int, actor: ActorLike, expires_at: datetime) -> BreakGlassEligibility:
    """The periodic review of an eligibility: an admin confirms it is still needed and sets its new end.

    Renewing one that has lapsed is allowed (a late review), one that was revoked is not.
    """
    _require_admin(actor)
    eligibility = _lock_eligibility(eligibility_id)
    if not eligibility.is_active:
        raise InvalidTransition("This eligibility was revoked; create a new one.")
    now = clock.database_now()
    _check_expiry(expires_at, now)
    previous = eligibility.expires_at
    eligibility.expires_at, eligibility.reviewed_at, eligibility.reviewed_by = expires_at, now, acting_user(actor)
    eligibility.expiry_warned_at = None
    eligibility.save(update_fields=["expires_at", "reviewed_at", "reviewed_by", "expiry_warned_at", "updated_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.BREAK_GLASS_ELIGIBILITY_RENEWED,
        target=eligibility,
        data={"previous_expires_at": previous, "expires_at": expires_at},
    )
    return eligibility


@state_change
def eligibility_revoke(*, eligibility_id: int, actor: ActorLike, reason: str) -> BreakGlassEligibility:
    """End an eligibility now (idempotent). Grants already activated run to their hard end and are reviewed."""
    _require_admin(actor)
    if not (reason or "").strip():
        raise ValidationFailed("Say why the eligibility ends.", field_errors={"reason": ["Required."]})
    _check_reason(reason, "reason")
    eligibility = _lock_eligibility(eligibility_id)
    if not eligibility.is_active:
        return eligibility
    eligibility.is_active = False
    eligibility.save(update_fields=["is_active", "updated_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.BREAK_GLASS_ELIGIBILITY_REVOKED,
        target=eligibility,
        data={"reason": reason},
    )
    return eligibility


def _check_reason(text: str, field_name: str) -> None:
    if len(text or "") > FREE_TEXT_MAX_LENGTH:
        message = f"At most {FREE_TEXT_MAX_LENGTH} characters."
        raise ValidationFailed(message, field_errors={field_name: [message]})


#
# Activation
#
def _holder_of(actor: ActorLike) -> tuple[object | None, Identity | None]:
    """(login, identity) who breaks glass: a person by their login, or a machine identity acting itself."""
    if isinstance(actor, Actor) and actor.identity is not None:
        return actor.user, actor.identity
    user = acting_user(actor)
    return user, inventory.identity_of(user)


def _is_machine(identity: Identity | None) -> bool:
    return identity is not None and identity.kind != IdentityKind.HUMAN


def _may_use(eligibility: BreakGlassEligibility, user, identity: Identity) -> bool:
    """This holder is the one the eligibility names, or a member of its group (people only)."""
    if eligibility.identity_id is not None:
        return eligibility.identity_id == identity.pk
    return (
        not _is_machine(identity)
        and user is not None
        and user.is_active
        and user.groups.filter(name=eligibility.group).exists()
    )


def _check_input(incident_reference: str, reason: str) -> None:
    errors: dict[str, list[str]] = {}
    if not (incident_reference or "").strip():
        errors["incident_reference"] = ["Give the incident reference (the ticket or page of the incident)."]
    elif len(incident_reference) > 200:
        errors["incident_reference"] = ["At most 200 characters."]
    if not (reason or "").strip():
        errors["reason"] = ["Say why you need this access now."]
    elif len(reason) > FREE_TEXT_MAX_LENGTH:
        errors["reason"] = [f"At most {FREE_TEXT_MAX_LENGTH} characters."]
    if errors:
        raise ValidationFailed(next(iter(errors.values()))[0], field_errors=errors)


def _eligibility_for(eligibility_id: int, user, identity: Identity | None) -> BreakGlassEligibility:
    """The eligibility if this holder may use it now; one refusal for someone else's and an unknown id."""
    if identity is None:
        raise PermissionRefused("Your login is not linked to an identity in the inventory; you cannot break glass.")
    if identity.status != IdentityStatus.ACTIVE:
        raise PermissionRefused(f"Your identity is {identity.get_status_display().lower()}; you cannot break glass.")
    if user is not None and not _is_machine(identity) and inventory.is_read_only(user):
        raise PermissionRefused("An auditor reads and changes nothing; an auditor does not break glass.")
    eligibility = (
        BreakGlassEligibility.objects.select_related("entitlement", "entitlement__system", "entitlement__owner")
        .filter(pk=eligibility_id)
        .first()
    )
    if eligibility is None or not _may_use(eligibility, user, identity):
        raise PermissionRefused(NOT_ELIGIBLE, field_errors={"eligibility": [NOT_ELIGIBLE]})
    now = clock.database_now()
    if not eligibility.is_active:
        message = "Your eligibility for this access was revoked."
        raise PermissionRefused(message, field_errors={"eligibility": [message]})
    if eligibility.expires_at <= now:
        message = f"Your eligibility for this access ended on {eligibility.expires_at:%Y-%m-%d %H:%M} UTC."
        raise PermissionRefused(message, field_errors={"eligibility": [message]})
    entitlement = eligibility.entitlement
    if not entitlement.break_glass_eligible:
        message = f"{entitlement} is no longer break-glass eligible."
        raise PermissionRefused(message, field_errors={"eligibility": [message]})
    # The rest of `eligibility_in_force_q`, on the same row read (one statement: one snapshot).
    if entitlement.status != LifecycleStatus.ACTIVE or entitlement.system.status != LifecycleStatus.ACTIVE:
        message = f"{entitlement} is retired."
        raise PermissionRefused(message, field_errors={"eligibility": [message]})
    return eligibility


def _step_up(user, identity: Identity, password: str | None, otp_token: str | None, verified_by: str | None) -> str:
    """Re-authenticate whoever breaks glass; return how. Runs and commits on its own, before the
    activation, so that a failed code counts against django-otp's throttle and a used code cannot be
    used again, whatever happens to the activation."""
    if _is_machine(identity):
        if not verified_by:
            message = "A machine identity breaks glass only when authenticated by its own credential."
            raise PermissionRefused(message)
        return verified_by[:32]
    if user is None or not user.is_active:
        raise PermissionRefused("Sign in to break glass.")
    if not password:
        raise ValidationFailed("Enter your password again.", field_errors={"password": ["Enter your password again."]})
    if not user.has_usable_password() or not user.check_password(password):
        message = "That password is not right."
        raise ValidationFailed(message, field_errors={"password": [message]})
    if not user_has_device(user, confirmed=True):
        return STEP_UP_PASSWORD
    token = (otp_token or "").strip()
    if not token:
        message = "Enter the code from your authenticator app."
        raise ValidationFailed(message, field_errors={"otp_token": [message]})
    with transaction.atomic():
        # Only devices not held back by earlier wrong codes (django-otp's throttle) are asked.
        devices = [d for d in devices_for_user(user, confirmed=True, for_verify=True) if d.verify_is_allowed()[0]]
        for device in devices:
            if device.verify_token(token):
                return STEP_UP_TOTP
        throttled = not devices
    message = (
        "Too many wrong codes: wait a moment, then try again with a fresh code."
        if throttled
        else "That code is not right (or was used already)."
    )
    raise ValidationFailed(message, field_errors={"otp_token": [message]})


def break_glass_activate(
    *,
    actor: ActorLike,
    eligibility_id: int,
    incident_reference: str,
    reason: str,
    password: str | None = None,
    otp_token: str | None = None,
    drill_id: int | None = None,
    step_up_verified_by: str | None = None,
) -> BreakGlassActivation:
    """Break glass: check eligibility and step-up, then issue the grant at once (see `_activate`).

    A person gives their password, and a one-time code when they have a confirmed device; a machine
    identity (an `Actor` carrying it, named by the eligibility) is vouched for by the caller that
    authenticated its credential (`step_up_verified_by`, e.g. "api_credential"). Every refusal raises
    a DomainError with field errors and is recorded (BREAK_GLASS_REFUSED) in a transaction of its own
    once the failed one rolled back. Call it outside any transaction of the caller's: a refusal inside
    one is lost if the caller rolls back.
    """
    user, identity = _holder_of(actor)
    incident_reference, reason = (incident_reference or "").strip(), (reason or "").strip()
    try:
        _check_input(incident_reference, reason)
        _eligibility_for(eligibility_id, user, identity)
        step_up = _step_up(user, identity, password, otp_token, step_up_verified_by)
        return _activate(
            actor=actor,
            user=user,
            identity=identity,
            eligibility_id=eligibility_id,
            incident_reference=incident_reference,
            reason=reason,
            step_up=step_up,
            drill_id=drill_id,
        )
    except DomainError as error:
        _refusal_record(
            actor=actor,
            eligibility_id=eligibility_id,
            error=error,
            incident_reference=incident_reference,
            drill_id=drill_id,
        )
        raise


@state_change
def _refusal_record(
    *, actor: ActorLike, eligibility_id: int, error: DomainError, incident_reference: str, drill_id: int | None
) -> None:
    """A refused attempt, kept: what was asked, by whom, and why it was refused (never the password)."""
    entitlement_id = (
        BreakGlassEligibility.objects.filter(pk=eligibility_id).values_list("entitlement_id", flat=True).first()
    )
    audit_event_record(
        actor=actor,
        action=AuditAction.BREAK_GLASS_REFUSED,
        target=Target("jit.breakglasseligibility", str(eligibility_id), f"Break-glass eligibility #{eligibility_id}"),
        data={
            "eligibility": eligibility_id,
            "entitlement": entitlement_id,
            "incident_reference": incident_reference[:200],
            "refusal": error.message[:500],
            "fields": sorted(error.field_errors),
            "drill": drill_id,
        },
    )


def _drill_for(drill_id: int | None, eligibility: BreakGlassEligibility) -> BreakGlassDrill | None:
    if drill_id is None:
        return None
    drill = BreakGlassDrill.objects.select_for_update(no_key=True).filter(pk=drill_id).first()
    if drill is None or drill.eligibility_id != eligibility.pk:
        message = "That drill is not scheduled for this eligibility."
        raise ValidationFailed(message, field_errors={"drill": [message]})
    if drill.status != DrillStatus.SCHEDULED or drill.activation_id is not None:
        raise InvalidTransition(f"{drill} is {drill.get_status_display().lower()}; schedule a new drill.")
    return drill


def _reviewers(eligibility: BreakGlassEligibility, entitlement: Entitlement, holder_user) -> tuple[str, object | None]:
    """(reviewer group, reviewer): the eligibility's group, else the entitlement's owner, never the holder.

    When the owner is the one breaking glass (or has no active login), the security group reviews.
    """
    if eligibility.reviewer_group:
        return eligibility.reviewer_group, None
    owner = entitlement.owner
    owner_user = owner.user if owner.user_id and owner.status == IdentityStatus.ACTIVE else None
    if owner_user is None or not owner_user.is_active or (holder_user is not None and owner_user.pk == holder_user.pk):
        return settings.BREAK_GLASS_SECURITY_GROUP, None
    return "", owner_user


@state_change
def _activate(
    *,
    actor: ActorLike,
    user,
    identity: Identity,
    eligibility_id: int,
    incident_reference: str,
    reason: str,
    step_up: str,
    drill_id: int | None,
) -> BreakGlassActivation:
    """Issue the break-glass grant, fix its end, open the review and tell everyone, in one transaction.

    Lock order: the holder, the eligibility (shared: activations of one group eligibility go side by
    side; a revocation waits for them), then the entitlement and the grant inside `grant_issue`.
    """
    lock_ids(Identity, [identity.pk])
    share_ids(BreakGlassEligibility, [eligibility_id])
    eligibility = _eligibility_for(eligibility_id, user, identity)  # again, under the locks
    entitlement = eligibility.entitlement
    holder = Identity.objects.get(pk=identity.pk)
    if live := Grant.objects.live().filter(identity=holder, entitlement=entitlement).first():
        if live.is_in_force():
            until = f" until {live.expires_at:%Y-%m-%d %H:%M} UTC" if live.expires_at else ""
            message = f"You already hold {entitlement.name}{until} (grant #{live.pk}); there is no glass to break."
        elif live.status == GrantStatus.PENDING_PROVISION:
            message = (
                f"{entitlement.name} is already being granted to {holder.name} (grant #{live.pk}): "
                "it starts when the system confirms."
            )
        else:
            message = f"{entitlement.name} of {holder.name} is still being removed (grant #{live.pk}); wait for it."
        raise InvalidTransition(message, field_errors={"eligibility": [message]})
    drill = _drill_for(drill_id, eligibility)
    duration = min(eligibility.max_duration, settings.BREAK_GLASS_MAX_DURATION)
    now = clock.database_now()
    ends_at = now + duration
    is_drill = drill is not None
    try:
        with transaction.atomic():
            grant = grant_issue(
                actor=actor,
                identity=holder,
                entitlement=entitlement,
                kind=GrantKind.BREAK_GLASS,
                duration=duration,
                reason=f"{'Drill: ' if is_drill else ''}Break-glass ({incident_reference}): {reason}"[
                    :FREE_TEXT_MAX_LENGTH
                ],
            )
    except IntegrityError:
        raise InvalidTransition(f"{entitlement.name} was granted to {holder} a moment ago.") from None
    # The hard end, fixed now: the connector's confirmation starts the clock but never moves it later
    # (governance.services.grants.grant_confirm_provisioned keeps a break-glass grant's end).
    grant.expires_at = ends_at
    grant.save(update_fields=["expires_at", "updated_at"])
    reviewer_group, reviewer = _reviewers(eligibility, entitlement, user)
    activation = BreakGlassActivation.objects.create(
        eligibility=eligibility,
        grant=grant,
        identity=holder,
        entitlement=entitlement,
        activated_by=user if getattr(user, "is_authenticated", False) else None,
        incident_reference=incident_reference,
        reason=reason,
        step_up=step_up,
        is_drill=is_drill,
        activated_at=now,
        ends_at=ends_at,
        review_due_at=now + settings.BREAK_GLASS_REVIEW_WITHIN,
        reviewer_group=reviewer_group,
        reviewer=reviewer,
    )
    if drill is not None:
        drill.status, drill.activation = DrillStatus.DONE, activation
        drill.save(update_fields=["status", "activation"])
    audit_event_record(
        actor=actor,
        action=AuditAction.BREAK_GLASS_ACTIVATED,
        target=activation,
        data={
            "eligibility": eligibility.pk,
            "grant": grant.pk,
            "identity": holder.pk,
            "entitlement": entitlement.pk,
            "incident_reference": incident_reference,
            "reason": reason,
            "step_up": step_up,
            "drill": drill.pk if drill else None,
            "activated_at": now,
            "ends_at": ends_at,
            "review_due_at": activation.review_due_at,
            "reviewer_group": reviewer_group,
            "reviewer": reviewer.pk if reviewer else None,
        },
    )
    _tell_everyone(activation, holder_user=user)
    return activation


def activation_url(activation: BreakGlassActivation) -> str:
    return reverse("jit:break_glass_detail", args=[activation.pk])


def told_of_activation(activation: BreakGlassActivation) -> list:
    """Who hears of a break-glass at once: its reviewers, the entitlement's and system's owners, the
    security group (and, for a machine, its owners)."""
    entitlement = activation.entitlement
    users = get_user_model().objects.filter(is_active=True)
    groups = [g for g in (activation.reviewer_group, settings.BREAK_GLASS_SECURITY_GROUP) if g]
    told = list(users.filter(groups__name__in=groups).distinct().order_by("pk"))
    told += [activation.reviewer] if activation.reviewer else []
    told += users_of(entitlement.owner, entitlement.system.owner)
    if activation.identity.kind != IdentityKind.HUMAN:
        told += users_of(activation.identity.owner, activation.identity.backup_owner)
    return told


def _tell_everyone(activation: BreakGlassActivation, *, holder_user) -> None:
    drill = "[Drill] " if activation.is_drill else ""
    entitlement = activation.entitlement
    notify(
        recipients=told_of_activation(activation),
        kind="break_glass.activated",
        subject=(
            f"{drill}Break-glass: {activation.identity.name} holds {entitlement.system.name} / {entitlement.name}"
            f" until {activation.ends_at:%H:%M} UTC"
        ),
        body=(
            f"Incident: {activation.incident_reference}\nReason: {activation.reason}\n"
            f"Re-authenticated with: {activation.step_up}. "
            f"Review due by {activation.review_due_at:%Y-%m-%d %H:%M} UTC."
        ),
        link=activation_url(activation),
        key=f"break_glass:{activation.pk}:activated",
    )


def refuse_break_glass_extension(grant: Grant) -> None:
    """Break-glass access never runs longer than its activation said: more time is a new activation."""
    if grant.kind == GrantKind.BREAK_GLASS:
        raise InvalidTransition(NO_EXTENSION, field_errors={"duration": [NO_EXTENSION]})


def break_glass_end_unprovisioned(*, now: datetime | None = None) -> int:
    """Break-glass grants their system never confirmed by their hard end are removed (the connector is
    asked to undo whatever it may have done), so that one neither outlives its cap on the target nor
    blocks the next activation. The expiry sweep calls it each run; break-glass grants are few."""
    now = now or clock.database_now()
    due = Grant.objects.filter(
        kind=GrantKind.BREAK_GLASS,
        status__in=[GrantStatus.PENDING_PROVISION, GrantStatus.PROVISION_FAILED],
        expires_at__lte=now,
    )
    ids = list(due.order_by("pk").values_list("pk", flat=True)[:1000])
    if not ids:
        return 0
    return len(
        grants_revoke_many(
            grant_ids=ids,
            actor=Actor.system(),
            reason="break-glass: the hard end passed before the system confirmed the access",
            end_reason="expired",
        )
    )
