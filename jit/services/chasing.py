"""Pending requests do not wait for ever: remind, escalate, then time out (beat tasks; idempotent)."""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.choices import AuditAction
from audit.services import Actor, audit_event_record
from governance.services.notifications import notify

from ..choices import RequestStatus, StageStatus
from ..models import AccessRequest
from .requests import _lock_request, notify_approvers, request_url
from .routing import fallback_approvers


def _current_stage(request: AccessRequest):
    return request.stages.filter(status=StageStatus.PENDING).order_by("position").first()


@transaction.atomic
def access_request_remind(*, request_id: int) -> bool:
    request = _lock_request(request_id)
    if request.status != RequestStatus.PENDING or request.reminded_at is not None:
        return False
    stage = _current_stage(request)
    approvers = list(stage.eligible.all()) if stage else []
    request.reminded_at = timezone.now()
    request.save(update_fields=["reminded_at", "updated_at"])
    notify_approvers(request, approvers, kind="request.reminder", suffix=" (reminder)")
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.REQUEST_REMINDED,
        target=request,
        data={"stage": stage.position if stage else None, "approvers": sorted(u.pk for u in approvers)},
    )
    return True


@transaction.atomic
def access_request_escalate(*, request_id: int) -> bool:
    """Add the fallback approvers to the waiting stage, once."""
    request = _lock_request(request_id)
    if request.status != RequestStatus.PENDING or request.escalated_at is not None:
        return False
    stage = _current_stage(request)
    added = [u for u in fallback_approvers(request) if stage and not stage.eligible.filter(pk=u.pk).exists()]
    if stage is not None:
        stage.eligible.add(*added)
    request.escalated_at = timezone.now()
    request.save(update_fields=["escalated_at", "updated_at"])
    notify_approvers(request, added, kind="request.escalated", suffix=" (escalated)")
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.REQUEST_ESCALATED,
        target=request,
        data={"stage": stage.position if stage else None, "added_approvers": sorted(u.pk for u in added)},
    )
    return True


@transaction.atomic
def access_request_time_out(*, request_id: int) -> bool:
    request = _lock_request(request_id)
    if request.status != RequestStatus.PENDING:
        return False
    request.status, request.decided_at = RequestStatus.TIMED_OUT, timezone.now()
    request.decision_note = "Nobody decided in time."
    request.save(update_fields=["status", "decided_at", "decision_note", "updated_at"])
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.REQUEST_TIMED_OUT,
        target=request,
        data={"waited_hours": settings.JIT_TIMEOUT_AFTER.total_seconds() // 3600},
    )
    notify(
        recipients=[request.requester] if request.requester else [],
        kind="request.timed_out",
        subject=f"Timed out: {request.entitlement.name} for {request.beneficiary.name}",
        link=request_url(request),
        key=f"request:{request.pk}:timed-out",
    )
    return True


def chase_pending_requests(*, now=None) -> dict[str, int]:
    """Find requests due a reminder, an escalation or a time-out, and act on each once."""
    now = now or timezone.now()
    pending = AccessRequest.objects.filter(status=RequestStatus.PENDING)
    done = {"timed_out": 0, "escalated": 0, "reminded": 0}
    for pk in pending.filter(created_at__lte=now - settings.JIT_TIMEOUT_AFTER).values_list("pk", flat=True):
        done["timed_out"] += access_request_time_out(request_id=pk)
    for pk in pending.filter(created_at__lte=now - settings.JIT_ESCALATE_AFTER, escalated_at__isnull=True).values_list(
        "pk", flat=True
    ):
        done["escalated"] += access_request_escalate(request_id=pk)
    for pk in pending.filter(created_at__lte=now - settings.JIT_REMIND_AFTER, reminded_at__isnull=True).values_list(
        "pk", flat=True
    ):
        done["reminded"] += access_request_remind(request_id=pk)
    return done
