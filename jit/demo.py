"""Demo requests for `make run`: every login finds work in its queue, made by the real services.

Built after the demo organisation, through the same service functions the pages call, so the
audit trail, notifications and outbox hold exactly what a real day would have left behind.
"""

from datetime import timedelta

from django.contrib.auth import get_user_model

from governance.models import Entitlement, Grant, Identity
from governance.services.grants import grant_confirm_provisioned

from .choices import Decision
from .models import AccessRequest
from .services.approvals import access_request_decide
from .services.requests import access_request_submit

# (requester login, beneficiary name or None for themself, [(system, entitlement), ...] in order of
# preference (the first the beneficiary does not hold yet), hours, justification, ticket).
DEMO_REQUESTS = [
    (
        "requester",
        None,
        [("AWS production", "DeployRole"), ("Kubernetes prod", "edit")],
        4,
        "Deploy the payee-validation hotfix to production.",
        "PAY-1432",
    ),
    (
        "approver",
        None,
        [("Kubernetes prod", "edit"), ("Datadog", "Admin"), ("AWS production", "s3-logs-reader")],
        2,
        "Scale the payments workers for the month-end run.",
        "OPS-88",
    ),
    ("owner", None, [("GitHub", "write"), ("GitHub", "deploy-key")], 8, "Open the Kubernetes upgrade PR.", ""),
    (
        "requester",
        None,
        [("Snowflake", "PII_READER")],
        2,
        "Check the refund history of the customer in SUP-2291.",
        "SUP-2291",
    ),
    ("requester", "svc-riya-report-bot", [("Datadog", "Standard")], 24, "Read dashboards for the weekly report.", ""),
    ("requester", "svc-riya-report-bot", [("Kubernetes prod", "view")], 8, "Count running payment pods.", ""),
]


def _first_not_held(target: Identity, choices: list[tuple[str, str]]) -> Entitlement | None:
    for system, name in choices:
        entitlement = Entitlement.objects.filter(system__name=system, name=name, status="active").first()
        if entitlement and not Grant.objects.live().filter(identity=target, entitlement=entitlement).exists():
            return entitlement
    return None


def demo_requests_build() -> dict[str, int]:
    """Pending approvals for the approver, the owner and the admin, a grant to confirm, one active JIT grant."""
    if AccessRequest.objects.exists():
        return {"requests": 0, "active_grants": 0}
    users = {u.username: u for u in get_user_model().objects.filter(username__in=["requester", "approver", "owner"])}
    made = []
    for login, beneficiary, choices, hours, justification, ticket in DEMO_REQUESTS:
        user = users.get(login)
        target = Identity.objects.filter(name=beneficiary).first() if beneficiary else getattr(user, "identity", None)
        entitlement = _first_not_held(target, choices) if target is not None else None
        if user is None or entitlement is None:
            continue
        made.append(
            access_request_submit(
                actor=user,
                beneficiary_id=target.pk,
                entitlement_id=entitlement.pk,
                duration=timedelta(hours=hours),
                justification=justification,
                ticket=ticket,
            )
        )
    active = 0
    # The last demo request was auto-approved (a low-risk read for a machine): its system owner
    # confirms it, so "My grants" shows a just-in-time grant with its time left.
    if made and users.get("owner") is not None:
        made[-1].refresh_from_db()
        if made[-1].grant_id is not None:
            grant_confirm_provisioned(grant_id=made[-1].grant_id, actor=users["owner"], reference="CHG-20417")
            active = 1
    # Alex approves Riya's deploy as her manager: the request waits on its second stage (Olu).
    first = made[0] if made else None
    if first is not None and first.stages.filter(position=1, eligible=users.get("approver")).exists():
        access_request_decide(
            request_id=first.pk, approver=users["approver"], decision=Decision.APPROVE, comment="Hotfix agreed."
        )
    return {"requests": len(made), "active_grants": active}
