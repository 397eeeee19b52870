"""Approvers' decisions: each is a conditional transition of a locked request."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import audit_event_record, state_change
from governance.errors import DomainError, InvalidTransition, PermissionRefused, ValidationFailed
from governance.services.notifications import notify

from .. import policies
from ..choices import Decision, RequestStatus, StageStatus
from ..models import AccessRequest, Approval
from ..policy import human_duration
from .callbacks import request_outcome_callback
from .requests import _approve, _lock_request, notify_approvers, request_url, told_of_outcome, withdraw_asks


@state_change
def access_request_decide(
    *,
    request_id: int,
    approver,
    decision: str,
    comment: str = "",
    stage_position: int | None = None,
    duration: timedelta | None = None,
    start_at: datetime | None = None,
) -> AccessRequest:
    """Record one approver's decision on the current stage; asks nobody can answer any more are withdrawn.

    An approval may grant less than was asked: a shorter `duration`, a later `start_at` (never
    longer, never earlier; both values audited). Later stages decide on what is left.
    """
    request = _decide(
        request_id=request_id,
        approver=approver,
        decision=decision,
        comment=comment,
        stage_position=stage_position,
        duration=duration,
        start_at=start_at,
    )
    withdraw_asks(request)
    return request


# Within this of the asked start counts as the asked start: a page shows minutes, a request keeps seconds.
START_SLACK = timedelta(minutes=1)


def _narrowed(request: AccessRequest, duration: timedelta | None, start_at: datetime | None, now: datetime) -> dict:
    """What this approval changes of the (locked) request: {"duration": ..., "start_at": ...}, only what differs.

    Refused: a longer time or an earlier start than asked (a wider grant needs a new request, which
    the policy judges), a start in the past or beyond the policy's horizon, a later start for an
    extension (it runs on from the grant it extends).
    """
    changes: dict = {}
    if duration is not None and duration != request.duration:
        if duration <= timedelta(0):
            message = "Approve for a positive time."
            raise ValidationFailed(message, field_errors={"duration": [message]})
        if duration > request.duration:
            message = f"At most the {human_duration(request.duration)} asked: an approval may shorten, never lengthen."
            raise ValidationFailed(message, field_errors={"duration": [message]})
        changes["duration"] = duration
    if start_at is not None:
        asked = request.start_at or now
        if abs(start_at - asked) < START_SLACK:
            return changes
        if request.renewal_of_id is not None:
            message = "An extension runs on from the grant it extends; it cannot start later."
            raise ValidationFailed(message, field_errors={"start_at": [message]})
        if start_at < asked:
            message = (
                f"Not earlier than asked ({request.start_at:%Y-%m-%d %H:%M} UTC): an approval may delay, never advance."
                if request.start_at
                else "The start cannot be in the past."
            )
            raise ValidationFailed(message, field_errors={"start_at": [message]})
        if start_at > now + settings.JIT_MAX_START_AHEAD:
            message = f"The start can be at most {settings.JIT_MAX_START_AHEAD.days} days ahead."
            raise ValidationFailed(message, field_errors={"start_at": [message]})
        changes["start_at"] = start_at
    return changes


def _decide(
    *,
    request_id: int,
    approver,
    decision: str,
    comment: str = "",
    stage_position: int | None = None,
    duration: timedelta | None = None,
    start_at: datetime | None = None,
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
    if decision == Decision.DENY and (duration is not None or start_at is not None):
        message = "A denial grants nothing: approve for less, or deny without a duration or start."
        raise ValidationFailed(message, field_errors={"duration": [message]})
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
    now = clock.database_now()
    changes = _narrowed(request, duration, start_at, now) if decision == Decision.APPROVE else {}
    try:
        with transaction.atomic():
            Approval.objects.create(
                request=request, stage=stage, approver=approver, decision=decision, comment=comment, **changes
            )
    except IntegrityError:
        raise InvalidTransition(
            "You have already decided on this request; one person cannot approve two stages."
        ) from None
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
    data = {
        "stage": stage.position,
        "decision": decision,
        "comment": comment,
        "approvals": approvals,
        "quorum": stage.quorum,
    }
    if changes:
        # What was asked and what this approver approved instead, both kept (the request holds only the latter).
        data["before"] = {"duration_seconds": int(request.duration.total_seconds()), "start_at": request.start_at}
        for field, value in changes.items():
            setattr(request, field, value)
        request.save(update_fields=[*changes, "updated_at"])
        data["after"] = {"duration_seconds": int(request.duration.total_seconds()), "start_at": request.start_at}
    audit_event_record(actor=approver, action=AuditAction.REQUEST_STAGE_APPROVED, target=request, data=data)
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


#
# Deciding a selection
#
MAX_SELECTION = 100


@dataclass(frozen=True)
class DecisionResult:
    """How one request of a selection fared: decided (with the request as it is now), or why not."""

    request_id: int
    request: AccessRequest | None = None
    error: DomainError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def access_requests_decide_many(
    *, approver, selection: list[tuple[int, int | None]], decision: str, comment: str = ""
) -> list[DecisionResult]:
    """Approve or deny a selection of (request id, stage position): each through `access_request_decide`.

    Each decision is its own transaction, not one for all: each request locks its own beneficiary
    and entitlement in the documented order (one transaction would hold twenty people's rows at
    once, out of that order across requests), and one that cannot be decided any more (decided by
    someone else meanwhile, cancelled, a holder suspended) fails alone and is reported beside the
    others' results instead of undoing decisions that were each made knowingly. The input is
    checked first, so a denial without a comment decides nothing at all.
    """
    if decision not in Decision.values:
        raise ValidationFailed("Decide approve or deny.", field_errors={"decision": ["Approve or deny."]})
    if decision == Decision.DENY and not comment.strip():
        raise ValidationFailed(
            "Say why you deny the selected requests.", field_errors={"comment": ["Required when denying."]}
        )
    if not selection:
        raise ValidationFailed("Select at least one request.", field_errors={"selected": ["Select at least one."]})
    if len(selection) > MAX_SELECTION:
        message = f"Select at most {MAX_SELECTION} requests at once."
        raise ValidationFailed(message, field_errors={"selected": [message]})
    results = []
    for request_id, stage_position in selection:
        try:
            decided = access_request_decide(
                request_id=request_id,
                approver=approver,
                decision=decision,
                comment=comment,
                stage_position=stage_position,
            )
        except DomainError as error:
            results.append(DecisionResult(request_id=request_id, error=error))
        else:
            results.append(DecisionResult(request_id=request_id, request=decided))
    return results
