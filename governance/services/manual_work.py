"""Access the manual connector asked a person to put in place or remove does not wait for ever.

A grant waiting on its system owner reminds them after MANUAL_WORK_REMIND_AFTER and goes to the
admins after MANUAL_WORK_ESCALATE_AFTER: access nobody confirmed removed is access still held. Each
happens once per phase (keyed on the grant's status and when it entered it), so the beat task may
run twice, late, or in two workers.
"""

from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import Actor, audit_event_record, state_change

from ..choices import Connector, GrantStatus
from ..connectors.manual import grant_url
from ..models import Grant
from ..roles import Role
from .notifications import notify, users_of

WAITING = (GrantStatus.PENDING_PROVISION, GrantStatus.REVOKING)


def _waiting_for_hands():
    return Grant.objects.filter(status__in=WAITING, entitlement__system__connector=Connector.MANUAL)


def _admins() -> list:
    return list(get_user_model().objects.filter(groups__name=Role.ADMIN, is_active=True))


@state_change
def grant_chase_manual_work(*, grant_id: int, step: str) -> bool:
    """Remind the system owner (`step="reminder"`) or tell the admins (`"escalation"`), once per phase."""
    grant = (
        _waiting_for_hands()
        .select_for_update(skip_locked=True, of=("self",), no_key=True)
        .select_related("identity", "entitlement__system__owner")
        .filter(pk=grant_id)
        .first()
    )
    if grant is None:
        return False
    system, removing = grant.entitlement.system, grant.status == GrantStatus.REVOKING
    verb = "remove" if removing else "put in place"
    what = f"{grant.entitlement.name} on {system.name} {'from' if removing else 'for'} {grant.identity.name}"
    waiting = timezone.now() - grant.updated_at
    recipients = users_of(system.owner) if step == "reminder" else _admins()
    sent = notify(
        recipients=recipients,
        kind=f"grant.manual_{step}",
        subject=f"Still waiting: {verb} {what} ({waiting.days} d {waiting.seconds // 3600} h)",
        body=f"{system.name} is provisioned by hand. Nobody has confirmed this yet; do it in the system, "
        "then confirm it on the grant's page.",
        link=grant_url(grant),
        key=f"grant:{grant.pk}:{grant.status}:{grant.updated_at.timestamp()}:{step}",
    )
    if not sent:
        return False
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.GRANT_MANUAL_WORK_ESCALATED
        if step == "escalation"
        else AuditAction.GRANT_MANUAL_WORK_REMINDED,
        target=grant,
        data={"status": grant.status, "waiting_seconds": int(waiting.total_seconds()), "notified": sent},
    )
    return True


def chase_manual_work(*, now: datetime | None = None) -> dict[str, int]:
    """Find grants waiting on a person past each threshold and chase each once."""
    now = now or clock.database_now()
    done = {"escalated": 0, "reminded": 0}
    for step, after, counter in (
        ("escalation", settings.MANUAL_WORK_ESCALATE_AFTER, "escalated"),
        ("reminder", settings.MANUAL_WORK_REMIND_AFTER, "reminded"),
    ):
        for pk in _waiting_for_hands().filter(updated_at__lte=now - after).order_by("pk").values_list("pk", flat=True):
            done[counter] += grant_chase_manual_work(grant_id=pk, step=step)
    return done
