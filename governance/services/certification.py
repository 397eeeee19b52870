"""Certification campaigns: define, launch (set-based), decide, reassign, close, remediate.

A campaign is a draft until an admin launches it; launching writes one review item per grant in
scope in one INSERT ... SELECT, with its reviewer and a recommendation computed in the same
statement. Reviewers certify or revoke; revocations go through the same set-based revocation as
everything else (`grants_revoke_many`), at decision time or at close. Closing applies the
campaign's rule per risk tier to what nobody decided, so a lapsed review of critical access never
silently keeps it.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Case, CharField, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.urls import NoReverseMatch, reverse

from audit.choices import AuditAction
from audit.kernel import clock
from audit.outbox import outbox_enqueue
from audit.services import (
    Actor,
    ActorLike,
    EventSpec,
    Target,
    acting_user,
    audit_event_record,
    audit_events_record_many,
    state_change,
)

from .. import policies
from ..certification_reasons import annotate_identity_reasons, annotate_reasons
from ..choices import GrantStatus, IdentityKind, IdentityStatus, RiskTier
from ..errors import InvalidTransition, PermissionRefused, ValidationFailed
from ..locks import lock, lock_many
from ..models import Campaign, CampaignStatus, Grant, Identity, ReviewItem
from ..models.certification import Decision, RemediationStatus, RemediationTiming, ReviewerSource, UndecidedRule
from ..querysets import in_force_q
from .common import diff, full_clean_or_fail, snapshot
from .notifications import notify

User = get_user_model()
CAMPAIGN_FIELDS = [
    "name",
    "description",
    "scope",
    "review_grants",
    "review_identities",
    "reviewer",
    "reviewer_group",
    "fallback_group",
    "second_stage",
    "second_stage_reviewer",
    "second_stage_group",
    "starts_at",
    "due_at",
    "undecided",
    "remediation",
    "recurrence_days",
]
SCOPE_KEYS = {
    "systems": "entitlement__system_id__in",
    "entitlements": "entitlement_id__in",
    "risk_tiers": "entitlement__risk_tier__in",
    "identity_kinds": "identity__kind__in",
    "teams": "identity__team__in",
    "grant_kinds": "kind__in",
}
GUARDED = (RiskTier.HIGH, RiskTier.CRITICAL)


def _require_admin(actor: ActorLike) -> None:
    user = acting_user(actor)
    if user is not None and not policies.is_admin(user):
        raise PermissionRefused("Only admins define, launch and close campaigns.")


def _validate(campaign: Campaign) -> None:
    scope = campaign.scope or {}
    unknown = set(scope) - set(SCOPE_KEYS) - {"owners"}
    if unknown or not all(isinstance(v, list) for v in scope.values()):
        raise ValidationFailed("The scope names unknown parts.", field_errors={"scope": ["Unknown scope."]})
    rules = campaign.undecided or {}
    if set(rules) != set(RiskTier.values) or not set(rules.values()) <= set(UndecidedRule.values):
        raise ValidationFailed(
            "Say what happens to undecided items of every risk tier.",
            field_errors={"undecided": ["One rule per risk tier."]},
        )
    for source, group, field in (
        (campaign.reviewer, campaign.reviewer_group, "reviewer_group"),
        (campaign.second_stage_reviewer, campaign.second_stage_group, "second_stage_group"),
    ):
        if source == ReviewerSource.GROUP and not group:
            raise ValidationFailed("Name the group that reviews.", field_errors={field: ["Required for a group."]})
    if not campaign.review_grants and not campaign.review_identities:
        raise ValidationFailed(
            "Review the access granted, the identities themselves, or both.",
            field_errors={"review_grants": ["Choose what is reviewed."]},
        )
    if campaign.starts_at and campaign.due_at and campaign.due_at <= campaign.starts_at:
        raise ValidationFailed("The due date must come after the start.", field_errors={"due_at": ["After the start."]})
    full_clean_or_fail(campaign, exclude=["previous", "created_by"])


@state_change
def campaign_create(*, actor: ActorLike, name: str, due_at: datetime, **fields: Any) -> Campaign:
    """A draft campaign: admins edit it until they launch it."""
    _require_admin(actor)
    campaign = Campaign(name=name, due_at=due_at, created_by=acting_user(actor), **fields)
    _validate(campaign)
    campaign.save()
    audit_event_record(
        actor=actor,
        action=AuditAction.CAMPAIGN_CREATED,
        target=campaign,
        data={"after": snapshot(campaign, CAMPAIGN_FIELDS)},
    )
    return campaign


@state_change
def campaign_update(*, campaign_id: int, actor: ActorLike, changes: dict[str, Any]) -> Campaign:
    _require_admin(actor)
    campaign = lock(Campaign, campaign_id)
    if campaign.status != CampaignStatus.DRAFT:
        raise InvalidTransition(f"{campaign} is {campaign.get_status_display().lower()}: only a draft is edited.")
    unknown = set(changes) - set(CAMPAIGN_FIELDS)
    if unknown:
        raise ValidationFailed(f"These fields cannot be edited: {', '.join(sorted(unknown))}.")
    before = snapshot(campaign, CAMPAIGN_FIELDS)
    for name, value in changes.items():
        setattr(campaign, name, value)
    _validate(campaign)
    change = diff(before, snapshot(campaign, CAMPAIGN_FIELDS))
    if change["after"]:
        campaign.save()
        audit_event_record(actor=actor, action=AuditAction.CAMPAIGN_UPDATED, target=campaign, data=change)
    return campaign


@state_change
def campaign_cancel(*, campaign_id: int, actor: ActorLike, reason: str) -> Campaign:
    """Stop a draft or a running campaign; what was decided stays decided, nothing more is asked."""
    _require_admin(actor)
    campaign = lock(Campaign, campaign_id)
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.ACTIVE):
        raise InvalidTransition(f"{campaign} is already {campaign.get_status_display().lower()}.")
    campaign.status, campaign.closed_at = CampaignStatus.CANCELLED, clock.database_now()
    campaign.save(update_fields=["status", "closed_at", "updated_at"])
    audit_event_record(actor=actor, action=AuditAction.CAMPAIGN_CANCELLED, target=campaign, data={"reason": reason})
    return campaign


#
# Scope and reviewers, as expressions over Grant rows: one INSERT ... SELECT launches a campaign.
#
def grants_in_scope(campaign: Campaign, now: datetime | None = None) -> QuerySet:
    """The grants in force that the campaign's scope selects (an empty part of the scope selects all)."""
    return grants_matching_scope(Grant.objects.in_force(now), campaign.scope or {})


def grants_matching_scope(grants: QuerySet, scope: dict, *, ignore: tuple[str, ...] = ()) -> QuerySet:
    """`grants` narrowed by each part of a campaign's scope, but those in `ignore`."""
    for key, lookup in SCOPE_KEYS.items():
        if scope.get(key) and key not in ignore:
            grants = grants.filter(**{lookup: scope[key]})
    if scope.get("owners") and "owners" not in ignore:
        owners = scope["owners"]
        grants = grants.filter(
            Q(identity__owner_id__in=owners)
            | Q(entitlement__owner_id__in=owners)
            | Q(entitlement__system__owner_id__in=owners)
        )
    return grants


# Only these parts of a scope narrow the identities themselves: the others are about access.
IDENTITY_SCOPE_KEYS = {"identity_kinds": "kind__in", "teams": "team__in", "owners": "owner_id__in"}


def identities_in_scope(campaign: Campaign) -> QuerySet:
    """The non-human identities whose owner attests them: active or suspended (an offboarded one is
    gone), narrowed by the scope's identity kinds, owners and teams."""
    identities = Identity.objects.exclude(kind=IdentityKind.HUMAN).filter(
        status__in=[IdentityStatus.ACTIVE, IdentityStatus.SUSPENDED]
    )
    scope = campaign.scope or {}
    for key, lookup in IDENTITY_SCOPE_KEYS.items():
        if scope.get(key):
            identities = identities.filter(**{lookup: scope[key]})
    return identities


def items_in_scope_count(campaign: Campaign) -> int:
    """How many first-stage items launching would open (to choose a background launch)."""
    total = grants_in_scope(campaign).count() if campaign.review_grants else 0
    return total + (identities_in_scope(campaign).count() if campaign.review_identities else 0)


def _active_user(path: str) -> Case:
    """The login of the person at `path` (an Identity relation), when they are active."""
    return Case(
        When(
            **{f"{path}__status": IdentityStatus.ACTIVE, f"{path}__user__is_active": True}, then=F(f"{path}__user_id")
        ),
        default=Value(None),
        output_field=IntegerField(),
    )


def _reviewer_expression(source: str) -> Case | Value:
    human = Q(identity__kind=IdentityKind.HUMAN)
    if source == ReviewerSource.ENTITLEMENT_OWNER:
        return _active_user("entitlement__owner")
    if source == ReviewerSource.SYSTEM_OWNER:
        return _active_user("entitlement__system__owner")
    if source == ReviewerSource.IDENTITY_OWNER:
        return Case(When(human, then=_active_user("identity__manager")), default=_active_user("identity__owner"))
    if source == ReviewerSource.MANAGER:
        return Case(
            When(human, then=_active_user("identity__manager")), default=_active_user("identity__owner__manager")
        )
    return Value(None, output_field=IntegerField())  # a group: its members decide


def _identity_reviewer_expression(source: str) -> Case | Value:
    """Who attests a non-human identity (an Identity row): its owner; at a second stage by its
    owner's manager, or a group. An entitlement's or system's owner has no say on an identity: those
    items go to the fallback group."""
    if source == ReviewerSource.IDENTITY_OWNER:
        return _active_user("owner")
    if source == ReviewerSource.MANAGER:
        return _active_user("owner__manager")
    return Value(None, output_field=IntegerField())


def _reviewer_columns(
    rows: QuerySet, expression, *, source: str, group: str, fallback: str, holder_user: str
) -> QuerySet:
    """`rows` with `c_reviewer` and `c_group`: the first reviewer, or, when there is none (missing,
    inactive: see `_active_user`) or it is the holder (`holder_user`, their login), nobody and the
    fallback group. In the INSERT's own SELECT, rather than an UPDATE of the rows just written."""
    if source == ReviewerSource.GROUP:
        return rows.annotate(c_reviewer=Value(None, output_field=IntegerField()), c_group=Value(group))
    nobody = Q(first_reviewer__isnull=True) | Q(first_reviewer=F(holder_user))
    return rows.alias(first_reviewer=expression).annotate(
        c_reviewer=Case(When(nobody, then=Value(None)), default=F("first_reviewer"), output_field=IntegerField()),
        c_group=Case(When(nobody, then=Value(fallback)), default=Value("")),
    )


def fallback_count(campaign: Campaign) -> int:
    """How many of a campaign's items went to its fallback group at launch."""
    items = ReviewItem.objects.filter(campaign=campaign, stage=1, reviewer__isnull=True)
    if campaign.reviewer == ReviewerSource.GROUP:
        items = items.filter(grant__isnull=True)  # a group reviews the grants: only identities fall back
    return items.filter(reviewer_group=campaign.fallback_group).count()


def _highest_tier_held(now: datetime) -> Coalesce:
    """The highest risk tier among the grants in force an identity (the outer row) holds; "low" when none."""
    rank = Case(
        *(When(entitlement__risk_tier=tier, then=Value(RiskTier.rank(tier))) for tier in RiskTier.values),
        default=Value(-1),
        output_field=IntegerField(),
    )
    held = (
        Grant.objects.filter(identity_id=OuterRef("pk"))
        .filter(in_force_q(now))
        .annotate(tier_rank=rank)
        .order_by("-tier_rank")
        .values("entitlement__risk_tier")[:1]
    )
    return Coalesce(Subquery(held, output_field=CharField()), Value(RiskTier.LOW), output_field=CharField())


_ITEM_COLUMNS = [
    "campaign_id",
    "grant_id",
    "identity_id",
    "entitlement_id",
    "risk_tier",
    "stage",
    "reviewer_id",
    "reviewer_group",
    "recommendation",
    "reason_flags",
    "decision",
    "decided_by_rule",
    "comment",
    "remediation",
    "remediation_error",
    "reassign_reason",
    "escalation_level",
    "created_at",
]


def _insert_select(rows: QuerySet) -> int:
    """INSERT INTO the item table the rows of `rows` (a values() query of _ITEM_COLUMNS, in order).

    Without PostgreSQL's JIT: the statement's estimated cost (a correlated subquery per reason)
    crosses `jit_above_cost`, and compiling it (~100 functions, inlined and optimised) took about a
    second of a 100,000-item launch that then runs in less (bench/README.md). Switched off for this
    statement only (`set_config(..., is_local)`, then put back)."""
    select, params = rows.query.sql_with_params()
    table = ReviewItem._meta.db_table
    insert = f"INSERT INTO {table} ({', '.join(_ITEM_COLUMNS)}) {select}"
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(insert, params)
            return cursor.rowcount
        cursor.execute("SELECT current_setting('jit'), set_config('jit', 'off', true)")
        (jit, _) = cursor.fetchone()
        cursor.execute(insert, params)
        count = cursor.rowcount
        # Put back (a failed statement aborts the transaction, whose rollback puts it back anyway).
        cursor.execute("SELECT set_config('jit', %s, true)", [jit])
        return count


_ITEM_SELECT = [
    "c_campaign", "c_grant", "c_identity", "c_entitlement", "c_tier", "c_stage", "c_reviewer", "c_group",
    "c_recommendation", "c_flags", "c_decision", "c_by_rule", "c_comment", "c_remediation", "c_error",
    "c_reassign", "c_escalation", "c_created",
]  # fmt: skip


def _insert_rows(rows: QuerySet, campaign: Campaign, *, stage: int, now: datetime, **subject: Any) -> int:
    """The columns every item shares (in `_ITEM_COLUMNS`' order), after what it reviews (`subject`:
    c_grant, c_identity, c_entitlement, c_tier), then one INSERT ... SELECT."""
    text = Value("")
    rows = rows.annotate(
        c_campaign=Value(campaign.pk),
        **subject,
        c_stage=Value(stage),
        c_recommendation=F("recommendation"),
        c_flags=F("reason_flags"),
        c_decision=text,
        c_by_rule=Value(False),
        c_comment=text,
        c_remediation=text,
        c_error=text,
        c_reassign=text,
        c_escalation=Value(0),
        c_created=Value(now),
    )
    return _insert_select(rows.order_by().values(*_ITEM_SELECT))


def _insert_items(campaign: Campaign, grants: QuerySet, *, stage: int, source: str, group: str, now: datetime) -> int:
    """INSERT ... SELECT one item per grant; returns how many. The statement is the ORM's own SELECT,
    so it is the same on PostgreSQL and SQLite."""
    rows = _reviewer_columns(
        annotate_reasons(grants, now),
        _reviewer_expression(source),
        source=source,
        group=group,
        fallback=campaign.fallback_group,
        holder_user="identity__user_id",
    )
    return _insert_rows(
        rows,
        campaign,
        stage=stage,
        now=now,
        c_grant=F("pk"),
        c_identity=F("identity_id"),
        c_entitlement=F("entitlement_id"),
        c_tier=F("entitlement__risk_tier"),
    )


def _insert_identity_items(
    campaign: Campaign, identities: QuerySet, *, stage: int, source: str, group: str, now: datetime
) -> int:
    """INSERT ... SELECT one identity item (no grant, no entitlement) per identity; returns how many.
    Its risk tier is the highest among the grants it holds in force, so the per-tier rule applies."""
    rows = _reviewer_columns(
        annotate_identity_reasons(identities, now),
        _identity_reviewer_expression(source),
        source=source,
        group=group,
        fallback=campaign.fallback_group,
        holder_user="user_id",
    )
    return _insert_rows(
        rows,
        campaign,
        stage=stage,
        now=now,
        c_grant=Value(None, output_field=IntegerField()),
        c_identity=F("pk"),
        c_entitlement=Value(None, output_field=IntegerField()),
        c_tier=_highest_tier_held(now),
    )


def _insert_first_stage(campaign: Campaign, now: datetime, grants: QuerySet | None = None) -> int:
    """Every first-stage item of a launch: one per grant in scope (or of `grants`), and one per
    non-human identity in scope when the campaign reviews the identities themselves."""
    total = 0
    if grants is not None or campaign.review_grants:
        total += _insert_items(
            campaign,
            grants_in_scope(campaign, now) if grants is None else grants.filter(in_force_q(now)),
            stage=1,
            source=campaign.reviewer,
            group=campaign.reviewer_group,
            now=now,
        )
    if grants is None and campaign.review_identities:
        total += _insert_identity_items(
            campaign, identities_in_scope(campaign), stage=1, source=ReviewerSource.IDENTITY_OWNER, group="", now=now
        )
    return total


def _send_to_fallback(items: QuerySet, campaign: Campaign) -> int:
    """Items with no reviewer, an inactive one, or the holder themself go to the fallback group (the
    launch's INSERT applies the same rule itself; the second stage reuses this one after a hand-back)."""
    missing = items.filter(reviewer_group="").filter(
        Q(reviewer__isnull=True) | Q(reviewer__is_active=False) | Q(reviewer_id=F("identity__user_id"))
    )
    return missing.update(reviewer=None, reviewer_group=campaign.fallback_group)


LAUNCH = "certification.launch"


@state_change
def campaign_launch_in_background(*, campaign_id: int, actor: ActorLike) -> Campaign:
    """For a big scope: mark the draft launching and let a worker launch it (the outbox delivers it)."""
    _require_admin(actor)
    campaign = lock(Campaign, campaign_id)
    if campaign.status != CampaignStatus.DRAFT:
        raise InvalidTransition(f"{campaign} is {campaign.get_status_display().lower()}: only a draft is launched.")
    campaign.status = CampaignStatus.LAUNCHING
    campaign.save(update_fields=["status", "updated_at"])
    audit_event_record(
        actor=actor, action=AuditAction.CAMPAIGN_UPDATED, target=campaign, data={"after": {"status": "launching"}}
    )
    outbox_enqueue(kind=LAUNCH, payload={"campaign_id": campaign.pk}, idempotency_key=f"campaign:{campaign.pk}:launch")
    return campaign


@state_change
def campaign_launch(*, campaign_id: int, actor: ActorLike, grants: QuerySet | None = None) -> Campaign:
    """Open a draft: one review item per grant in scope (or of `grants`, those in force, for reviews
    that pick their grants: cadence and events), and one per non-human identity in scope when the
    campaign reviews the identities themselves, each with its reviewer and recommendation."""
    _require_admin(actor)
    campaign = lock(Campaign, campaign_id)
    if campaign.status == CampaignStatus.ACTIVE and campaign.launched_at is not None:
        return campaign  # a background launch delivered twice
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.LAUNCHING):
        raise InvalidTransition(f"{campaign} is {campaign.get_status_display().lower()}: only a draft is launched.")
    now = clock.database_now()
    total = _insert_first_stage(campaign, now, grants)
    to_fallback = fallback_count(campaign)
    campaign.status, campaign.launched_at, campaign.items_total = CampaignStatus.ACTIVE, now, total
    campaign.starts_at = campaign.starts_at or now
    campaign.save(update_fields=["status", "launched_at", "items_total", "starts_at", "updated_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.CAMPAIGN_LAUNCHED,
        target=campaign,
        data={"items": total, "to_fallback": to_fallback, "due_at": campaign.due_at, "kind": campaign.kind},
    )
    _tell_reviewers(campaign, ReviewItem.objects.filter(campaign=campaign))
    return campaign


def reviewers_of(items: QuerySet) -> list:
    """The people who may decide these items: their reviewers and the members of their groups."""
    direct = set(items.exclude(reviewer__isnull=True).values_list("reviewer_id", flat=True).distinct())
    groups = set(items.exclude(reviewer_group="").values_list("reviewer_group", flat=True).distinct())
    users = User.objects.filter(is_active=True).filter(Q(pk__in=direct) | Q(groups__name__in=groups))
    return list(users.distinct().order_by("pk"))


def _queue_link() -> str:
    try:
        return reverse("governance:review_queue")
    except NoReverseMatch:  # the pages are not mounted (a shell, a command before the urls load)
        return ""


def _tell_reviewers(campaign: Campaign, items: QuerySet) -> None:
    for user in reviewers_of(items):
        notify(
            recipients=[user],
            kind="review",
            subject=f"Access to review: {campaign.name}",
            body=f"Certify or revoke the access in {campaign.name} by {campaign.due_at:%Y-%m-%d %H:%M} UTC.",
            link=_queue_link(),
            key=f"campaign:{campaign.pk}:launched",
        )


#
# Decisions
#
def may_decide(user, item: ReviewItem, groups: set[str] | None = None) -> bool:
    """The item's reviewer, or a member of its group; never the holder of the access."""
    if user is None or not user.is_active or policies.is_read_only(user):
        return False
    if item.identity.user_id == user.pk:
        return False
    if item.reviewer_id is not None:
        return item.reviewer_id == user.pk
    if groups is None:
        groups = set(user.groups.values_list("name", flat=True))
    return item.reviewer_group in groups


def _locked_open_items(item_ids: Iterable[int]) -> list[ReviewItem]:
    items = lock_many(ReviewItem.objects.select_related("campaign", "identity"), set(item_ids))
    if not items:
        raise ValidationFailed("Choose at least one item.", field_errors={"items": ["Choose at least one."]})
    return items


def _event(item: ReviewItem, action: str, **data: Any) -> EventSpec:
    return EventSpec(
        action,
        Target("governance.reviewitem", str(item.pk), f"Review #{item.pk}"),
        {
            "campaign": item.campaign_id,
            "grant": item.grant_id,
            "identity": item.identity_id,
            "entitlement": item.entitlement_id,
            "stage": item.stage,
            **data,
        },
    )


@state_change
def review_decide(*, item_ids: list[int], actor: ActorLike, decision: str, comment: str = "") -> list[ReviewItem]:
    """Certify or revoke one item or a selection; revoking more than one needs a comment."""
    if decision not in Decision.values:
        raise ValidationFailed("Certify or revoke.", field_errors={"decision": ["Certify or revoke."]})
    comment = comment.strip()
    if decision == Decision.REVOKE and len(set(item_ids)) > 1 and not comment:
        raise ValidationFailed(
            "Say why you revoke these: the holders and auditors read it.", field_errors={"comment": ["Required."]}
        )
    user = acting_user(actor)
    items = _locked_open_items(item_ids)
    groups = set(user.groups.values_list("name", flat=True)) if user is not None else set()
    for item in items:
        if not may_decide(user, item, groups):
            raise PermissionRefused(f"Review #{item.pk} is not yours to decide.")
        if item.campaign.status != CampaignStatus.ACTIVE:
            raise InvalidTransition(f"{item.campaign} is {item.campaign.get_status_display().lower()}.")
        if item.decision:
            raise InvalidTransition(f"Review #{item.pk} was already decided ({item.decision}).")
    now = clock.database_now()
    ids = [item.pk for item in items]
    ReviewItem.objects.filter(pk__in=ids).update(decision=decision, decided_by=user, decided_at=now, comment=comment)
    action = AuditAction.REVIEW_CERTIFIED if decision == Decision.CERTIFY else AuditAction.REVIEW_REVOKED
    audit_events_record_many(
        actor=actor, events=[_event(item, action, decision=decision, comment=comment) for item in items]
    )
    if decision == Decision.REVOKE:
        by_timing = defaultdict(list)
        for item in items:
            by_timing[item.campaign.remediation].append(item.pk)
        ReviewItem.objects.filter(pk__in=by_timing[RemediationTiming.AT_CLOSE]).update(
            remediation=RemediationStatus.WAITING
        )
        _remediate(ReviewItem.objects.filter(pk__in=by_timing[RemediationTiming.AT_DECISION]), actor)
    else:
        _open_second_stage([item for item in items if item.stage == 1], now)
    return list(ReviewItem.objects.filter(pk__in=ids).order_by("pk"))


def _stage_key(grant_id: int | None, identity_id: int) -> tuple[str, int]:
    """What an item reviews, the same at both stages: a grant, or an identity itself."""
    return ("identity", identity_id) if grant_id is None else ("grant", grant_id)


def _open_second_stage(items: list[ReviewItem], now: datetime) -> None:
    """High and critical access (or identities holding it) certified at stage 1 of a two-stage
    campaign is asked again of stage 2."""
    grants, identities = defaultdict(list), defaultdict(list)
    for item in items:
        if item.campaign.second_stage and item.risk_tier in GUARDED:
            if item.is_identity_item:
                identities[item.campaign].append(item.identity_id)
            else:
                grants[item.campaign].append(item.grant_id)
    for campaign in {*grants, *identities}:
        grant_ids, identity_ids = grants[campaign], identities[campaign]
        source, group = campaign.second_stage_reviewer, campaign.second_stage_group
        added = 0
        if grant_ids:
            added += _insert_items(
                campaign, Grant.objects.filter(pk__in=grant_ids), stage=2, source=source, group=group, now=now
            )
        if identity_ids:
            added += _insert_identity_items(
                campaign, Identity.objects.filter(pk__in=identity_ids), stage=2, source=source, group=group, now=now
            )
        subjects = Q(grant_id__in=grant_ids) | Q(grant__isnull=True, identity_id__in=identity_ids)
        second = ReviewItem.objects.filter(campaign=campaign, stage=2).filter(subjects)
        # Nobody certifies the same thing twice: whoever decided stage 1 hands stage 2 to the fallback.
        first = {
            _stage_key(grant_id, identity_id): decided_by
            for grant_id, identity_id, decided_by in ReviewItem.objects.filter(campaign=campaign, stage=1)
            .filter(subjects)
            .values_list("grant_id", "identity_id", "decided_by_id")
        }
        twice = [
            pk
            for pk, grant_id, identity_id, reviewer in second.values_list(
                "pk", "grant_id", "identity_id", "reviewer_id"
            )
            if reviewer and reviewer == first.get(_stage_key(grant_id, identity_id))
        ]
        ReviewItem.objects.filter(pk__in=twice).update(reviewer=None, reviewer_group=campaign.fallback_group)
        _send_to_fallback(second, campaign)
        Campaign.objects.filter(pk=campaign.pk).update(items_total=F("items_total") + added)
        _tell_reviewers(campaign, second)


def _remediate(items: QuerySet, actor: ActorLike) -> None:
    """Carry out revoke decisions: one set-based revocation of their grants, through each connector;
    an identity judged no longer needed is suspended (which revokes every grant it holds)."""
    from .grants import grants_revoke_many

    rows = list(items.values_list("pk", "grant_id"))
    if not rows:
        return
    grant_ids = [grant_id for _, grant_id in rows if grant_id is not None]
    if grant_ids:
        grants_revoke_many(
            grant_ids=grant_ids, actor=actor, reason="Revoked by certification", end_reason="certification"
        )
    _suspend_identities(items.filter(grant__isnull=True))
    ReviewItem.objects.filter(pk__in=[pk for pk, _ in rows]).update(remediation=RemediationStatus.REVOKING)
    remediation_sync(item_ids=[pk for pk, _ in rows])


def _suspend_identities(items: QuerySet) -> None:
    """Suspend each identity its (identity) item revoked, through `identity_suspend` (its grants go
    through the set-based revocation there). The review decided it, not the reviewer's rights on the
    identity (a fallback reviewer may have none): the system suspends it, naming the review and who
    decided (or the campaign's rule). One already suspended or offboarded is left as it is."""
    from .identities import identity_suspend

    rows = items.filter(identity__status=IdentityStatus.ACTIVE).order_by("identity_id", "pk")
    done: set[int] = set()
    for pk, identity_id, campaign_id, decider, by_rule in rows.values_list(
        "pk", "identity_id", "campaign_id", "decided_by__username", "decided_by_rule"
    ):
        if identity_id in done:
            continue
        done.add(identity_id)
        who = "the campaign's rule for undecided items" if by_rule else decider or "the system"
        identity_suspend(
            identity_id=identity_id,
            actor=Actor.system(),
            reason=f"Certification: review #{pk} (campaign #{campaign_id}) found it no longer needed; decided by {who}.",
        )


def remediation_sync(*, item_ids: Iterable[int] | None = None) -> int:
    """Move items being revoked to done or failed as their grants end or their connector gives up.
    An identity item is done once its identity is no longer active and none of its grants is still
    being removed; failed while a connector could not remove one of them."""
    items = ReviewItem.objects.filter(remediation=RemediationStatus.REVOKING)
    if item_ids is not None:
        items = items.filter(pk__in=list(item_ids))
    grant_items = items.filter(grant__isnull=False)
    done = grant_items.filter(grant__status__in=[GrantStatus.REVOKED, GrantStatus.EXPIRED]).update(
        remediation=RemediationStatus.DONE, remediation_error=""
    )
    failed = grant_items.filter(grant__status=GrantStatus.REVOKE_FAILED).update(
        remediation=RemediationStatus.FAILED, remediation_error="The system's connector could not remove the access."
    )
    suspended = items.filter(grant__isnull=True).exclude(identity__status=IdentityStatus.ACTIVE)
    held = Grant.objects.filter(identity_id=OuterRef("identity_id"))
    stuck = Exists(held.filter(status=GrantStatus.REVOKE_FAILED))
    failed += suspended.filter(stuck).update(
        remediation=RemediationStatus.FAILED,
        remediation_error="The identity is suspended, but a system's connector could not remove some of its access.",
    )
    done += (
        suspended.exclude(stuck)
        .exclude(Exists(held.filter(status=GrantStatus.REVOKING)))
        .update(remediation=RemediationStatus.DONE, remediation_error="")
    )
    return done + failed


@state_change
def remediation_retry(*, item_ids: list[int], actor: ActorLike) -> int:
    """Ask the connectors again for revocations that failed (an identity item's: every grant of the
    identity whose removal failed); returns how many items.

    One `grant_retry_revoke` per grant rather than one set-based statement: each retry saves the
    grant (a history row) and keys its outbox message by that history, which lives in
    services/grants.py; failures are few (the page lists at most 100), so this is not a hot path."""
    from .grants import grant_retry_revoke

    _require_admin(actor)
    items = lock_many(ReviewItem.objects.filter(remediation=RemediationStatus.FAILED), set(item_ids))
    grant_ids = {item.grant_id for item in items if item.grant_id is not None}
    identity_ids = {item.identity_id for item in items if item.grant_id is None}
    failed = Grant.objects.filter(status=GrantStatus.REVOKE_FAILED).filter(
        Q(pk__in=grant_ids) | Q(identity_id__in=identity_ids)
    )
    for grant_id in failed.order_by("pk").values_list("pk", flat=True):
        grant_retry_revoke(grant_id=grant_id, actor=None)
    ReviewItem.objects.filter(pk__in=[i.pk for i in items]).update(
        remediation=RemediationStatus.REVOKING, remediation_error=""
    )
    remediation_sync(item_ids=[i.pk for i in items])
    return len(items)


@state_change
def review_reassign(*, item_id: int, actor: ActorLike, reviewer, reason: str) -> ReviewItem:
    """Hand an open item to someone else, with the reason; never to the holder of the access."""
    user = acting_user(actor)
    item = _locked_open_items([item_id])[0]
    if not (policies.is_admin(user) or may_decide(user, item)):
        raise PermissionRefused(f"Review #{item.pk} is not yours to hand over.")
    if item.decision or item.campaign.status != CampaignStatus.ACTIVE:
        raise InvalidTransition(f"Review #{item.pk} is no longer open.")
    if not reason.strip():
        raise ValidationFailed("Say why you hand it over.", field_errors={"reason": ["Required."]})
    if reviewer is None or not reviewer.is_active or policies.is_read_only(reviewer):
        raise ValidationFailed("Choose an active reviewer who may act.", field_errors={"reviewer": ["Not a reviewer."]})
    if reviewer.pk == item.identity.user_id:
        raise ValidationFailed("Nobody reviews their own access.", field_errors={"reviewer": ["They hold it."]})
    before = {"reviewer": item.reviewer_id, "group": item.reviewer_group}
    item.reviewer, item.reviewer_group, item.reassign_reason = reviewer, "", reason.strip()
    item.save(update_fields=["reviewer", "reviewer_group", "reassign_reason"])
    audit_events_record_many(
        actor=actor,
        events=[
            _event(item, AuditAction.REVIEW_REASSIGNED, before=before, after={"reviewer": reviewer.pk}, reason=reason)
        ],
    )
    _tell_reviewers(item.campaign, ReviewItem.objects.filter(pk=item.pk))
    return item


#
# Closing
#
@state_change
def campaign_close(*, campaign_id: int, actor: ActorLike) -> Campaign:
    """Close a campaign: what nobody decided gets the campaign's rule for its risk tier, then the
    revocations waiting for the close are carried out. Safe to ask twice: a closed campaign is left."""
    _require_admin(actor)
    campaign = lock(Campaign, campaign_id)
    if campaign.status == CampaignStatus.CLOSED:
        return campaign
    if campaign.status != CampaignStatus.ACTIVE:
        raise InvalidTransition(f"{campaign} is {campaign.get_status_display().lower()}.")
    now = clock.database_now()
    open_items = ReviewItem.objects.filter(campaign=campaign, decision="")
    lock_many(open_items)
    decided = defaultdict(list)
    for pk, tier, recommendation in open_items.values_list("pk", "risk_tier", "recommendation"):
        rule = (campaign.undecided or {}).get(tier, UndecidedRule.REVOKE)
        decision = {UndecidedRule.KEEP: Decision.CERTIFY, UndecidedRule.REVOKE: Decision.REVOKE}.get(
            rule, recommendation
        )
        decided[(decision, rule)].append(pk)
    events = []
    for (decision, rule), ids in decided.items():
        note = f"Not decided by {campaign.due_at:%Y-%m-%d}: the campaign's rule ({rule})."
        ReviewItem.objects.filter(pk__in=ids).update(
            decision=decision, decided_by_rule=True, decided_at=now, comment=note
        )
        action = AuditAction.REVIEW_CERTIFIED if decision == Decision.CERTIFY else AuditAction.REVIEW_REVOKED
        for item in (
            ReviewItem.objects.filter(pk__in=ids).select_related("campaign").order_by("pk").iterator(chunk_size=2000)
        ):
            events.append(_event(item, action, decision=decision, by_rule=rule, comment=note))
    audit_events_record_many(actor=actor, events=events)
    waiting = ReviewItem.objects.filter(campaign=campaign, decision=Decision.REVOKE).filter(
        remediation__in=[RemediationStatus.NONE, RemediationStatus.WAITING]
    )
    _remediate(waiting, actor)
    campaign.status, campaign.closed_at = CampaignStatus.CLOSED, now
    campaign.save(update_fields=["status", "closed_at", "updated_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.CAMPAIGN_CLOSED,
        target=campaign,
        data={"decided_by_rule": {f"{d}:{r}": len(ids) for (d, r), ids in decided.items()}},
    )
    return campaign
