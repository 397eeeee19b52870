"""Requests do not wait for ever (beat tasks; idempotent).

A pending request's waiting stage is reminded, then escalated, each once and each timed from when
that stage started waiting; the request times out a fixed time after it was submitted. An approved
request whose holder never activated it within its window lapses.
"""

from django.conf import settings
from django.urls import reverse

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import Actor, audit_event_record, state_change
from governance.services.notifications import notify

from ..choices import RequestStatus
from ..models import AccessRequest, ApprovalStage
from .callbacks import request_outcome_callback
from .requests import _lock_request, request_url, told_of_outcome, withdraw_asks
from .routing import fallback_approvers


def _waiting_stage(request: AccessRequest, stage_position: int | None) -> ApprovalStage | None:
    """The stage the (locked) request waits on, if it is still the one the caller chose."""
    stage = ApprovalStage.objects.filter(request=request).waiting().order_by("position").first()
    if stage is None or (stage_position is not None and stage.position != stage_position):
        return None
    return stage


def _notify_stage(request: AccessRequest, stage: ApprovalStage, approvers: list, *, kind: str, suffix: str) -> None:
    notify(
        recipients=approvers,
        kind=f"request.{kind}",
        subject=f"Approval needed: {request.entitlement.name} for {request.beneficiary.name} ({suffix})",
        body=f"Justification: {request.justification or request.intent or '(none)'}",
        link=reverse("jit:approval_queue"),
        key=f"request:{request.pk}:stage:{stage.position}:{kind}",
    )


@state_change
def access_request_remind(*, request_id: int, stage_position: int | None = None) -> bool:
    """Remind the approvers of the stage the request waits on, once per stage.

    `stage_position` (from the chaser's selection) makes a reminder chosen for a stage that was
    approved in the meantime a no-op instead of an early reminder for the next one.
    """
    request = _lock_request(request_id)
    if request.status != RequestStatus.PENDING:
        return False
    stage = _waiting_stage(request, stage_position)
    if stage is None or stage.reminded_at is not None:
        return False
    approvers = list(stage.eligible.all())
    stage.reminded_at = clock.database_now()
    stage.save(update_fields=["reminded_at"])
    _notify_stage(request, stage, approvers, kind="reminder", suffix="reminder")
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.REQUEST_REMINDED,
        target=request,
        data={"stage": stage.position, "approvers": sorted(u.pk for u in approvers)},
    )
    return True


@state_change
def access_request_escalate(*, request_id: int, stage_position: int | None = None) -> bool:
    """Add the fallback approvers to the stage the request waits on, once per stage."""
    request = _lock_request(request_id)
    if request.status != RequestStatus.PENDING:
        return False
    stage = _waiting_stage(request, stage_position)
    if stage is None or stage.escalated_at is not None:
        return False
    already = set(stage.eligible.values_list("pk", flat=True))
    added = [u for u in fallback_approvers(request) if u.pk not in already]
    stage.eligible.add(*added)
    stage.escalated_at = clock.database_now()
    stage.save(update_fields=["escalated_at"])
    _notify_stage(request, stage, added, kind="escalated", suffix="escalated")
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.REQUEST_ESCALATED,
        target=request,
        data={"stage": stage.position, "added_approvers": sorted(u.pk for u in added)},
    )
    return True


@state_change
def access_request_time_out(*, request_id: int) -> bool:
    request = _lock_request(request_id)
    if request.status != RequestStatus.PENDING:
        return False
    request.status, request.decided_at = RequestStatus.TIMED_OUT, clock.database_now()
    request.decision_note = "Nobody decided in time."
    request.save(update_fields=["status", "decided_at", "decision_note", "updated_at"])
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.REQUEST_TIMED_OUT,
        target=request,
        data={"waited_hours": settings.JIT_TIMEOUT_AFTER.total_seconds() // 3600},
    )
    notify(
        recipients=told_of_outcome(request),
        kind="request.timed_out",
        subject=f"Timed out: {request.entitlement.name} for {request.beneficiary.name}",
        link=request_url(request),
        key=f"request:{request.pk}:timed-out",
    )
    withdraw_asks(request)
    request_outcome_callback(request)
    return True


def chase_pending_requests(*, now=None) -> dict[str, int]:
    """Find requests due a time-out, and waiting stages due an escalation or a reminder; act on each once."""
    now = now or clock.database_now()
    pending = AccessRequest.objects.filter(status=RequestStatus.PENDING)
    done = {"timed_out": 0, "escalated": 0, "reminded": 0}
    for pk in pending.filter(created_at__lte=now - settings.JIT_TIMEOUT_AFTER).values_list("pk", flat=True):
        done["timed_out"] += access_request_time_out(request_id=pk)
    waiting = ApprovalStage.objects.waiting().with_started_at()
    due = waiting.filter(started_at__lte=now - settings.JIT_ESCALATE_AFTER, escalated_at__isnull=True)
    for pk, position in due.order_by("request_id").values_list("request_id", "position"):
        done["escalated"] += access_request_escalate(request_id=pk, stage_position=position)
    due = waiting.filter(started_at__lte=now - settings.JIT_REMIND_AFTER, reminded_at__isnull=True)
    for pk, position in due.order_by("request_id").values_list("request_id", "position"):
        done["reminded"] += access_request_remind(request_id=pk, stage_position=position)
    return done


#
# Activation windows
#
LAPSED_NOTE = "Not activated within its window."


@state_change
def access_request_lapse(*, request_id: int) -> bool:
    """An approved request its holder did not activate within the window ends as timed out, once."""
    request = _lock_request(request_id)
    lapsed = (
        request.status == RequestStatus.APPROVED
        and request.grant_id is None
        and request.activation_deadline is not None
        and request.activation_deadline < clock.database_now()
    )
    if not lapsed:
        return False
    request.status, request.decision_note = RequestStatus.TIMED_OUT, LAPSED_NOTE
    request.save(update_fields=["status", "decision_note", "updated_at"])
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.REQUEST_ACTIVATION_LAPSED,
        target=request,
        data={"activation_deadline": request.activation_deadline},
    )
    notify(
        recipients=told_of_outcome(request),
        kind="request.lapsed",
        subject=f"Not activated in time: {request.entitlement.name} for {request.beneficiary.name}",
        body=f"{LAPSED_NOTE} Request the access again if you still need it.",
        link=request_url(request),
        key=f"request:{request.pk}:lapsed",
    )
    request_outcome_callback(request)
    return True


def lapse_unactivated_requests(*, now=None) -> int:
    """Close every approved request whose activation window passed with nothing activated."""
    now = now or clock.database_now()
    due = AccessRequest.objects.filter(
        status=RequestStatus.APPROVED, grant__isnull=True, activation_deadline__lt=now
    ).order_by("activation_deadline", "pk")
    return sum(access_request_lapse(request_id=pk) for pk in due.values_list("pk", flat=True))
