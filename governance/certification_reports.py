"""Certification reports for auditors: one campaign's evidence, and two questions across campaigns.

Everything here reads. Each query is set-based: a campaign's items come with their joins and the seq
of the audit event that records each decision in one statement (a correlated lookup on the trail's
target index), so the CSV of a 100,000-item campaign streams in chunks and its query count does not
grow with the items. The views record every report made as an export (`audit.services.export_recorded`)
and print the audit chain's head, so an auditor can check the copy they hold with
`manage.py verify_audit --expect SEQ:HASH`.
"""

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db.models import Case, CharField, Count, F, OuterRef, Q, QuerySet, Subquery, When
from django.db.models.functions import Cast, Coalesce

from audit.choices import AuditAction
from audit.models import GENESIS_HASH, AuditEvent

from . import policies
from .certification_reasons import reasons_of
from .choices import GrantKind, GrantStatus, IdentityKind, IdentityStatus, RiskTier
from .models import Campaign, Entitlement, Grant, Identity, ReviewItem, System
from .models.certification import Decision, RemediationStatus
from .roles import Role, has_role
from .selectors_certification import campaigns_visible_to

# The HTML page and the PDF list at most this many items (the CSV holds them all): a printable report
# of 100,000 rows helps nobody. WeasyPrint lays out ~100 item rows a second (1,000 rows: ~10 s, 45
# A4 pages), so the PDF stops sooner than the page, within a web request's time.
REPORT_ROW_LIMIT = 5_000
PDF_ROW_LIMIT = 1_000
CHUNK = 2_000
# The events that record a decision on a review item (a person's, or the non-response rule's at close).
DECISION_ACTIONS = (AuditAction.REVIEW_CERTIFIED, AuditAction.REVIEW_REVOKED)
REVIEW_ITEM_TARGET = "governance.reviewitem"


#
# Who reads what
#
def may_read_all_reports(user) -> bool:
    """Auditors and admins: every campaign's report and the cross-campaign pages."""
    return policies.can_read_all_campaigns(user)


def may_read_campaign_report(user, campaign: Campaign) -> bool:
    """Auditors and admins; an owner for the campaigns they may see (items on what they own, or
    theirs to review). A reviewer who is not an owner works their queue, not the evidence."""
    if may_read_all_reports(user):
        return True
    return has_role(user, Role.OWNER) and campaigns_visible_to(user).filter(pk=campaign.pk).exists()


#
# The audit chain's head
#
class ChainHead(NamedTuple):
    seq: int
    hash: str

    @property
    def expect(self) -> str:
        """As `verify_audit --expect` takes it."""
        return f"{self.seq}:{self.hash}"


def chain_head() -> ChainHead:
    """The newest event on the chain (read, not locked): what a report made now can be checked against."""
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    return ChainHead(*head) if head else ChainHead(0, GENESIS_HASH)


#
# One campaign
#
@dataclass
class Summary:
    """How far a campaign got: decisions, completion, time to decide and what revoking did."""

    total: int = 0
    decided_by_people: int = 0
    decided_by_rule: int = 0
    undecided: int = 0
    certified: int = 0
    revoked: int = 0
    remediation: dict[str, int] = field(default_factory=dict)
    # Revoke decisions whose grant has ended (revoked or expired), and those whose access still exists.
    revoked_grants_ended: int = 0
    revoked_grants_live: int = 0
    # Identity items ("still needed?") revoked: the identity suspended or gone, or still active.
    identity_items: int = 0
    revoked_identities_suspended: int = 0
    revoked_identities_active: int = 0
    median_to_decide: timedelta | None = None
    p90_to_decide: timedelta | None = None

    @property
    def completion_rate(self) -> float | None:
        """Share of items a reviewer decided (the non-response rule's decisions are not reviews)."""
        return self.decided_by_people / self.total if self.total else None

    @property
    def completion_percent(self) -> str:
        rate = self.completion_rate
        return "n/a" if rate is None else f"{rate * 100:.1f}%"

    @property
    def median_text(self) -> str:
        return duration_text(self.median_to_decide)

    @property
    def p90_text(self) -> str:
        return duration_text(self.p90_to_decide)


def duration_text(value: timedelta | None) -> str:
    """ "3 d 4 h 5 min", to the minute; "n/a" when nothing was decided."""
    if value is None:
        return "n/a"
    minutes = max(int(value.total_seconds()) // 60, 0)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min"]
    return " ".join(part for part in parts if part)


def _nth_decided_at(decided: QuerySet, n: int, p: float) -> datetime:
    """The decision time at the p-th percentile (nearest rank) of `n` decisions, by one indexed OFFSET."""
    index = max(math.ceil(p * n) - 1, 0)
    return decided.order_by("decided_at", "pk").values_list("decided_at", flat=True)[index]


def campaign_summary(campaign: Campaign) -> Summary:
    """Counts in one aggregate; time to decide (decided_at - launched_at) over the decisions people
    made, median and 90th percentile by nearest rank (two single-row queries, no rows in Python)."""
    items = ReviewItem.objects.filter(campaign=campaign)
    ended = [GrantStatus.REVOKED, GrantStatus.EXPIRED]
    counts = items.aggregate(
        total=Count("pk"),
        decided_by_people=Count("pk", filter=~Q(decision="") & Q(decided_by_rule=False)),
        decided_by_rule=Count("pk", filter=~Q(decision="") & Q(decided_by_rule=True)),
        undecided=Count("pk", filter=Q(decision="")),
        certified=Count("pk", filter=Q(decision=Decision.CERTIFY)),
        revoked=Count("pk", filter=Q(decision=Decision.REVOKE)),
        revoked_grants_ended=Count("pk", filter=Q(decision=Decision.REVOKE, grant__status__in=ended)),
        revoked_grants_live=Count("pk", filter=Q(decision=Decision.REVOKE, grant__status__in=GrantStatus.live())),
        identity_items=Count("pk", filter=Q(grant__isnull=True)),
        revoked_identities_suspended=Count(
            "pk", filter=Q(decision=Decision.REVOKE, grant__isnull=True) & ~Q(identity__status=IdentityStatus.ACTIVE)
        ),
        revoked_identities_active=Count(
            "pk", filter=Q(decision=Decision.REVOKE, grant__isnull=True, identity__status=IdentityStatus.ACTIVE)
        ),
        **{
            f"remediation_{status}": Count("pk", filter=Q(remediation=status))
            for status in RemediationStatus.values
            if status
        },
    )
    remediation = {
        str(label): counts.pop(f"remediation_{status}") for status, label in RemediationStatus.choices if status
    }
    summary = Summary(**counts, remediation=remediation)
    if campaign.launched_at and summary.decided_by_people:
        decided = items.exclude(decision="").filter(decided_by_rule=False)
        n = summary.decided_by_people
        summary.median_to_decide = _nth_decided_at(decided, n, 0.5) - campaign.launched_at
        summary.p90_to_decide = _nth_decided_at(decided, n, 0.9) - campaign.launched_at
    return summary


_SCOPE_LISTS = {
    "systems": (
        "Systems",
        lambda ids: System.objects.filter(pk__in=ids).order_by("name").values_list("name", flat=True),
    ),
    "entitlements": (
        "Entitlements",
        lambda ids: [
            f"{system} / {name}"
            for system, name in Entitlement.objects.filter(pk__in=ids)
            .order_by("system__name", "name")
            .values_list("system__name", "name")
        ],
    ),
    "owners": (
        "Owners of the identities",
        lambda ids: Identity.objects.filter(pk__in=ids).order_by("name").values_list("name", flat=True),
    ),
}
_SCOPE_CHOICES = {
    "risk_tiers": ("Risk tiers", dict(RiskTier.choices)),
    "identity_kinds": ("Identity kinds", dict(IdentityKind.choices)),
    "grant_kinds": ("Grant kinds", dict(GrantKind.choices)),
}


def campaign_scope(campaign: Campaign) -> list[tuple[str, list[str]]]:
    """The scope in words, part by part; an empty part means any."""
    scope = campaign.scope or {}
    described = []
    for key, (label, names) in _SCOPE_LISTS.items():
        described.append((label, list(names(scope[key])) if scope.get(key) else []))
    for key, (label, choices) in _SCOPE_CHOICES.items():
        described.append((label, [str(choices.get(value, value)) for value in scope.get(key) or []]))
    described.append(("Teams", list(scope.get("teams") or [])))
    return described


def campaign_reviewers(campaign: Campaign) -> list[dict[str, Any]]:
    """Per reviewer (a person, or a group when nobody in particular): items, decisions, still open."""
    rows = (
        ReviewItem.objects.filter(campaign=campaign)
        .values("reviewer__username", "reviewer_group")
        .annotate(
            items=Count("pk"),
            certified=Count("pk", filter=Q(decision=Decision.CERTIFY, decided_by_rule=False)),
            revoked=Count("pk", filter=Q(decision=Decision.REVOKE, decided_by_rule=False)),
            by_rule=Count("pk", filter=Q(decided_by_rule=True)),
            open=Count("pk", filter=Q(decision="")),
        )
        .order_by("reviewer__username", "reviewer_group")
    )
    return [{**row, "label": _reviewer_label(row["reviewer__username"], row["reviewer_group"])} for row in rows]


def _reviewer_label(username: str | None, group: str) -> str:
    if username:
        return username
    return f"group “{group}”" if group else "nobody"


def _decision_event_seq() -> Subquery:
    """The seq of the audit event that recorded the item's decision (its first: an item is decided once)."""
    events = AuditEvent.objects.filter(
        target_type=REVIEW_ITEM_TARGET,
        target_id=Cast(OuterRef("pk"), output_field=CharField()),
        action__in=DECISION_ACTIONS,
    )
    return Subquery(events.order_by("seq").values("seq")[:1])


ITEM_COLUMNS = (
    "id",
    "grant_id",
    "identity__name",
    "identity__kind",
    "entitlement__system__name",
    "entitlement__name",
    "risk_tier",
    "stage",
    "grant__kind",
    "reviewer__username",
    "reviewer_group",
    "reassign_reason",
    "recommendation",
    "reason_flags",
    "decision",
    "decided_by__username",
    "decided_at",
    "decided_by_rule",
    "comment",
    "audit_seq",
    "remediation",
    "remediation_error",
    "grant__status",
    "grant__revoked_at",
    "identity__status",
)
IDENTITY_ITEM_WORDS = "Identity: still needed?"


def campaign_items(campaign: Campaign) -> QuerySet:
    """The campaign's items as dicts, with what an auditor checks, in one statement (no per-row query)."""
    return (
        ReviewItem.objects.filter(campaign=campaign)
        .annotate(audit_seq=_decision_event_seq())
        .order_by("identity_id", "entitlement_id", "stage", "pk")
        .values(*ITEM_COLUMNS)
    )


def item_rows_for_page(campaign: Campaign, limit: int) -> list[dict[str, Any]]:
    """The first `limit` items for the HTML page or the PDF, each with its reasons in words."""
    rows = list(campaign_items(campaign)[:limit])
    remediation, grant_status = dict(RemediationStatus.choices), dict(GrantStatus.choices)
    identity_status = dict(IdentityStatus.choices)
    for row in rows:
        row["is_identity_item"] = row["grant_id"] is None
        row["identity_status_label"] = identity_status.get(row["identity__status"], row["identity__status"])
        row["reasons"] = reasons_of(row["reason_flags"])
        row["remediation_label"] = remediation.get(row["remediation"], row["remediation"])
        row["grant_status_label"] = grant_status.get(row["grant__status"], row["grant__status"])
    return rows


CSV_HEADER = [
    "item",
    "item_kind",
    "grant",
    "identity",
    "identity_kind",
    "system",
    "entitlement",
    "risk_tier",
    "stage",
    "grant_kind",
    "reviewer",
    "reviewer_group",
    "reassigned_because",
    "recommendation",
    "reasons",
    "decision",
    "decided_by",
    "decided_at",
    "decided_by_rule",
    "comment",
    "audit_event_seq",
    "remediation",
    "remediation_error",
    "grant_status",
    "grant_ended_at",
    "identity_status_now",
]


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def item_csv_rows(campaign: Campaign) -> Iterator[list[Any]]:
    """Every item as a CSV row, read in chunks of CHUNK (a server-side cursor on PostgreSQL)."""
    for row in campaign_items(campaign).iterator(chunk_size=CHUNK):
        identity_item = row["grant_id"] is None
        yield [
            row["id"],
            "identity" if identity_item else "grant",
            row["grant_id"] or "",
            row["identity__name"],
            row["identity__kind"],
            row["entitlement__system__name"] or "",
            IDENTITY_ITEM_WORDS if identity_item else row["entitlement__name"],
            row["risk_tier"],
            row["stage"],
            row["grant__kind"],
            row["reviewer__username"] or "",
            row["reviewer_group"],
            row["reassign_reason"],
            row["recommendation"],
            "; ".join(reasons_of(row["reason_flags"])),
            row["decision"],
            row["decided_by__username"] or "",
            _iso(row["decided_at"]),
            "yes" if row["decided_by_rule"] else "no",
            row["comment"],
            row["audit_seq"] or "",
            row["remediation"],
            row["remediation_error"],
            row["grant__status"] or "",
            _iso(row["grant__revoked_at"]),
            row["identity__status"],
        ]


#
# Break-glass access in the campaign's scope while it ran
#
def break_glass_during(campaign: Campaign, *, now: datetime) -> QuerySet:
    """Break-glass grants in the campaign's scope granted between its launch and its close (or now):
    emergency access an auditor weighs beside the review. The scope's grant kinds are not applied
    (they say which grants are reviewed; break-glass is shown whatever they say)."""
    from .services.certification import grants_matching_scope

    if campaign.launched_at is None:
        return Grant.objects.none()
    until = campaign.closed_at or now
    grants = Grant.objects.filter(
        kind=GrantKind.BREAK_GLASS, granted_at__gte=campaign.launched_at, granted_at__lte=until
    )
    grants = grants_matching_scope(grants, campaign.scope or {}, ignore=("grant_kinds",))
    return grants.order_by("granted_at", "pk")


BREAK_GLASS_COLUMNS = (
    "pk",
    "identity__name",
    "identity__kind",
    "entitlement__system__name",
    "entitlement__name",
    "entitlement__risk_tier",
    "granted_at",
    "expires_at",
    "revoked_at",
    "status",
    "end_reason",
    "reason",
)
BREAK_GLASS_HEADER = [
    "grant",
    "identity",
    "identity_kind",
    "system",
    "entitlement",
    "risk_tier",
    "granted_at",
    "expires_at",
    "ended_at",
    "grant_status",
    "end_reason",
    "reason",
]
BREAK_GLASS_MARK = "# break-glass access in scope during the campaign"


def break_glass_rows(campaign: Campaign, *, now: datetime, limit: int | None = None) -> list[dict[str, Any]]:
    """For the page and the PDF: each break-glass grant with when it ended (or None: still held)."""
    rows = break_glass_during(campaign, now=now).values(*BREAK_GLASS_COLUMNS)
    rows = list(rows[:limit] if limit is not None else rows)
    statuses = dict(GrantStatus.choices)
    for row in rows:
        row["ended_at"] = _ended(row, now)
        row["status_label"] = statuses.get(row["status"], row["status"])
    return rows


def _ended(row: dict[str, Any], now: datetime) -> datetime | None:
    """When the access ended: its removal, or its expiry once passed; None while held."""
    if row["revoked_at"] is not None:
        return row["revoked_at"]
    expires = row["expires_at"]
    return expires if expires is not None and expires <= now else None


def break_glass_csv_rows(campaign: Campaign, *, now: datetime) -> Iterator[list[Any]]:
    """The CSV's own section after the items: a marker row, its header, then one row per grant."""
    yield []
    yield [BREAK_GLASS_MARK]
    yield BREAK_GLASS_HEADER
    for row in break_glass_during(campaign, now=now).values(*BREAK_GLASS_COLUMNS).iterator(chunk_size=CHUNK):
        yield [
            *_grant_cells(row),
            _iso(row["granted_at"]),
            _iso(row["expires_at"]),
            _iso(_ended(row, now)),
            row["status"],
            row["end_reason"],
            row["reason"],
        ]


def csv_footer(head: ChainHead, made_at: datetime, made_by: str) -> list[list[str]]:
    """The CSV's last rows: when and by whom it was made, and the chain head to check it against."""
    return [
        [],
        ["# report made", made_at.isoformat(), made_by],
        ["# audit chain head", head.expect, f"check: manage.py verify_audit --expect {head.expect}"],
    ]


#
# Across campaigns: grants not certified within their entitlement's cadence
#
def _last_certified_at() -> Subquery:
    certified = ReviewItem.objects.filter(grant_id=OuterRef("pk"), decision=Decision.CERTIFY)
    return Subquery(certified.order_by("-decided_at").values("decided_at")[:1])


def grants_not_certified(*, now: datetime) -> QuerySet:
    """Live grants never certified, or whose last certification is older than their entitlement's
    `review_cadence_days`, annotated with `last_certified_at`.

    A certification is a review item decided "certify" (by a reviewer, or kept by the campaign's
    non-response rule). The cadence is compared per distinct value (one small query for them) so that
    the condition is plain date arithmetic on every database, not interval maths in SQL.
    """
    grants = Grant.objects.live().annotate(last_certified_at=_last_certified_at())
    lapsed = Q(last_certified_at__isnull=True)
    cadences = Entitlement.objects.order_by().values_list("review_cadence_days", flat=True).distinct()
    for days in cadences:
        lapsed |= Q(entitlement__review_cadence_days=days, last_certified_at__lt=now - timedelta(days=days))
    return grants.filter(lapsed).select_related("identity", "entitlement__system")


def not_certified_rows(grants: QuerySet) -> QuerySet:
    """The report's columns as values, for the CSV (one statement, streamed)."""
    return grants.order_by("entitlement__system__name", "entitlement__name", "identity__name", "pk").values(
        "pk",
        "identity__name",
        "identity__kind",
        "entitlement__system__name",
        "entitlement__name",
        "entitlement__risk_tier",
        "entitlement__review_cadence_days",
        "kind",
        "status",
        "granted_at",
        "last_certified_at",
    )


def certification_due_at(last_certified_at: datetime | None, cadence_days: int) -> datetime | None:
    return last_certified_at + timedelta(days=cadence_days) if last_certified_at else None


NOT_CERTIFIED_HEADER = [
    "grant",
    "identity",
    "identity_kind",
    "system",
    "entitlement",
    "risk_tier",
    "review_cadence_days",
    "grant_kind",
    "grant_status",
    "granted_at",
    "last_certified_at",
    "certification_due_at",
]


def _grant_cells(row: dict) -> list[Any]:
    """The grant, its holder and its entitlement: the first columns of every grant row in the CSVs."""
    return [
        row["pk"],
        row["identity__name"],
        row["identity__kind"],
        row["entitlement__system__name"],
        row["entitlement__name"],
        row["entitlement__risk_tier"],
    ]


def not_certified_csv_rows(grants: QuerySet) -> Iterator[list[Any]]:
    for row in not_certified_rows(grants).iterator(chunk_size=CHUNK):
        yield [
            *_grant_cells(row),
            row["entitlement__review_cadence_days"],
            row["kind"],
            row["status"],
            _iso(row["granted_at"]),
            _iso(row["last_certified_at"]),
            _iso(certification_due_at(row["last_certified_at"], row["entitlement__review_cadence_days"])),
        ]


#
# Across campaigns: who held access to X at a time (from the grants' own history)
#
ENDED_STATUSES = [status for status in GrantStatus.values if status not in GrantStatus.live()]


def _left_live_at() -> Subquery:
    """When the grant's history first shows it ended: for an ended grant without `revoked_at`."""
    history = Grant.history.model.objects.filter(id=OuterRef("pk"), status__in=ENDED_STATUSES)
    return Subquery(history.order_by("history_date").values("history_date")[:1])


def grants_held(*, since: datetime, until: datetime) -> QuerySet:
    """Grants held at some moment of [since, until] (since == until: at that instant).

    The rule, from each grant's own rows:
    - held from `granted_at` (the target confirmed it); a grant never granted was never held;
    - until the earliest of `expires_at` (time-boxed access ends then, as everywhere in the portal,
      even before the sweep confirms it) and `removed_at`: `revoked_at` (the target confirmed the
      removal), or, for a grant that ended without one (imported so), the first time its history
      shows an ended status, else its last update;
    - a live grant with neither is still held.
    Annotated with `removed_at` and `ended_at` (the earlier of the two ends, or None).
    """
    ended_without_time = Case(When(status__in=ENDED_STATUSES, then=F("updated_at")), default=None)
    grants = Grant.objects.filter(granted_at__isnull=False, granted_at__lte=until).annotate(
        removed_at=Coalesce("revoked_at", _left_live_at(), ended_without_time)
    )
    still_held = Q(removed_at__isnull=True) | Q(removed_at__gt=since)
    not_expired = Q(expires_at__isnull=True) | Q(expires_at__gt=since)
    return grants.filter(still_held & not_expired).select_related("identity", "entitlement__system")


def ended_at(expires_at: datetime | None, removed_at: datetime | None) -> datetime | None:
    ends = [moment for moment in (expires_at, removed_at) if moment is not None]
    return min(ends) if ends else None


HELD_HEADER = [
    "grant",
    "identity",
    "identity_kind",
    "system",
    "entitlement",
    "grant_kind",
    "granted_at",
    "expires_at",
    "removed_at",
    "ended_at",
    "end_reason",
    "status_now",
]


def held_rows(grants: QuerySet) -> QuerySet:
    return grants.order_by("identity__name", "entitlement__name", "granted_at", "pk").values(
        "pk",
        "identity__name",
        "identity__kind",
        "entitlement__system__name",
        "entitlement__name",
        "kind",
        "granted_at",
        "expires_at",
        "removed_at",
        "end_reason",
        "status",
    )


def held_csv_rows(grants: QuerySet) -> Iterable[list[Any]]:
    for row in held_rows(grants).iterator(chunk_size=CHUNK):
        yield [
            row["pk"],
            row["identity__name"],
            row["identity__kind"],
            row["entitlement__system__name"],
            row["entitlement__name"],
            row["kind"],
            _iso(row["granted_at"]),
            _iso(row["expires_at"]),
            _iso(row["removed_at"]),
            _iso(ended_at(row["expires_at"], row["removed_at"])),
            row["end_reason"],
            row["status"],
        ]
