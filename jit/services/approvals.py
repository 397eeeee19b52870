"""Approvers' decisions: each is a conditional transition of a locked request."""

from django.db import IntegrityError, transaction

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import audit_event_record, state_change
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.services.notifications import notify

from .. import policies
from ..choices import Decision, RequestStatus, StageStatus
from ..models import AccessRequest, Approval
from .callbacks import request_outcome_callback
from .requests import _approve, _lock_request, notify_approvers, request_url, told_of_outcome, withdraw_asks


@state_change
def access_request_decide(
    *, request_id: int, approver, decision: str, comment: str = "", stage_position: int | None = None
) -> AccessRequest:
    """Record one approver's decision on the current stage; asks nobody can answer any more are withdrawn."""
    request = _decide(
        request_id=request_id, approver=approver, decision=decision, comment=comment, stage_position=stage_position
    )
    withdraw_asks(request)
    return request


def _decide(
    *, request_id: int, approver, decision: str, comment: str = "", stage_position: int | None = None
) -> AccessRequest:
    """Record one approver's decision on the current stage.

    The request row is locked, so two approvers acting at once, an approval racing a cancel, or a
    double-clicked button produce one outcome; the loser gets a conflict and changes nothing.
    `stage_position` (sent by the page) turns a replay on a stage that has moved on into a conflict.
    A denial ends the request; the last stage reaching its quorum approves it and issues the grant.
    """
    if decision not in Decision.values:
        raise ValidationFailed("Decide approve or deny.", field_errors={"decision": ["Approve or deny."]})
    if decision == Decision.DENY and not comment.strip():
        raise ValidationFailed("Say why you deny the request.", field_errors={"comment": ["Required when denying."]})
    request = _lock_request(request_id)
    if request.status != RequestStatus.PENDING:
        raise InvalidTransition(f"Request #{request.pk} is already {request.get_status_display().lower()}.")
    reason = policies.suspended_approver(approver) or policies.conflict_of_interest(approver, request)
    if reason:
        raise PermissionRefused(reason)
    stage = request.stages.filter(status=StageStatus.PENDING).order_by("position").first()
    if stage is None or (stage_position is not None and stage.position != stage_position):
        raise InvalidTransition("This stage has already been decided; reload to see the request as it is now.")
    if not stage.eligible.filter(pk=approver.pk).exists():
        raise PermissionRefused("You are not an approver of this stage.")
    try:
        with transaction.atomic():
            Approval.objects.create(request=request, stage=stage, approver=approver, decision=decision, comment=comment)
    except IntegrityError:
        raise InvalidTransition(
            "You have already decided on this request; one person cannot approve two stages."
        ) from None
    now = clock.database_now()
    if decision == Decision.DENY:
        stage.status, stage.decided_at = StageStatus.DENIED, now
        stage.save(update_fields=["status", "decided_at"])
        request.status, request.decided_at, request.decision_note = RequestStatus.DENIED, now, comment
        request.save(update_fields=["status", "decided_at", "decision_note", "updated_at"])
        audit_event_record(
            actor=approver,
            action=AuditAction.REQUEST_DENIED,
            target=request,
            data={"stage": stage.position, "decision": decision, "comment": comment},
        )
        notify(
            recipients=told_of_outcome(request),
            kind="request.denied",
            subject=f"Denied: {request.entitlement.name} for {request.beneficiary.name}",
            body=comment,
            link=request_url(request),
            key=f"request:{request.pk}:denied",
        )
        request_outcome_callback(request)
        return request
    approvals = stage.approvals.filter(decision=Decision.APPROVE).count()
    audit_event_record(
        actor=approver,
        action=AuditAction.REQUEST_STAGE_APPROVED,
        target=request,
        data={
            "stage": stage.position,
            "decision": decision,
            "comment": comment,
            "approvals": approvals,
            "quorum": stage.quorum,
        },
    )
    if approvals < stage.quorum:
        return request
    stage.status, stage.decided_at = StageStatus.APPROVED, now
    stage.save(update_fields=["status", "decided_at"])
    following = request.stages.filter(status=StageStatus.PENDING).order_by("position").first()
    if following is not None:
        notify_approvers(request, list(following.eligible.all()))
        return request
    _approve(request, actor=approver)
    return request
