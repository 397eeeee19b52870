"""Certification on a clock and on events: reminders, escalation, closing at the due date, recurring
campaigns, the standing cadence review, and micro-reviews after a change.

Beat tasks call these, and each is safe to run twice, late, or from two beats at once: reminders and
escalations claim their items with row locks that skip what another run holds and mark them in the
same transaction; closing and scheduling lock the campaign row and read its state again; the cadence
review runs under one advisory lock and leaves out grants already under open review. Notifications
carry keys, so a repeat sends nothing. Reviewers hear at most once a day, of all their open items
at once, never once per item.

Micro-reviews: an identity's move, an owner change or an entitlement's tier raised opens one small
campaign (kind EVENT) for the grants it touches, inside the changing service's transaction, so the
review exists exactly when the change does. One campaign per event rather than one shared "changes"
campaign per day: each event has its own natural reviewer (the new manager or owner, the entitlement
owner), its own evidence (the description says what changed), and no shared row has to be created
under a race by two changes at once. Grants already under open review get no second item.
"""

import logging
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import (
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Cast, Coalesce
from django.urls import NoReverseMatch, reverse

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import Actor, ActorLike, audit_event_record, state_change

from ..choices import IdentityKind, IdentityStatus, RiskTier
from ..locks import lock
from ..models import Campaign, CampaignStatus, Entitlement, Grant, Identity, ReviewItem
from ..models.certification import CampaignKind, Decision, ReviewerSource
from ..querysets import in_force_q
from ..roles import Role
from .certification import (
    CAMPAIGN_FIELDS,
    _queue_link,
    campaign_close,
    campaign_create,
    campaign_launch,
)
from .notifications import notify

logger = logging.getLogger(__name__)
User = get_user_model()
# Two cadence runs at once would both find the same overdue grants; the second waits, then finds none.
_CADENCE_LOCK_KEY = 0x63616465_6E6365  # "cadence"


def _link(name: str, *args: Any) -> str:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:  # the pages are not mounted (a shell, a command before the urls load)
        return ""


def _open_review() -> Exists:
    """A grant (the outer row) already has an undecided item in a running campaign."""
    return Exists(
        ReviewItem.objects.filter(grant_id=OuterRef("pk"), decision="", campaign__status=CampaignStatus.ACTIVE)
    )


def _open_items() -> QuerySet:
    return ReviewItem.objects.filter(decision="", campaign__status=CampaignStatus.ACTIVE)


def _claim(items: QuerySet, *fields: str) -> list[tuple]:
    """Lock these items for this run, skipping those another run holds: each is handled once."""
    return list(items.select_for_update(skip_locked=True, of=("self",), no_key=True).values_list("pk", *fields))


def _active_members(*groups: str) -> QuerySet:
    return User.objects.filter(is_active=True, groups__name__in=groups).distinct()


#
# Launching a campaign for chosen grants (the services launch a scope; these reviews pick grants)
#
def campaign_launch_for_grants(*, campaign_id: int, grants: QuerySet, actor: ActorLike) -> Campaign:
    """Launch a draft for `grants` in force and not under open review, rather than for its scope."""
    return campaign_launch(campaign_id=campaign_id, actor=actor, grants=grants.exclude(_open_review()))


def _open_campaign(
    *, kind: str, name: str, description: str, reviewer: str, grants: QuerySet, due_days: int, now: datetime
) -> Campaign | None:
    """Create and launch a campaign for `grants` (those in force and not under open review), by the
    system; None when no grant is left, so a change that touches nothing opens nothing."""
    grants = grants.filter(in_force_q(now)).exclude(_open_review())
    if not grants.exists():
        return None
    campaign = campaign_create(
        actor=Actor.system(),
        name=name[:200],
        kind=kind,
        description=description[:2000],
        reviewer=reviewer,
        due_at=now + timedelta(days=due_days),
    )
    return campaign_launch_for_grants(campaign_id=campaign.pk, grants=grants, actor=Actor.system())


#
# Reminders and escalation
#
@state_change
def reviews_remind(*, now: datetime | None = None) -> dict[str, int]:
    """Remind whoever may decide open items not mentioned for CERTIFICATION_REMINDER_HOURS: one notice
    per person per day, counting all their items across campaigns."""
    now = now or clock.database_now()
    cutoff = now - timedelta(hours=settings.CERTIFICATION_REMINDER_HOURS)
    due = _open_items().filter(Q(reminded_at__lte=cutoff) | Q(reminded_at__isnull=True, created_at__lte=cutoff))
    claimed = _claim(due, "campaign_id", "reviewer_id", "reviewer_group")
    if not claimed:
        return {"items": 0, "notified": 0}
    ids = [pk for pk, *_ in claimed]
    for start in range(0, len(ids), 5000):
        ReviewItem.objects.filter(pk__in=ids[start : start + 5000]).update(reminded_at=now)

    per_user: Counter[int] = Counter()
    per_group: Counter[str] = Counter()
    reviewers_by_campaign: dict[int, set[int]] = defaultdict(set)
    groups_by_campaign: dict[int, set[str]] = defaultdict(set)
    items_by_campaign: Counter[int] = Counter()
    for _pk, campaign_id, reviewer_id, group in claimed:
        items_by_campaign[campaign_id] += 1
        if reviewer_id is not None:
            per_user[reviewer_id] += 1
            reviewers_by_campaign[campaign_id].add(reviewer_id)
        elif group:
            per_group[group] += 1
            groups_by_campaign[campaign_id].add(group)
    for user_id, group in _active_members(*per_group).values_list("pk", "groups__name"):
        if group in per_group:
            per_user[user_id] += per_group[group]

    notified = 0
    link = _queue_link()
    for user in User.objects.filter(pk__in=list(per_user), is_active=True).order_by("pk"):
        count = per_user[user.pk]
        notified += notify(
            recipients=[user],
            kind="review.reminder",
            subject=f"{count} access review{'s' if count != 1 else ''} waiting for you",
            body="Certify or revoke the access in your review queue before the due date; undecided items are "
            "then decided by the campaign's rule.",
            link=link,
            key=f"review-reminder:{now:%Y-%m-%d}",
        )
    for campaign in Campaign.objects.filter(pk__in=list(items_by_campaign)).order_by("pk"):
        audit_event_record(
            actor=Actor.system(),
            action=AuditAction.REVIEW_REMINDED,
            target=campaign,
            data={
                "items": items_by_campaign[campaign.pk],
                "reviewers": sorted(reviewers_by_campaign[campaign.pk]),
                "groups": sorted(groups_by_campaign[campaign.pk]),
            },
        )
    return {"items": len(claimed), "notified": notified}


def _reviewer_missing() -> Q:
    """Nobody can decide the item: its reviewer is deactivated, suspended or gone, or its group has
    no active member."""
    member = User.objects.filter(is_active=True, groups__name=OuterRef("reviewer_group"))
    return (
        Q(reviewer__isnull=False)
        & (
            Q(reviewer__is_active=False)
            | Q(reviewer__identity__status__in=[IdentityStatus.SUSPENDED, IdentityStatus.OFFBOARDED])
        )
    ) | (Q(reviewer__isnull=True) & (Q(reviewer_group="") | ~Exists(member)))


def _escalate(items: QuerySet, *, level: int, now: datetime) -> dict[int, int]:
    """Raise the claimed items to `level` and tell, per campaign, the fallback group (1) or the admins (2)."""
    claimed = _claim(items.filter(escalation_level__lt=level), "campaign_id")
    if not claimed:
        return {}
    ReviewItem.objects.filter(pk__in=[pk for pk, _ in claimed], escalation_level__lt=level).update(
        escalation_level=level
    )
    per_campaign = Counter(campaign_id for _, campaign_id in claimed)
    for campaign in Campaign.objects.filter(pk__in=list(per_campaign)).order_by("pk"):
        count = per_campaign[campaign.pk]
        if level == 1:
            group = campaign.fallback_group
            subject = f"{count} review{'s' if count != 1 else ''} in {campaign.name} undecided, due soon"
            body = (
                f"They are due {campaign.due_at:%Y-%m-%d %H:%M} UTC. Decide them, or ask their reviewers to; "
                "at the due date the campaign's rule decides what nobody did."
            )
        else:
            group = Role.ADMIN
            subject = f"{count} review{'s' if count != 1 else ''} in {campaign.name} have nobody to decide them"
            body = (
                "Their reviewer left, was suspended or deactivated, or their group has no active member: reassign them."
            )
        notified = notify(
            recipients=_active_members(group).order_by("pk"),
            kind="review.escalation",
            subject=subject[:200],
            body=body,
            link=_link("governance:campaign_detail", campaign.pk),
            key=f"campaign:{campaign.pk}:escalation:{level}:{now:%Y-%m-%d}",
        )
        audit_event_record(
            actor=Actor.system(),
            action=AuditAction.REVIEW_ESCALATED,
            target=campaign,
            data={"level": level, "items": count, "to_group": group, "notified": notified},
        )
    return per_campaign


@state_change
def reviews_escalate(*, now: datetime | None = None) -> dict[str, int]:
    """Level 2: items nobody can decide go to the admins at once. Level 1: items still undecided when
    fewer than CERTIFICATION_ESCALATE_BEFORE_HOURS remain go to the campaign's fallback group. Each
    item is escalated to each level once."""
    now = now or clock.database_now()
    missing = _escalate(_open_items().filter(_reviewer_missing()), level=2, now=now)
    soon = _open_items().filter(
        campaign__due_at__gt=now,
        campaign__due_at__lte=now + timedelta(hours=settings.CERTIFICATION_ESCALATE_BEFORE_HOURS),
    )
    near = _escalate(soon, level=1, now=now)
    return {"to_admins": sum(missing.values()), "to_fallback": sum(near.values())}


@state_change
def reviews_chase(*, now: datetime | None = None) -> dict[str, int]:
    """Escalate, then remind, in one transaction: two runs at once each claim a share of the items and
    skip the other's, so every item is escalated and reminded once, none left out by the other's locks."""
    now = now or clock.database_now()
    return {**reviews_escalate(now=now), **reviews_remind(now=now)}


#
# Closing at the due date, and the next round of a recurring campaign
#
def campaigns_close_due(*, now: datetime | None = None) -> dict[str, int]:
    """Close each running campaign past its due date (its own transaction: one that fails waits for the
    next run without holding back the others), applying its rule to what nobody decided."""
    now = now or clock.database_now()
    due = Campaign.objects.filter(status=CampaignStatus.ACTIVE, due_at__lte=now).order_by("due_at", "pk")
    closed = failed = 0
    for pk in due.values_list("pk", flat=True):
        try:
            campaign_close(campaign_id=pk, actor=Actor.system())
            closed += 1
        except Exception:
            logger.exception("Closing campaign %s failed; the next run tries again", pk)
            failed += 1
    return {"closed": closed, "failed": failed}


@state_change
def campaign_schedule_next(*, campaign_id: int, now: datetime | None = None) -> Campaign | None:
    """The next round of a closed recurring campaign: its definition with the dates moved by
    `recurrence_days` (past rounds skipped), launched at once when its start has come, else by
    `campaigns_launch_scheduled`. A round that exists already is returned, never made twice."""
    campaign = lock(Campaign, campaign_id)
    if campaign.status != CampaignStatus.CLOSED or not campaign.recurrence_days:
        return None
    existing = Campaign.objects.filter(previous=campaign).first()
    if existing is not None:
        return existing
    now = now or clock.database_now()
    step = timedelta(days=campaign.recurrence_days)
    starts, due = (campaign.starts_at or campaign.launched_at or now) + step, campaign.due_at + step
    while due <= now:  # a series that closed late skips the rounds already over
        starts, due = starts + step, due + step
    fields = {name: getattr(campaign, name) for name in CAMPAIGN_FIELDS if name not in ("name", "due_at", "starts_at")}
    successor = campaign_create(
        actor=Actor.system(),
        name=campaign.name,
        due_at=due,
        starts_at=starts,
        kind=campaign.kind,
        previous=campaign,
        **fields,
    )
    if starts <= now:
        successor = campaign_launch(campaign_id=successor.pk, actor=Actor.system())
    return successor


def campaigns_schedule_next(*, now: datetime | None = None) -> dict[str, int]:
    """Schedule the next round of every closed recurring campaign that has none (closed by the beat or
    by an admin); a cancelled campaign ends its series."""
    closed = Campaign.objects.filter(
        status=CampaignStatus.CLOSED, recurrence_days__isnull=False, recurrence_days__gt=0, next__isnull=True
    )
    made = 0
    for pk in closed.order_by("pk").values_list("pk", flat=True):
        made += campaign_schedule_next(campaign_id=pk, now=now) is not None
    return {"scheduled": made}


def campaigns_launch_scheduled(*, now: datetime | None = None) -> dict[str, int]:
    """Launch the rounds of recurring campaigns whose start has come (admins may edit them until then)."""
    now = now or clock.database_now()
    ready = Campaign.objects.filter(status=CampaignStatus.DRAFT, previous__isnull=False, starts_at__lte=now)
    launched = 0
    for pk in ready.order_by("starts_at", "pk").values_list("pk", flat=True):
        campaign_launch(campaign_id=pk, actor=Actor.system())
        launched += 1
    return {"launched": launched}


#
# The standing cadence review
#
def grants_past_cadence(now: datetime) -> QuerySet:
    """Grants in force whose entitlement's review cadence has passed since they were last certified,
    or since they were granted when never certified."""
    last_certified = (
        ReviewItem.objects.filter(grant_id=OuterRef("pk"), decision=Decision.CERTIFY)
        .order_by()
        .values("grant_id")
        .annotate(last=Max("decided_at"))
        .values("last")
    )
    cadence = ExpressionWrapper(
        Cast("entitlement__review_cadence_days", IntegerField())
        * Value(timedelta(days=1), output_field=DurationField()),
        output_field=DurationField(),
    )
    since = Coalesce(Subquery(last_certified, output_field=DateTimeField()), F("granted_at"), F("created_at"))
    return (
        Grant.objects.filter(in_force_q(now))
        .alias(review_due_at=ExpressionWrapper(since + cadence, output_field=DateTimeField()))
        .filter(review_due_at__lte=now)
    )


@state_change
def cadence_review_launch(*, now: datetime | None = None) -> Campaign | None:
    """Open today's cadence campaign: an item for every grant past its entitlement's review cadence
    and not under open review. None when there is nothing to review."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CADENCE_LOCK_KEY])
    now = now or clock.database_now()
    return _open_campaign(
        kind=CampaignKind.CADENCE,
        name=f"Review cadence passed ({now:%Y-%m-%d})",
        description="Access not certified within its entitlement's review cadence.",
        reviewer=ReviewerSource.ENTITLEMENT_OWNER,
        grants=grants_past_cadence(now),
        due_days=settings.CERTIFICATION_CADENCE_REVIEW_DAYS,
        now=now,
    )


#
# Micro-reviews after a change (called by the changing services, inside their transaction)
#
def _label(identity_id: int | None) -> str:
    if identity_id is None:
        return "nobody"
    return Identity.objects.filter(pk=identity_id).values_list("name", flat=True).first() or f"#{identity_id}"


def _micro_review(subject: str, description: str, reviewer: str, grants: QuerySet) -> Campaign | None:
    return _open_campaign(
        kind=CampaignKind.EVENT,
        name=f"Change review: {subject}",
        description=description,
        reviewer=reviewer,
        grants=grants,
        due_days=settings.CERTIFICATION_EVENT_REVIEW_DAYS,
        now=clock.database_now(),
    )


def micro_review_identity_moved(identity: Identity, change: dict[str, dict[str, Any]]) -> Campaign | None:
    """After a team, manager or job title change: the identity's access, reviewed by whoever answers for
    it now (a person's manager, a machine's owner)."""
    before, after = change.get("before", {}), change.get("after", {})
    moved = []
    if "team" in after:
        moved.append(f"team {before.get('team') or 'none'} → {after['team'] or 'none'}")
    if "manager" in after:
        moved.append(f"manager {_label(before.get('manager'))} → {_label(after['manager'])}")
    if "title" in after:  # a job title, as an identity provider keeps it (identity_sources.scim)
        moved.append(f"title {before.get('title') or 'none'} → {after['title'] or 'none'}")
    if not moved:
        return None
    return _micro_review(
        f"{identity.name} moved",
        f"{identity.name} moved ({'; '.join(moved)}): is the access held still needed?",
        ReviewerSource.IDENTITY_OWNER,
        Grant.objects.filter(identity=identity),
    )


def micro_review_owner_changed(identity: Identity, change: dict[str, dict[str, Any]]) -> Campaign | None:
    """After a machine changed hands: its new owner attests each access it holds is still needed."""
    after = change.get("after", {})
    if "owner" not in after or identity.kind == IdentityKind.HUMAN:
        return None
    before = change.get("before", {})
    return _micro_review(
        f"{identity.name} has a new owner",
        f"{identity.name} passed from {_label(before.get('owner'))} to {_label(after['owner'])}: "
        "is the access it holds still needed?",
        ReviewerSource.IDENTITY_OWNER,
        Grant.objects.filter(identity=identity),
    )


def micro_review_tier_raised(entitlement: Entitlement, change: dict[str, dict[str, Any]]) -> Campaign | None:
    """After an entitlement's risk tier was raised: everyone holding it, reviewed by its owner."""
    before, after = change.get("before", {}).get("risk_tier"), change.get("after", {}).get("risk_tier")
    if not before or not after or RiskTier.rank(after) <= RiskTier.rank(before):
        return None
    return _micro_review(
        f"{entitlement.name} raised to {after}",
        f"{entitlement.name} ({entitlement.system.name}) is now {after} risk (was {before}): "
        "should each holder keep it?",
        ReviewerSource.ENTITLEMENT_OWNER,
        Grant.objects.filter(entitlement=entitlement),
    )
