"""Beat tasks: thin, idempotent, safe to run twice, late, or from two beats at once."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from audit.kernel import clock
from governance.models import Grant

from .choices import RequestStatus
from .models import AccessRequest
from .services.break_glass_reviews import break_glass_remind_and_escalate, drills_mark_missed
from .services.chasing import chase_pending_requests, lapse_unactivated_requests
from .services.deputies import approver_absences_hand_over_due
from .services.expiry import grants_expire_due
from .services.lifecycle import grant_warn_expiry
from .services.requests import access_request_start_scheduled

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def grants_expire_due_task() -> int:
    return grants_expire_due()


@shared_task(acks_late=True)
def grants_warn_expiry_task() -> int:
    now = clock.now()
    horizon = now + settings.JIT_EXPIRY_WARNING_LEAD
    due = Grant.objects.in_force(now).filter(expires_at__lte=horizon, expiry_warned_at__isnull=True, no_renew=False)
    return sum(grant_warn_expiry(grant_id=pk) for pk in due.values_list("pk", flat=True))


@shared_task(acks_late=True)
def access_requests_chase_task() -> dict[str, int]:
    """Chase pending requests, then close approved ones whose activation window passed unused."""
    return {**chase_pending_requests(), "lapsed": lapse_unactivated_requests()}


@shared_task(acks_late=True)
def access_requests_start_scheduled_task() -> int:
    due = AccessRequest.objects.filter(
        status=RequestStatus.APPROVED,
        grant__isnull=True,
        activation_deadline__isnull=True,
        start_at__lte=clock.database_now(),
    )
    started = 0
    for pk in due.order_by("start_at", "pk").values_list("pk", flat=True):
        try:
            started += access_request_start_scheduled(request_id=pk).grant_id is not None
        except SoftTimeLimitExceeded:  # out of time: stop here, the next run picks up the rest
            raise
        except Exception:  # one broken request must not hold back the others
            logger.exception("Could not start scheduled request %s", pk)
    return started


@shared_task(acks_late=True)
def break_glass_chase_task() -> dict[str, int]:
    """Chase open break-glass reviews (remind, escalate overdue ones to the admins), then mark missed drills."""
    return {**break_glass_remind_and_escalate(), "drills_missed": drills_mark_missed()}


@shared_task(acks_late=True)
def approver_absences_hand_over_task() -> int:
    """Share what waits for approvers whose absence has begun with their deputies (each once)."""
    return approver_absences_hand_over_due()
