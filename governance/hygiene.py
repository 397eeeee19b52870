"""Hygiene detectors: what is wrong in the inventory right now, computed by set-based queries.

Each detector runs exactly one query (joins and aggregates in the database, never a query per
row) and yields `Candidate`s: the finding a scan would store, keyed by kind and subject so the
same problem keeps its key from scan to scan. Nothing here writes; `services.findings.findings_scan`
stores the result.
"""

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import (
    Count,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Value,
)
from django.db.models.functions import Cast
from django.utils import timezone

from .choices import (
    CredentialType,
    FindingKind,
    GrantKind,
    IdentityKind,
    IdentityStatus,
    LifecycleStatus,
    RiskTier,
    SecretLocation,
    Severity,
)
from .models import Entitlement, Grant, Identity, SodRule

ACTIVE = IdentityStatus.ACTIVE
NON_HUMAN = IdentityKind.non_human()
HIGH_TIERS = [RiskTier.HIGH, RiskTier.CRITICAL]
EXPOSED_LOCATIONS = [SecretLocation.EMBEDDED_IN_CODE, SecretLocation.CI_CD, SecretLocation.UNKNOWN]
# Grant findings speak of live holders: a leaver's access is being removed, and its findings close.
HOLDER_NOT_GONE = ~Q(identity__status=IdentityStatus.OFFBOARDED)
# None: the whole inventory (the scan); a collection: only these identities (a re-check after a change).
Ids = Collection[int] | None


def _scoped(rows, ids: Ids, lookup: str = "pk"):
    """Narrow a detector's query to the identities re-checked (same query, one more indexed filter)."""
    return rows if ids is None else rows.filter(**{f"{lookup}__in": list(ids)})


@dataclass(frozen=True)
class Candidate:
    """A finding as one scan sees it (not yet stored)."""

    key: str
    kind: str
    severity: str
    owner_to_act_id: int | None
    subject: str
    reason: str
    identity_id: int | None = None
    entitlement_id: int | None = None
    grant_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def details(self) -> dict[str, Any]:
        return {"subject": self.subject, "reason": self.reason, **self.extra}


def _active_or_none(pk: int | None, status: str | None) -> int | None:
    return pk if pk is not None and status == ACTIVE else None


def _answerer(row: dict, prefix: str = "") -> int | None:
    """Who answers for an identity: its owner (machines) or its manager (people), if active."""
    if row[f"{prefix}kind"] == IdentityKind.HUMAN:
        return _active_or_none(row[f"{prefix}manager_id"], row[f"{prefix}manager__status"])
    return _active_or_none(row[f"{prefix}owner_id"], row[f"{prefix}owner__status"])


def _days(moment: datetime | None, now: datetime) -> str:
    return "never" if moment is None else f"{(now - moment).days} days ago"


def _kind_label(kind: str) -> str:
    return IdentityKind(kind).label.lower()


#
# Identity findings
#
def detect_orphaned(now: datetime, identity_ids: Ids = None) -> Iterator[Candidate]:
    """Active machine identities whose owner is no longer active."""
    rows = (
        _scoped(Identity.objects.filter(kind__in=NON_HUMAN, status=ACTIVE), identity_ids)
        .exclude(owner__status=ACTIVE)
        .values(
            "id",
            "name",
            "kind",
            "owner__name",
            "owner__status",
            "backup_owner_id",
            "backup_owner__status",
            "owner__manager_id",
            "owner__manager__status",
        )
    )
    for row in rows:
        # The backup owner steps in; failing that the former owner's manager; failing that nobody
        # (the findings page shows these to admins as "no one to act").
        to_act = _active_or_none(row["backup_owner_id"], row["backup_owner__status"]) or _active_or_none(
            row["owner__manager_id"], row["owner__manager__status"]
        )
        yield Candidate(
            key=f"{FindingKind.ORPHANED}:{row['id']}",
            kind=FindingKind.ORPHANED,
            severity=Severity.HIGH,
            owner_to_act_id=to_act,
            identity_id=row["id"],
            subject=f"{_kind_label(row['kind']).capitalize()} {row['name']}",
            reason=f"Its owner {row['owner__name'] or '(none)'} is {row['owner__status'] or 'missing'}; "
            "someone must take it over or offboard it.",
        )


_IDENTITY_PEOPLE = (
    "id",
    "name",
    "kind",
    "owner_id",
    "owner__status",
    "manager_id",
    "manager__status",
)


def detect_stale(now: datetime, identity_ids: Ids = None) -> Iterator[Candidate]:
    """Active identities unused for HYGIENE_STALE_AFTER_DAYS (never used counts from creation)."""
    days = settings.HYGIENE_STALE_AFTER_DAYS
    cutoff = now - timedelta(days=days)
    rows = _scoped(
        Identity.objects.filter(
            Q(last_used_at__lt=cutoff) | Q(last_used_at__isnull=True, created_at__lt=cutoff), status=ACTIVE
        ),
        identity_ids,
    ).values(*_IDENTITY_PEOPLE, "last_used_at")
    for row in rows:
        human = row["kind"] == IdentityKind.HUMAN
        yield Candidate(
            key=f"{FindingKind.STALE}:{row['id']}",
            kind=FindingKind.STALE,
            severity=Severity.LOW if human else Severity.MEDIUM,
            owner_to_act_id=_answerer(row),
            identity_id=row["id"],
            subject=f"{_kind_label(row['kind']).capitalize()} {row['name']}",
            reason=f"Not used for more than {days} days (last used: {_days(row['last_used_at'], now)}); "
            "remove it if it is no longer needed.",
        )


def detect_rotation_overdue(now: datetime, identity_ids: Ids = None) -> Iterator[Candidate]:
    """Machine credentials past their rotation period, or never rotated although a period is set."""
    # Cast: SQLite multiplies durations only by plain integer fields.
    period = ExpressionWrapper(
        Cast("rotation_period_days", IntegerField()) * Value(timedelta(days=1), output_field=DurationField()),
        output_field=DurationField(),
    )
    due_at = ExpressionWrapper(F("last_rotated_at") + period, output_field=DateTimeField())
    rows = (
        _scoped(
            Identity.objects.filter(kind__in=NON_HUMAN, status=ACTIVE, rotation_period_days__isnull=False),
            identity_ids,
        )
        .alias(rotation_due_at=due_at)
        .filter(Q(last_rotated_at__isnull=True) | Q(rotation_due_at__lt=now))
        .values(*_IDENTITY_PEOPLE, "last_rotated_at", "rotation_period_days")
    )
    for row in rows:
        yield Candidate(
            key=f"{FindingKind.ROTATION_OVERDUE}:{row['id']}",
            kind=FindingKind.ROTATION_OVERDUE,
            severity=Severity.MEDIUM,
            owner_to_act_id=_answerer(row),
            identity_id=row["id"],
            subject=f"{_kind_label(row['kind']).capitalize()} {row['name']}",
            reason=f"Its credential must be rotated every {row['rotation_period_days']} days "
            f"and was last rotated {_days(row['last_rotated_at'], now)}.",
        )


def detect_secret_outside_manager(now: datetime, identity_ids: Ids = None) -> Iterator[Candidate]:
    """Static secrets of machine identities kept in code, CI/CD variables or nobody knows where."""
    rows = _scoped(
        Identity.objects.filter(
            kind__in=NON_HUMAN,
            status=ACTIVE,
            credential_type=CredentialType.STATIC_SECRET,
            secret_location__in=EXPOSED_LOCATIONS,
        ),
        identity_ids,
    ).values(*_IDENTITY_PEOPLE, "secret_location")
    for row in rows:
        where = SecretLocation(row["secret_location"]).label.lower()
        yield Candidate(
            key=f"{FindingKind.SECRET_OUTSIDE_MANAGER}:{row['id']}",
            kind=FindingKind.SECRET_OUTSIDE_MANAGER,
            severity=Severity.HIGH if row["secret_location"] == SecretLocation.EMBEDDED_IN_CODE else Severity.MEDIUM,
            owner_to_act_id=_answerer(row),
            identity_id=row["id"],
            subject=f"{_kind_label(row['kind']).capitalize()} {row['name']}",
            reason=f"Its static secret lives outside a secrets manager ({where}); move it to the secrets manager.",
        )


#
# Grant and entitlement findings
#
_GRANT_FIELDS = (
    "id",
    "kind",
    "granted_at",
    "last_used_at",
    "identity_id",
    "identity__name",
    "identity__kind",
    "identity__owner_id",
    "identity__owner__status",
    "identity__manager_id",
    "identity__manager__status",
    "entitlement_id",
    "entitlement__name",
    "entitlement__risk_tier",
    "entitlement__owner_id",
    "entitlement__owner__status",
    "entitlement__system__name",
)


def _grant_subject(row: dict) -> str:
    return f"{row['identity__name']} holds {row['entitlement__system__name']} / {row['entitlement__name']}"


def _tier_above_max_q() -> Q:
    """Grants whose entitlement is riskier than the holder's kind may hold (MAX_RISK_TIER_BY_KIND)."""
    condition = Q(pk__in=[])
    for kind, max_tier in settings.MAX_RISK_TIER_BY_KIND.items():
        above = RiskTier.values[RiskTier.rank(max_tier) + 1 :]
        if above:
            condition |= Q(identity__kind=kind, entitlement__risk_tier__in=above)
    return condition


def detect_excessive_privilege(now: datetime, identity_ids: Ids = None) -> Iterator[Candidate]:
    """Grants in force that are unused for HYGIENE_UNUSED_GRANT_DAYS, or riskier than the holder's kind allows."""
    days = settings.HYGIENE_UNUSED_GRANT_DAYS
    cutoff = now - timedelta(days=days)
    unused = Q(last_used_at__lt=cutoff) | Q(last_used_at__isnull=True, granted_at__lt=cutoff)
    rows = (
        _scoped(Grant.objects.in_force(now).filter(HOLDER_NOT_GONE), identity_ids, "identity_id")
        .filter(unused | _tier_above_max_q())
        .values(*_GRANT_FIELDS)
    )
    for row in rows:
        kind, tier = row["identity__kind"], row["entitlement__risk_tier"]
        max_tier = settings.MAX_RISK_TIER_BY_KIND.get(kind, RiskTier.CRITICAL)
        reasons = []
        if RiskTier.rank(tier) > RiskTier.rank(max_tier):
            reasons.append(f"its risk tier {tier} is above the {max_tier} a {_kind_label(kind)} may hold")
        last = row["last_used_at"] or row["granted_at"]
        if last is not None and last < cutoff:
            reasons.append(
                f"it has not been used for more than {days} days (last used: {_days(row['last_used_at'], now)})"
            )
        yield Candidate(
            key=f"{FindingKind.EXCESSIVE_PRIVILEGE}:{row['id']}",
            kind=FindingKind.EXCESSIVE_PRIVILEGE,
            severity=Severity.HIGH if RiskTier.rank(tier) >= RiskTier.rank(RiskTier.HIGH) else Severity.MEDIUM,
            owner_to_act_id=_answerer(row, "identity__")
            or _active_or_none(row["entitlement__owner_id"], row["entitlement__owner__status"]),
            identity_id=row["identity_id"],
            entitlement_id=row["entitlement_id"],
            grant_id=row["id"],
            subject=_grant_subject(row),
            reason=("; ".join(reasons) or "it is excessive").capitalize() + ". Revoke it or make it just-in-time.",
        )


def detect_standing_high_risk(now: datetime, identity_ids: Ids = None) -> Iterator[Candidate]:
    """Standing grants in force on high or critical entitlements (these should be just-in-time)."""
    rows = (
        _scoped(Grant.objects.in_force(now).filter(HOLDER_NOT_GONE), identity_ids, "identity_id")
        .filter(kind=GrantKind.STANDING, entitlement__risk_tier__in=HIGH_TIERS)
        .values(*_GRANT_FIELDS)
    )
    for row in rows:
        tier = row["entitlement__risk_tier"]
        yield Candidate(
            key=f"{FindingKind.STANDING_HIGH_RISK}:{row['id']}",
            kind=FindingKind.STANDING_HIGH_RISK,
            severity=tier,
            owner_to_act_id=_active_or_none(row["entitlement__owner_id"], row["entitlement__owner__status"]),
            identity_id=row["identity_id"],
            entitlement_id=row["entitlement_id"],
            grant_id=row["id"],
            subject=_grant_subject(row),
            reason=f"Standing access to a {tier}-risk entitlement; grant it just-in-time instead.",
        )


def detect_sod_conflicts(now: datetime, identity_ids: Ids = None) -> Iterator[Candidate]:
    """Identities holding in force every entitlement of an active SoD rule (one grouped query)."""
    through = SodRule.entitlements.through
    rule_size = (
        through.objects.filter(sodrule_id=OuterRef("entitlement__sod_rules"))
        .values("sodrule_id")
        .annotate(n=Count("entitlement_id"))
        .values("n")
    )
    rows = (
        _scoped(Grant.objects.in_force(now).filter(HOLDER_NOT_GONE), identity_ids, "identity_id")
        # Narrow to grants of ruled entitlements first, so the (entitlement, status) index serves.
        .filter(entitlement__in=through.objects.filter(sodrule__is_active=True).values("entitlement_id"))
        .filter(entitlement__sod_rules__is_active=True)
        .values(
            "identity_id",
            "identity__name",
            "identity__kind",
            "identity__owner_id",
            "identity__owner__status",
            "identity__manager_id",
            "identity__manager__status",
            "entitlement__sod_rules",
            "entitlement__sod_rules__name",
            "entitlement__sod_rules__severity",
        )
        .annotate(held=Count("entitlement_id", distinct=True), needed=Subquery(rule_size))
        .filter(held__gte=F("needed"))
        .order_by()
    )
    for row in rows:
        rule_id = row["entitlement__sod_rules"]
        yield Candidate(
            key=f"{FindingKind.SOD_CONFLICT}:{row['identity_id']}:{rule_id}",
            kind=FindingKind.SOD_CONFLICT,
            severity=row["entitlement__sod_rules__severity"],
            owner_to_act_id=_answerer(row, "identity__"),
            identity_id=row["identity_id"],
            subject=f"{row['identity__name']} under rule {row['entitlement__sod_rules__name']}",
            reason=f"Holds all {row['held']} entitlements that rule {row['entitlement__sod_rules__name']} "
            "says must not be held together; revoke one of them.",
            extra={"sod_rule": rule_id},
        )


def detect_entitlement_without_owner(now: datetime, identity_ids: Ids = None) -> Iterator[Candidate]:
    """Live entitlements whose owner is no longer active: nobody can approve or review them."""
    # Re-checking a person looks at the entitlements they own (their leaving leaves them ownerless).
    rows = (
        _scoped(Entitlement.objects.filter(status=LifecycleStatus.ACTIVE), identity_ids, "owner_id")
        .exclude(owner__status=ACTIVE)
        .values(
            "id", "name", "system__name", "owner__name", "owner__status", "system__owner_id", "system__owner__status"
        )
    )
    for row in rows:
        yield Candidate(
            key=f"{FindingKind.ENTITLEMENT_WITHOUT_OWNER}:{row['id']}",
            kind=FindingKind.ENTITLEMENT_WITHOUT_OWNER,
            severity=Severity.HIGH,
            owner_to_act_id=_active_or_none(row["system__owner_id"], row["system__owner__status"]),
            entitlement_id=row["id"],
            subject=f"Entitlement {row['system__name']} / {row['name']}",
            reason=f"Its owner {row['owner__name']} is {row['owner__status']}; it cannot be requested "
            "until the system owner names a new owner.",
        )


def detect_renewed_as_standing(now: datetime, identity_ids: Ids = None) -> Iterator[Candidate]:
    """JIT grants in force that the policy stepped up as standing access in disguise (renewed too often
    or held too long in all), or whose renewal chain is JIT_RENEWAL_STEP_UP_AFTER renewals long or longer.

    The chain is followed by N joins on `renewal_of` (N from settings), one query on any database.
    The key is the holder and entitlement, so the finding survives the next renewal.
    """
    renewals = max(settings.JIT_RENEWAL_STEP_UP_AFTER, 1)
    chain = "__".join(["renewal_of"] * renewals)
    # The request that issued the grant keeps the policy's decision (the jit app's snapshot).
    stepped_up = Q(source_request__policy__step_up=True)
    rows = (
        _scoped(Grant.objects.in_force(now).filter(HOLDER_NOT_GONE), identity_ids, "identity_id")
        .filter(Q(**{f"{chain}__isnull": False}) | stepped_up, kind=GrantKind.JIT)
        .values(*_GRANT_FIELDS)
    )
    for row in rows:
        yield Candidate(
            key=f"{FindingKind.RENEWED_AS_STANDING}:{row['identity_id']}:{row['entitlement_id']}",
            kind=FindingKind.RENEWED_AS_STANDING,
            severity=Severity.MEDIUM,
            owner_to_act_id=_active_or_none(row["entitlement__owner_id"], row["entitlement__owner__status"]),
            identity_id=row["identity_id"],
            entitlement_id=row["entitlement_id"],
            grant_id=row["id"],
            subject=_grant_subject(row),
            reason="Just-in-time access renewed again and again, or held for weeks in all: it has become "
            "standing access; review whether it is needed.",
        )


DETECTORS: dict[str, Callable[[datetime, Ids], Iterator[Candidate]]] = {
    FindingKind.ORPHANED: detect_orphaned,
    FindingKind.STALE: detect_stale,
    FindingKind.ROTATION_OVERDUE: detect_rotation_overdue,
    FindingKind.SECRET_OUTSIDE_MANAGER: detect_secret_outside_manager,
    FindingKind.EXCESSIVE_PRIVILEGE: detect_excessive_privilege,
    FindingKind.STANDING_HIGH_RISK: detect_standing_high_risk,
    FindingKind.SOD_CONFLICT: detect_sod_conflicts,
    FindingKind.ENTITLEMENT_WITHOUT_OWNER: detect_entitlement_without_owner,
    FindingKind.RENEWED_AS_STANDING: detect_renewed_as_standing,
}


def findings_detect(*, now: datetime | None = None, identity_ids: Ids = None) -> dict[str, Candidate]:
    """Every current finding, by key (one query per kind); only those of `identity_ids` when given."""
    now = now or timezone.now()
    found: dict[str, Candidate] = {}
    for detector in DETECTORS.values():
        for candidate in detector(now, identity_ids):
            found[candidate.key] = candidate
    return found


def findings_in_scope(findings, identity_ids: Ids = None):
    """The stored findings a detection with the same `identity_ids` speaks for (and may resolve).

    Exactly what the detectors look at: findings of their kinds on these identities, and the
    ownerless-entitlement findings of entitlements these identities own.
    """
    findings = findings.filter(kind__in=list(DETECTORS))
    if identity_ids is None:
        return findings
    ids = list(identity_ids)
    return findings.filter(
        Q(identity_id__in=ids) | Q(kind=FindingKind.ENTITLEMENT_WITHOUT_OWNER, entitlement__owner_id__in=ids)
    )
