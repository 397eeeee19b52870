"""Read paths for break-glass: who may break glass into what, and which activations are live or open.

Each selector names the joins its page needs once, so lists run a fixed number of queries.
"""

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet, Window

from audit.kernel import clock
from governance import policies as inventory
from governance.choices import GrantStatus, IdentityKind, IdentityStatus, LifecycleStatus
from governance.models import Identity
from governance.roles import Role, group_names, has_role

from .models import BreakGlassActivation, BreakGlassEligibility

ELIGIBILITY_JOINS = ("entitlement", "entitlement__system", "entitlement__owner", "identity")
ACTIVATION_JOINS = (
    "identity",
    "entitlement",
    "entitlement__system",
    "grant",
    "activated_by",
    "reviewer",
    "eligibility",
)
User = get_user_model()


def eligibility_in_force_q(now: datetime | None = None, prefix: str = "") -> Q:
    """An eligibility that may be used now: active, not past its end, for a live break-glass entitlement.

    The one statement of the rule: the selectors below and `break_glass_activate` follow it.
    """
    now = clock.now() if now is None else now
    p = prefix
    return Q(
        **{
            f"{p}is_active": True,
            f"{p}expires_at__gt": now,
            f"{p}entitlement__break_glass_eligible": True,
            f"{p}entitlement__status": LifecycleStatus.ACTIVE,
            f"{p}entitlement__system__status": LifecycleStatus.ACTIVE,
        }
    )


def _holder_q(identity: Identity | None, user) -> Q:
    """Eligibilities naming this identity, or a group this (active) login belongs to."""
    holder = Q(pk__in=[])
    if identity is not None:
        holder |= Q(identity=identity)
    if user is not None and getattr(user, "is_active", False) and (identity is None or identity.kind == "human"):
        groups = sorted(group_names(user))
        if groups:
            holder |= Q(identity__isnull=True, group__in=groups)
    return holder


def eligible_entitlements(user_or_identity, *, now: datetime | None = None) -> QuerySet[BreakGlassEligibility]:
    """The eligibilities in force for a person (by name or by group membership) or a machine.

    A login not linked to an identity, or an identity that is not active, is eligible for nothing:
    a break-glass grant needs a holder in the inventory.
    """
    if isinstance(user_or_identity, Identity):
        identity = user_or_identity
        user = identity.user if identity.kind == IdentityKind.HUMAN and identity.user_id else None
    else:
        user = user_or_identity
        identity = inventory.identity_of(user)
    if identity is None or identity.status != IdentityStatus.ACTIVE:
        return BreakGlassEligibility.objects.none()
    return (
        BreakGlassEligibility.objects.filter(eligibility_in_force_q(now))
        .filter(_holder_q(identity, user))
        .select_related(*ELIGIBILITY_JOINS)
        .order_by("entitlement__system__name", "entitlement__name", "pk")
    )


def eligibility_list(*, user, q: str = "", state: str = "", order: str = "expires_at") -> QuerySet:
    """Every eligibility, for admins and auditors (others: none), filtered and sorted for the list page."""
    if not has_role(user, Role.ADMIN, Role.AUDITOR):
        return BreakGlassEligibility.objects.none()
    queryset = BreakGlassEligibility.objects.select_related(*ELIGIBILITY_JOINS)
    now = clock.now()
    if q:
        queryset = queryset.filter(
            Q(entitlement__name__icontains=q)
            | Q(entitlement__system__name__icontains=q)
            | Q(identity__name__icontains=q)
            | Q(group__icontains=q)
        )
    if state == "in_force":
        queryset = queryset.filter(eligibility_in_force_q(now))
    elif state == "expired":
        queryset = queryset.filter(is_active=True, expires_at__lte=now)
    elif state == "revoked":
        queryset = queryset.filter(is_active=False)
    return queryset.order_by(order, "pk" if not order.startswith("-") else "-pk")


#
# Activations
#
def live_activations(now: datetime | None = None) -> QuerySet[BreakGlassActivation]:
    """Activations whose access may exist now: before their hard end, grant not ended."""
    now = clock.now() if now is None else now
    return (
        BreakGlassActivation.objects.filter(
            ends_at__gt=now,
            grant__status__in=[GrantStatus.PENDING_PROVISION, GrantStatus.ACTIVE],
        )
        .select_related(*ACTIVATION_JOINS)
        .order_by("ends_at", "pk")
    )


# What the banner shows of an activation. Every page runs this query: with all seven joins and their
# columns it cost ~10 ms to compile and as much to plan (an eight-table join), for a banner that is
# almost always empty.
BANNER_FIELDS = (
    "is_drill",
    "ends_at",
    "identity__kind",
    "identity__name",
    "entitlement__name",
    "entitlement__system__name",
    "grant__status",
)


def my_live_activations(
    *, user, now: datetime | None = None, any_live: bool | None = None
) -> list[BreakGlassActivation]:
    """The break-glass access this person holds right now (for the banner on every page): only what it shows.

    `any_live`: whether `mine_live_activations` found any, when the caller asked it along with something else.
    """
    me = inventory.identity_of(user)
    if me is None:
        return []
    now = clock.now() if now is None else now
    # Almost always none: a look at the activations alone (no join to plan), the banner's join only when any.
    if not (mine_live_activations(user=user, me=me, now=now).exists() if any_live is None else any_live):
        return []
    return list(
        live_activations(now)
        .filter(_mine(user, me))
        .select_related(None)
        .select_related("identity", "entitlement__system", "grant")
        .only(*BANNER_FIELDS)[:5]
    )


def mine_live_activations(*, user, me: Identity | int | None, now: datetime) -> QuerySet[BreakGlassActivation]:
    """Activations of this person (held or activated by them) before their hard end; no joins, for a
    cheap "any?" (their grant may have ended early: `my_live_activations` then finds none to show).
    `user` and `me` may be ids (or a prepared query's slots)."""
    return BreakGlassActivation.objects.filter(_mine(user, me), ends_at__gt=now)


def _mine(user, me) -> Q:
    return Q(identity=me) | Q(activated_by=user)


def _reviewer_q(user) -> Q:
    groups = sorted(group_names(user))
    return Q(reviewer=user) | Q(reviewer_group__in=groups) if groups else Q(reviewer=user)


def activations_visible_to(user) -> QuerySet[BreakGlassActivation]:
    """Admins, auditors and the security group see every activation; anyone else the ones they hold,
    activated, or review (by name or group), and those into entitlements or systems they own."""
    from django.conf import settings

    base = BreakGlassActivation.objects.all()
    if has_role(user, Role.ADMIN, Role.AUDITOR) or settings.BREAK_GLASS_SECURITY_GROUP in group_names(user):
        return base
    me = inventory.identity_of(user)
    mine = Q(activated_by=user) | _reviewer_q(user)
    if me is not None:
        mine |= Q(identity=me) | Q(entitlement__owner=me) | Q(entitlement__system__owner=me)
    return base.filter(mine)


# What the live panel shows of an activation (jit/_break_glass_live_panel.html): only these columns.
LIVE_PANEL_JOINS = ("identity", "entitlement__system", "grant")
LIVE_PANEL_FIELDS = (
    "is_drill",
    "incident_reference",
    "ends_at",
    "review_due_at",
    "identity__name",
    "entitlement__name",
    "entitlement__system__name",
    "grant__status",
)


def live_panel(*, user, limit: int = 10) -> dict:
    """The dashboard's "live break-glass" panel: for admins, the security group and reviewers.

    Returns `{"show": False}` for anyone else, so the panel costs them one query (their groups are
    read once a request: `group_names`). The rows come with only the three joins and the columns the
    panel shows: with all seven activation joins their query took PostgreSQL ~4 ms to plan for 0.2 ms
    to run (now ~0.5 ms).
    """
    from django.conf import settings

    live = live_activations().select_related(None)
    if not has_role(user, Role.ADMIN) and settings.BREAK_GLASS_SECURITY_GROUP not in group_names(user):
        if not BreakGlassActivation.objects.filter(_reviewer_q(user)).exists():
            return {"show": False}
        live = live.filter(_reviewer_q(user))
    # How many in all comes with the rows (counted before the limit): one query however many are live.
    rows = list(
        live.select_related(*LIVE_PANEL_JOINS).only(*LIVE_PANEL_FIELDS).annotate(live_count=Window(Count("pk")))[:limit]
    )
    return {"show": True, "activations": rows, "count": rows[0].live_count if rows else 0}


def activation_get(*, user, pk: int) -> BreakGlassActivation:
    """One activation this user may see, with what its page shows; DoesNotExist otherwise."""
    return activations_visible_to(user).select_related(*ACTIVATION_JOINS, "entitlement__owner").get(pk=pk)
