"""Why a review item recommends what it does: each reason a bit, computed in SQL at launch, named here.

The conditions are ORM expressions over a grant, so one INSERT ... SELECT computes every item's
reasons and recommendation on PostgreSQL and SQLite alike. A reason that says access is unneeded or
unsafe (unused, orphaned, an SoD conflict, the holder gone) recommends revoking; the others (high
risk, never reviewed, renewed many times, a secret outside a vault, rotation overdue) inform.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce

from .choices import GrantStatus, IdentityKind, IdentityStatus, RiskTier, SecretLocation, SodAction
from .models import Grant, ReviewItem, SodRule


@dataclass(frozen=True)
class Reason:
    bit: int
    code: str
    words: str
    revoke: bool


REASONS: tuple[Reason, ...] = (
    Reason(1, "unused", "not used for {unused} days or more", True),
    Reason(2, "holder_inactive", "the holder is suspended or offboarded", True),
    Reason(4, "orphaned", "the machine's owner is missing or no longer active", True),
    Reason(8, "sod_conflict", "held together with an entitlement an SoD rule forbids", True),
    Reason(16, "stale_identity", "the identity has not been used for {stale} days or more", True),
    Reason(32, "renewed_often", "renewed {renewals} times or more: standing access in disguise", False),
    Reason(64, "secret_exposed", "its secret lives outside a secrets manager", False),
    Reason(128, "rotation_overdue", "its credential is overdue for rotation", False),
    Reason(256, "high_risk", "high or critical risk", False),
    Reason(512, "never_reviewed", "never certified before", False),
)
REVOKE_MASK = sum(r.bit for r in REASONS if r.revoke)


def _words(reason: Reason) -> str:
    return reason.words.format(
        unused=settings.HYGIENE_UNUSED_GRANT_DAYS,
        stale=settings.HYGIENE_STALE_AFTER_DAYS,
        renewals=settings.JIT_RENEWAL_STEP_UP_AFTER,
    )


def reasons_of(flags: int) -> list[str]:
    """The reasons a review item's flags stand for, in words, most telling first."""
    return [_words(r) for r in REASONS if flags & r.bit]


def reason_codes(flags: int) -> list[str]:
    return [r.code for r in REASONS if flags & r.bit]


def _conditions(now: datetime) -> dict[str, Q]:
    """Each reason as a condition on a Grant row (the grant `g`, its identity and entitlement)."""
    unused_since = now - timedelta(days=settings.HYGIENE_UNUSED_GRANT_DAYS)
    stale_since = now - timedelta(days=settings.HYGIENE_STALE_AFTER_DAYS)
    machine = ~Q(identity__kind=IdentityKind.HUMAN)
    held_elsewhere = Grant.objects.filter(
        identity_id=OuterRef(OuterRef("identity_id")),
        entitlement__sod_rules=OuterRef("pk"),
        status__in=GrantStatus.live(),
    ).exclude(entitlement_id=OuterRef(OuterRef("entitlement_id")))
    sod = SodRule.objects.filter(
        is_active=True, entitlements=OuterRef("entitlement_id"), action=SodAction.BLOCK
    ).filter(Exists(held_elsewhere))
    renewals = (
        Grant.objects.filter(
            identity_id=OuterRef("identity_id"), entitlement_id=OuterRef("entitlement_id"), renewal_of__isnull=False
        )
        .order_by()
        .values("identity_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    period = ExpressionWrapper(
        Cast("identity__rotation_period_days", IntegerField()) * Value(timedelta(days=1), output_field=DurationField()),
        output_field=DurationField(),
    )
    rotation_due = ExpressionWrapper(F("identity__last_rotated_at") + period, output_field=DateTimeField())
    certified = ReviewItem.objects.filter(grant_id=OuterRef("pk"), decision="certify")
    return {
        "unused": Q(granted_at__lt=unused_since) & (Q(last_used_at__isnull=True) | Q(last_used_at__lt=unused_since)),
        "holder_inactive": ~Q(identity__status=IdentityStatus.ACTIVE),
        "orphaned": machine & (Q(identity__owner__isnull=True) | ~Q(identity__owner__status=IdentityStatus.ACTIVE)),
        "sod_conflict": Q(Exists(sod)),
        "stale_identity": machine & Q(identity__last_used_at__lt=stale_since),
        "renewed_often": Q(renewal_count__gte=settings.JIT_RENEWAL_STEP_UP_AFTER),
        "secret_exposed": machine
        & Q(
            identity__secret_location__in=[
                SecretLocation.EMBEDDED_IN_CODE,
                SecretLocation.CI_CD,
                SecretLocation.UNKNOWN,
            ]
        ),
        "rotation_overdue": machine
        & Q(identity__rotation_period_days__isnull=False)
        & (Q(identity__last_rotated_at__isnull=True) | Q(rotation_due_at__lt=now)),
        "high_risk": Q(entitlement__risk_tier__in=[RiskTier.HIGH, RiskTier.CRITICAL]),
        "never_reviewed": ~Q(Exists(certified)),
    }, {"renewal_count": Coalesce(Subquery(renewals), 0), "rotation_due_at": rotation_due}


def annotate_reasons(grants, now: datetime):
    """`grants` with `reason_flags` (the bits that hold) and `recommendation` (certify or revoke)."""
    conditions, helpers = _conditions(now)
    grants = grants.alias(**helpers)
    by_code = {r.code: r for r in REASONS}
    flags = sum(
        (
            Case(When(condition, then=Value(by_code[code].bit)), default=Value(0))
            for code, condition in conditions.items()
        ),
        Value(0),
    )
    revoke_when = Q()
    for code, condition in conditions.items():
        if by_code[code].revoke:
            revoke_when |= condition
    return grants.annotate(
        reason_flags=ExpressionWrapper(flags, output_field=IntegerField()),
        recommendation=Case(When(revoke_when, then=Value("revoke")), default=Value("certify")),
    )
