"""Demo break-glass for `make run`: eligibility, one reviewed activation, one live and unreviewed, a drill.

Made through the real services where the time allows (eligibility, today's activation with the
password step-up, the review, the drill). Yesterday's activation cannot be made by the activation
service today, so its rows are written as the service leaves them, with its activation event, and it
is then reviewed through the review service like any other.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import audit_event_record, state_change
from governance.choices import GrantKind, GrantStatus
from governance.errors import DomainError
from governance.models import Entitlement, Grant
from governance.services.grants import grant_confirm_provisioned

from .choices import ReviewOutcome
from .models import BreakGlassActivation, BreakGlassEligibility
from .services.break_glass_reviews import break_glass_review_record, drill_schedule

# (login, system, entitlement, incident reference, reason)
LIVE = ("requester", "AWS production", "AdministratorAccess", "INC-5120", "Checkout returns 502 after the AWS outage.")
YESTERDAY = (
    "approver",
    "Kubernetes prod",
    "cluster-admin",
    "INC-5093",
    "Payment pods crash-loop; the node pool is stuck.",
)


def _entitlement(system: str, name: str) -> Entitlement | None:
    return Entitlement.objects.filter(system__name=system, name=name, break_glass_eligible=True).first()


@state_change
def _yesterday(eligibility: BreakGlassEligibility, user, incident: str, reason: str) -> BreakGlassActivation:
    """An activation that began 20 hours ago and ran its hour: the rows and event the service leaves."""
    now = clock.database_now()
    started, ends = now - timedelta(hours=20), now - timedelta(hours=19)
    grant = Grant.objects.create(
        identity=eligibility.identity,
        entitlement=eligibility.entitlement,
        kind=GrantKind.BREAK_GLASS,
        status=GrantStatus.EXPIRED,
        granted_at=started,
        expires_at=ends,
        revoked_at=ends,
        end_reason="expired",
        reason=f"Break-glass ({incident}): {reason}",
    )
    owner = eligibility.entitlement.owner
    activation = BreakGlassActivation.objects.create(
        eligibility=eligibility,
        grant=grant,
        identity=eligibility.identity,
        entitlement=eligibility.entitlement,
        activated_by=user,
        incident_reference=incident,
        reason=reason,
        step_up="password",
        activated_at=started,
        ends_at=ends,
        review_due_at=started + settings.BREAK_GLASS_REVIEW_WITHIN,
        reviewer=owner.user if owner is not None and owner.user_id else None,
        reviewer_group="" if owner is not None and owner.user_id else settings.BREAK_GLASS_SECURITY_GROUP,
    )
    audit_event_record(
        actor=user,
        action=AuditAction.BREAK_GLASS_ACTIVATED,
        target=activation,
        data={
            "grant": grant.pk,
            "incident_reference": incident,
            "activated_at": started,
            "ends_at": ends,
            "demo": True,
        },
    )
    return activation


def demo_break_glass_build(*, password: str) -> dict[str, int | bool]:
    """Once (skipped when any activation exists): eligibility for Riya and Alex, Alex's activation of
    yesterday reviewed by Olu, Riya's live one (she re-authenticates with `password`, the demo logins')
    waiting for its review, and a drill next week."""
    from .services.break_glass import break_glass_activate, eligibility_create

    if BreakGlassActivation.objects.exists():
        return {"skipped": True}
    users = {
        u.username: u for u in get_user_model().objects.filter(username__in=["requester", "approver", "owner", "admin"])
    }
    admin = users.get("admin")
    made = {"skipped": False, "eligibilities": 0, "reviewed": 0, "unreviewed": 0, "drills": 0}
    if admin is None:
        return made
    now = clock.now()
    eligibilities = {}
    for login, system, name, *_ in (LIVE, YESTERDAY):
        entitlement, user = _entitlement(system, name), users.get(login)
        identity = getattr(user, "identity", None) if user is not None else None
        if entitlement is None or identity is None:
            continue
        eligibilities[login] = eligibility_create(
            actor=admin,
            entitlement=entitlement,
            identity=identity,
            max_duration=timedelta(hours=1),
            expires_at=now + timedelta(days=90),
            reason="On-call for production incidents.",
        )
        made["eligibilities"] += 1

    if "approver" in eligibilities:
        login, _system, _name, incident, reason = YESTERDAY
        activation = _yesterday(eligibilities[login], users[login], incident, reason)
        reviewer = activation.reviewer or users.get("owner")
        try:
            break_glass_review_record(
                activation_id=activation.pk,
                actor=reviewer,
                outcome=ReviewOutcome.JUSTIFIED,
                notes="Matches INC-5093 in the incident log; the node pool was repaired within the hour.",
            )
            made["reviewed"] = 1
        except DomainError:
            made["unreviewed"] += 1

    if "requester" in eligibilities:
        login, _system, _name, incident, reason = LIVE
        eligibility = eligibilities[login]
        try:
            activation = break_glass_activate(
                actor=users[login],
                eligibility_id=eligibility.pk,
                incident_reference=incident,
                reason=reason,
                password=password,
            )
        except DomainError:
            activation = None
        if activation is not None:
            made["unreviewed"] += 1
            system_owner = eligibility.entitlement.system.owner
            confirmer = system_owner.user if system_owner is not None and system_owner.user_id else admin
            if activation.grant.status == GrantStatus.PENDING_PROVISION:
                grant_confirm_provisioned(grant_id=activation.grant_id, actor=confirmer, reference="BG-DEMO")
        drill_schedule(
            actor=admin,
            eligibility_id=eligibility.pk,
            scheduled_for=now + timedelta(days=7),
            notes="Quarterly drill: break glass, check the alert reaches the on-call channel, let it expire, review.",
        )
        made["drills"] = 1
    return made
