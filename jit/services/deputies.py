"""Out of office: an approver names a deputy for a period; requests route to the deputy meanwhile.

Routing (`routing.stage_approvers`) adds the deputy of an approver away at submission. Stages
already waiting for the approver when the period starts are shared with the deputy here, each in
its own transaction (the request's lock order, like the chaser's escalation); the beat catches
periods that start later (`approver_absences_hand_over_due`). Nobody is ever routed a request
they may not decide: a deputy who made the request, benefits from it or owns its machine is left
out, and the request waits for the approver (or the escalation) instead.
"""

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.urls import reverse

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import Actor, audit_event_record, state_change
from governance import policies as inventory
from governance.choices import IdentityStatus
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.locks import lock
from governance.models import Identity
from governance.services.notifications import notify

from .. import policies
from ..choices import RequestStatus
from ..models import AccessRequest, Approval, ApprovalStage
from ..models_deputies import ApproverAbsence

User = get_user_model()

MAX_ABSENCE = timedelta(days=90)
# A deputy who is away too passes it on to their own deputy, this many hops at most.
MAX_DEPUTY_HOPS = 3


#
# Who decides for whom now
#
def absent_deputies(user_ids, now: datetime | None = None) -> dict[int, object]:
    """For each of these users away at `now` (the database's clock by default), who decides instead.

    A deputy away too hands on to their own deputy (a few hops at most; a circle stops at the last
    person not yet in it). One query per hop, none when `user_ids` is empty.
    """
    wanted = set(user_ids)
    if not wanted:
        return {}
    at = clock.database_now() if now is None else now
    away: dict[int, object] = {}
    ask = set(wanted)
    for _ in range(MAX_DEPUTY_HOPS):
        ask -= set(away)
        if not ask:
            break
        found = {
            a.approver_id: a.deputy
            for a in ApproverAbsence.objects.filter(
                approver_id__in=ask, starts_at__lte=at, ends_at__gt=at, ended_at__isnull=True
            ).select_related("deputy")
        }
        away.update(found)
        ask = {deputy.pk for deputy in found.values()}
    result = {}
    for pk in wanted & set(away):
        seen, deputy = {pk}, away[pk]
        while deputy.pk in away and away[deputy.pk].pk not in seen and len(seen) < MAX_DEPUTY_HOPS:
            seen.add(deputy.pk)
            deputy = away[deputy.pk]
        result[pk] = deputy
    return result


def may_deputise(user) -> str | None:
    """Why this login cannot stand in for an approver, or None: it must be able to decide at all."""
    if user is None or not user.is_active:
        return "That login is not active."
    if inventory.is_read_only(user):
        return f"{user.get_username()} is an auditor: auditors decide nothing."
    status = Identity.objects.filter(user_id=user.pk).values_list("status", flat=True).first()
    if status is not None and status != IdentityStatus.ACTIVE:
        return f"{user.get_username()}'s identity is {IdentityStatus(status).label.lower()}."
    return None


#
# Naming a deputy, ending it
#
def _overlapping(queryset, starts_at: datetime, ends_at: datetime):
    return queryset.filter(ended_at__isnull=True, starts_at__lt=ends_at, ends_at__gt=starts_at)


@state_change
def _absence_create(*, actor, deputy_id: int | None, starts_at: datetime, ends_at: datetime, reason: str = ""):
    if refusal := policies.suspended_approver(actor):  # an auditor, or someone suspended
        raise PermissionRefused(refusal)
    # One writer per approver at a time: two overlapping periods submitted at once cannot both pass.
    lock(User, actor.pk)
    deputy = User.objects.filter(pk=deputy_id).first() if deputy_id else None
    if deputy is None:
        raise ValidationFailed("Choose a deputy.", field_errors={"deputy": ["Choose a deputy."]})
    if deputy.pk == actor.pk:
        message = "You cannot be your own deputy; name someone else."
        raise ValidationFailed(message, field_errors={"deputy": [message]})
    if why_not := may_deputise(deputy):
        raise ValidationFailed(why_not, field_errors={"deputy": [why_not]})
    now = clock.database_now()
    starts_at = max(starts_at, now)  # "from now" typed a minute ago is now, not a refusal
    if ends_at <= starts_at:
        message = "The end must be after the start (and in the future)."
        raise ValidationFailed(message, field_errors={"ends_at": [message]})
    if ends_at - starts_at > MAX_ABSENCE:
        message = f"An absence lasts at most {MAX_ABSENCE.days} days; name a deputy again after that."
        raise ValidationFailed(message, field_errors={"ends_at": [message]})
    mine = _overlapping(ApproverAbsence.objects.filter(approver=actor), starts_at, ends_at).first()
    if mine is not None:
        message = (
            f"You are already away from {mine.starts_at:%Y-%m-%d %H:%M} to {mine.ends_at:%Y-%m-%d %H:%M} UTC; "
            "end that absence first."
        )
        raise ValidationFailed(message, field_errors={"starts_at": [message]})
    mutual = _overlapping(ApproverAbsence.objects.filter(approver=deputy, deputy=actor), starts_at, ends_at)
    if mutual.exists():
        message = f"{deputy.get_username()} is away then too and named you as their deputy; name someone else."
        raise ValidationFailed(message, field_errors={"deputy": [message]})
    absence = ApproverAbsence.objects.create(
        approver=actor, deputy=deputy, starts_at=starts_at, ends_at=ends_at, reason=reason
    )
    audit_event_record(
        actor=actor,
        action=AuditAction.APPROVER_ABSENCE_SET,
        target=absence,
        data={
            "approver": actor.pk,
            "deputy": deputy.pk,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "reason": reason,
        },
    )
    notify(
        recipients=[deputy],
        kind="deputy.named",
        subject=f"You decide for {actor.get_username()} from {starts_at:%Y-%m-%d %H:%M} to {ends_at:%Y-%m-%d %H:%M} UTC",
        body=reason,
        link=reverse("jit:approval_queue"),
        key=f"absence:{absence.pk}:named",
    )
    return absence


def approver_absence_set(
    *, actor, deputy_id: int | None, starts_at: datetime, ends_at: datetime, reason: str = ""
) -> ApproverAbsence:
    """Be away from `starts_at` to `ends_at` with `deputy_id` deciding meanwhile (audited; the deputy is told).

    Refused: oneself, someone who cannot decide (an auditor, a suspended person), a period in the
    past, longer than 90 days or overlapping another of one's own, and two people naming each other
    for the same time. When the period has begun, the requests already waiting are shared with the
    deputy at once, each in its own transaction after the absence is recorded.
    """
    absence = _absence_create(actor=actor, deputy_id=deputy_id, starts_at=starts_at, ends_at=ends_at, reason=reason)
    if absence.starts_at <= clock.database_now():
        approver_absence_hand_over(absence_id=absence.pk)
    return absence


@state_change
def approver_absence_end(*, actor, absence_id: int) -> ApproverAbsence:
    """End an absence now (back early, or cancel one to come); requests already shared stay shared."""
    absence = ApproverAbsence.objects.select_for_update(no_key=True).filter(pk=absence_id).first()
    if absence is None or absence.approver_id != actor.pk:
        raise PermissionRefused("You may end only your own absence.")
    now = clock.database_now()
    if absence.ended_at is not None or absence.ends_at <= now:
        raise InvalidTransition(f"{absence} is already over.")
    absence.ended_at = now
    absence.save(update_fields=["ended_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.APPROVER_ABSENCE_ENDED,
        target=absence,
        data={"deputy": absence.deputy_id, "ends_at": absence.ends_at, "ended_at": now},
    )
    return absence


#
# Sharing waiting requests with the deputy
#
def _deputy_refusal(deputy, request: AccessRequest) -> str | None:
    """Why this deputy may not decide this request (self-approval stays impossible), or None."""
    from .routing import excluded_user_ids

    if deputy.pk in excluded_user_ids(request):
        return "a party to the request"
    if policies.conflict_of_interest(deputy, request):
        return "a party to the request"
    if Approval.objects.filter(request=request, approver=deputy).exists():
        return "already decided on it"
    return may_deputise(deputy)


@state_change
def access_request_hand_to_deputy(*, request_id: int, absence_id: int) -> bool:
    """Add the deputy of an absent approver to the stage the request waits on, if that stage is theirs.

    Under the request's lock (the order every decision takes), so a decision or a cancel racing
    with it ends in one outcome. Idempotent: a deputy already eligible is not added or told twice.
    """
    from .requests import _lock_request

    request = _lock_request(request_id)
    if request.status != RequestStatus.PENDING:
        return False
    absence = ApproverAbsence.objects.filter(pk=absence_id).select_related("approver").first()
    now = clock.database_now()
    if absence is None or absence.ended_at is not None or not absence.starts_at <= now < absence.ends_at:
        return False
    stage = ApprovalStage.objects.filter(request=request).waiting().order_by("position").first()
    if stage is None or not stage.eligible.filter(pk=absence.approver_id).exists():
        return False
    deputy = absent_deputies([absence.approver_id], now).get(absence.approver_id)
    if deputy is None or stage.eligible.filter(pk=deputy.pk).exists() or _deputy_refusal(deputy, request):
        return False
    stage.eligible.add(deputy)
    notify(
        recipients=[deputy],
        kind="request.approval_needed",  # an ask: withdrawn like the others once nobody needs it
        subject=(
            f"Approval needed: {request.entitlement.name} for {request.beneficiary.name} "
            f"(for {absence.approver.get_username()}, away)"
        ),
        body=f"Justification: {request.justification or request.intent or '(none)'}",
        link=reverse("jit:approval_queue"),
        key=f"request:{request.pk}:stage:{stage.position}:deputy:{deputy.pk}",
    )
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.REQUEST_HANDED_TO_DEPUTY,
        target=request,
        data={"stage": stage.position, "absent": absence.approver_id, "deputy": deputy.pk, "absence": absence.pk},
    )
    return True


@state_change
def _mark_handed_over(*, absence_id: int) -> None:
    now = clock.database_now()
    ApproverAbsence.objects.filter(pk=absence_id, handed_over_at__isnull=True).update(handed_over_at=now)


def approver_absence_hand_over(*, absence_id: int) -> int:
    """Share every stage waiting for the absent approver with their deputy; how many were shared.

    One transaction per request, so one request locked by a decision in progress delays only itself,
    and the beneficiaries are never locked out of order. Marked done at the end: a run cut short is
    finished by the next beat (each step is idempotent).
    """
    absence = ApproverAbsence.objects.filter(pk=absence_id).first()
    if absence is None:
        return 0
    waiting = ApprovalStage.objects.waiting().filter(eligible=absence.approver_id)
    shared = 0
    for request_id in waiting.order_by("request_id").values_list("request_id", flat=True).distinct():
        shared += access_request_hand_to_deputy(request_id=request_id, absence_id=absence_id)
    _mark_handed_over(absence_id=absence_id)
    return shared


def approver_absences_hand_over_due() -> int:
    """The beat's part: absences that have begun and whose waiting requests were not yet shared."""
    due = ApproverAbsence.objects.in_force(clock.database_now()).filter(handed_over_at__isnull=True)
    return sum(approver_absence_hand_over(absence_id=pk) for pk in due.order_by("pk").values_list("pk", flat=True))
