"""What each person sees of certification: campaigns, their queue, a preview and progress."""

from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet

from . import policies
from .models import Campaign, ReviewItem
from .models.certification import Decision, RemediationStatus
from .roles import group_names


def _my_identity_id(user) -> int | None:
    identity = policies.identity_of(user)
    return identity.pk if identity is not None else None


def campaigns_visible_to(user) -> QuerySet:
    """Admins and auditors: every campaign. Owners: those with items on what they own. Reviewers:
    those they have (or their groups have) items in."""
    campaigns = Campaign.objects.all()
    if policies.can_read_all_campaigns(user):
        return campaigns
    return campaigns.filter(pk__in=ReviewItem.objects.filter(_items_of(user)).values("campaign_id"))


def _items_of(user) -> Q:
    """The items a person answers for: theirs to review (or their group's), and those on what they own."""
    groups = sorted(group_names(user))
    mine = Q(reviewer=user) | Q(reviewer__isnull=True, reviewer_group__in=groups)
    me = _my_identity_id(user)
    if me is not None:
        mine |= Q(identity__owner_id=me) | Q(entitlement__owner_id=me) | Q(entitlement__system__owner_id=me)
    return mine


def campaign_items_visible_to(user, campaign: Campaign) -> QuerySet:
    """A campaign's items this person may read: all for admins and auditors, else those they answer for."""
    items = ReviewItem.objects.filter(campaign=campaign)
    if policies.can_read_all_campaigns(user):
        return items
    return items.filter(_items_of(user))


def review_queue(user) -> QuerySet:
    """The open items `user` may decide in running campaigns: theirs, or their group's; never their own access."""
    groups = sorted(group_names(user))
    items = ReviewItem.objects.filter(decision="", campaign__status="active").filter(
        Q(reviewer=user) | Q(reviewer__isnull=True, reviewer_group__in=groups)
    )
    if policies.is_read_only(user):
        return items.none()
    return items.exclude(identity__user=user)


@dataclass
class Preview:
    total: int
    per_reviewer: list[tuple[str, int]] = field(default_factory=list)
    without_reviewer: int = 0


def campaign_preview(campaign: Campaign) -> Preview:
    """What launching would open: how many items, for whom, and how many go to the fallback group.

    Computed by the same statement as the launch, in a transaction that is rolled back.
    """
    from django.db import transaction

    from audit.kernel import clock

    from .services.certification import _insert_first_stage, fallback_count

    class _Undo(Exception):
        pass

    result = Preview(total=0)
    try:
        with transaction.atomic():
            now = clock.database_now()
            result.total = _insert_first_stage(campaign, now)
            items = ReviewItem.objects.filter(campaign=campaign)
            result.without_reviewer = fallback_count(campaign)
            rows = (
                items.values("reviewer__username", "reviewer_group")
                .annotate(n=Count("pk"))
                .order_by("-n", "reviewer__username", "reviewer_group")
            )
            result.per_reviewer = [
                (row["reviewer__username"] or f"group “{row['reviewer_group']}”", row["n"]) for row in rows
            ]
            raise _Undo
    except _Undo:
        pass
    return result


def campaign_progress(campaign: Campaign) -> dict[str, int]:
    items = ReviewItem.objects.filter(campaign=campaign)
    return items.aggregate(
        total=Count("pk"),
        decided=Count("pk", filter=~Q(decision="")),
        certified=Count("pk", filter=Q(decision=Decision.CERTIFY)),
        revoked=Count("pk", filter=Q(decision=Decision.REVOKE)),
        by_rule=Count("pk", filter=Q(decided_by_rule=True)),
        remediation_failed=Count("pk", filter=Q(remediation=RemediationStatus.FAILED)),
    )
