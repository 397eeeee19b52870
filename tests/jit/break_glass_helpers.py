"""Break-glass activations made directly as rows, for the after-the-fact tests (reviews, chasing,
reports, drills): what `break_glass_activate` leaves behind, at any time a test chooses."""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.utils import timezone

from governance.choices import GrantKind, GrantStatus
from jit.models import BreakGlassActivation, BreakGlassEligibility
from tests.factories.governance import EntitlementFactory, PersonFactory

REVIEWERS = "incident-reviewers"


def in_group(identity, name: str):
    """Put a person's login in a group as the world a test starts from (no role-change event)."""
    group = Group.objects.get_or_create(name=name)[0]
    type(identity.user).groups.through.objects.get_or_create(user_id=identity.user.pk, group_id=group.pk)
    return identity


def eligibility_for(holder=None, *, entitlement=None, group: str = "", reviewer_group: str = REVIEWERS, **kw):
    entitlement = entitlement or EntitlementFactory(break_glass_eligible=True, risk_tier="critical")
    return BreakGlassEligibility.objects.create(
        entitlement=entitlement,
        identity=None if group else holder,
        group=group,
        max_duration=kw.pop("max_duration", timedelta(hours=1)),
        reviewer_group=reviewer_group,
        expires_at=kw.pop("expires_at", timezone.now() + timedelta(days=90)),
        **kw,
    )


def activation_row(
    eligibility: BreakGlassEligibility,
    *,
    holder=None,
    at: datetime | None = None,
    duration: timedelta = timedelta(hours=1),
    reviewer=None,
    reviewer_group: str | None = None,
    activated_by=None,
    is_drill: bool = False,
    incident_reference: str = "INC-7",
    ended: bool = False,
    **kw,
) -> BreakGlassActivation:
    """A break-glass grant and its activation, as the service makes them (activated at `at`)."""
    holder = holder or eligibility.identity
    at = at or timezone.now()
    grant_kw = {}
    if ended:
        grant_kw = {"status": GrantStatus.EXPIRED, "revoked_at": at + duration, "end_reason": "expired"}
    from governance.models import Grant

    grant = Grant.objects.create(
        identity=holder,
        entitlement=eligibility.entitlement,
        kind=GrantKind.BREAK_GLASS,
        status=grant_kw.pop("status", GrantStatus.ACTIVE),
        granted_at=at,
        expires_at=at + duration,
        reason=f"Break-glass ({incident_reference})",
        **grant_kw,
    )
    return BreakGlassActivation.objects.create(
        eligibility=eligibility,
        grant=grant,
        identity=holder,
        entitlement=eligibility.entitlement,
        activated_by=activated_by or holder.user,
        incident_reference=incident_reference,
        reason=kw.pop("reason", "The ledger is down."),
        step_up=kw.pop("step_up", "password"),
        is_drill=is_drill,
        activated_at=at,
        ends_at=at + duration,
        review_due_at=at + settings.BREAK_GLASS_REVIEW_WITHIN,
        reviewer_group=eligibility.reviewer_group if reviewer_group is None else reviewer_group,
        reviewer=reviewer,
        **kw,
    )


def person(name: str, *groups: str, roles=None):
    kw = {"user__roles": roles} if roles is not None else {}
    identity = PersonFactory(name=name, user__username=name.lower(), **kw)
    for group in groups:
        in_group(identity, group)
    return identity
