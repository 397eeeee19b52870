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


def _identity_conditions(now: datetime, path: str) -> tuple[dict[str, Q], dict]:
    """The reasons that are about the identity at `path` ("identity__" from a grant, "" on Identity
    rows): inactive, orphaned, stale, its secret exposed, its rotation overdue."""
    stale_since = now - timedelta(days=settings.HYGIENE_STALE_AFTER_DAYS)
    machine = ~Q(**{f"{path}kind": IdentityKind.HUMAN})
    period = ExpressionWrapper(
        Cast(f"{path}rotation_period_days", IntegerField()) * Value(timedelta(days=1), output_field=DurationField()),
        output_field=DurationField(),
    )
    rotation_due = ExpressionWrapper(F(f"{path}last_rotated_at") + period, output_field=DateTimeField())
    return {
        "holder_inactive": ~Q(**{f"{path}status": IdentityStatus.ACTIVE}),
        "orphaned": machine
        & (Q(**{f"{path}owner__isnull": True}) | ~Q(**{f"{path}owner__status": IdentityStatus.ACTIVE})),
        "stale_identity": machine & Q(**{f"{path}last_used_at__lt": stale_since}),
        "secret_exposed": machine
        & Q(
            **{
                f"{path}secret_location__in": [
                    SecretLocation.EMBEDDED_IN_CODE,
                    SecretLocation.CI_CD,
                    SecretLocation.UNKNOWN,
                ]
            }
        ),
        "rotation_overdue": machine
        & Q(**{f"{path}rotation_period_days__isnull": False})
        & (Q(**{f"{path}last_rotated_at__isnull": True}) | Q(rotation_due_at__lt=now)),
    }, {"rotation_due_at": rotation_due}


def _conditions(now: datetime) -> dict[str, Q]:
    """Each reason as a condition on a Grant row (the grant `g`, its identity and entitlement)."""
    unused_since = now - timedelta(days=settings.HYGIENE_UNUSED_GRANT_DAYS)
    about_identity, identity_helpers = _identity_conditions(now, "identity__")
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
    certified = ReviewItem.objects.filter(grant_id=OuterRef("pk"), decision="certify")
    return {
        "unused": Q(granted_at__lt=unused_since) & (Q(last_used_at__isnull=True) | Q(last_used_at__lt=unused_since)),
        "holder_inactive": about_identity["holder_inactive"],
        "orphaned": about_identity["orphaned"],
        # Each correlated subquery runs once per row: a cheap uncorrelated test first (a hashed set,
        # evaluated once; AND stops at the first false) spares it for the rows it cannot match, which
        # on a 100,000-item launch is nearly all of them (bench/README.md).
        "sod_conflict": Q(
            entitlement_id__in=SodRule.entitlements.through.objects.filter(
                sodrule__is_active=True, sodrule__action=SodAction.BLOCK
            ).values("entitlement_id")
        )
        & Q(Exists(sod)),
        "stale_identity": about_identity["stale_identity"],
        "renewed_often": Q(
            identity_id__in=Grant.objects.filter(renewal_of__isnull=False).order_by().values("identity_id")
        )
        & Q(renewal_count__gte=settings.JIT_RENEWAL_STEP_UP_AFTER),
        "secret_exposed": about_identity["secret_exposed"],
        "rotation_overdue": about_identity["rotation_overdue"],
        "high_risk": Q(entitlement__risk_tier__in=[RiskTier.HIGH, RiskTier.CRITICAL]),
        "never_reviewed": ~Q(Exists(certified)),
    }, {"renewal_count": Coalesce(Subquery(renewals), 0), **identity_helpers}


def _identity_item_conditions(now: datetime) -> tuple[dict[str, Q], dict]:
    """The reasons that apply to a non-human identity itself, as conditions on an Identity row:
    "never reviewed" means its owner never attested it (no identity item of it certified)."""
    conditions, helpers = _identity_conditions(now, "")
    attested = ReviewItem.objects.filter(identity_id=OuterRef("pk"), grant__isnull=True, decision="certify")
    return {**conditions, "never_reviewed": ~Q(Exists(attested))}, helpers


def annotate_reasons(grants, now: datetime):
    """`grants` with `reason_flags` (the bits that hold) and `recommendation` (certify or revoke)."""
    return _annotate(grants, *_conditions(now))


def annotate_identity_reasons(identities, now: datetime):
    """Identity rows with `reason_flags` and `recommendation`, for identity items: the same bits as
    a grant's for the reasons about the identity (inactive, orphaned, stale, secret, rotation,
    never attested)."""
    return _annotate(identities, *_identity_item_conditions(now))


def _annotate(rows, conditions: dict[str, Q], helpers: dict):
    rows = rows.alias(**helpers)
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
    return rows.annotate(
        reason_flags=ExpressionWrapper(flags, output_field=IntegerField()),
        recommendation=Case(When(revoke_when, then=Value("revoke")), default=Value("certify")),
    )
