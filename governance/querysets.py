"""Reusable filters only; business rules live in services and policies."""

from datetime import datetime

from django.db import connection, models
from django.db.models import Case, F, IntegerField, Lookup, Q, Value, When

from audit.kernel import clock

from .choices import GrantStatus, IdentityStatus, RiskTier


def tier_rank(field: str) -> Case:
    """A risk tier, criticality or severity (one scale) as its rank, low 0 to critical 3, to sort by.

    Sorting the stored words would put critical before high before low before medium. Here, below the
    models, so an index can be built on the very expression the pages sort by (`Finding`'s).
    """
    return Case(
        *(When(**{field: tier}, then=Value(rank)) for rank, tier in enumerate(RiskTier.values)),
        default=Value(-1),
        output_field=IntegerField(),
    )


class EqualsAny(Lookup):
    """`lhs = ANY(rhs)`, rhs an array (PostgreSQL), such as an `ArraySubquery`: the subquery is read once,
    first, and its values looked up by key; `lhs IN (subquery)` leaves the planner free to join."""

    lookup_name = "equals_any"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs})", (*lhs_params, *rhs_params)


def one_of(field_name: str, keys) -> Q | EqualsAny:
    """`field IN keys` with the keys as one value (`= ANY(array)` on PostgreSQL), so that a prepared query's
    SQL (audit.kernel.prepared) is the same however many keys a page has; elsewhere a plain `IN`."""
    if connection.vendor == "postgresql":
        return EqualsAny(F(field_name), keys)
    return Q(**{f"{field_name}__in": keys})


class IdentityQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status=IdentityStatus.ACTIVE)

    def owned_by(self, identity) -> "IdentityQuerySet":
        return self.filter(Q(owner=identity) | Q(backup_owner=identity))


def in_force_q(now: datetime | None = None) -> Q:
    """A grant in force: confirmed active and not past its expiry (standing grants have none).

    The one statement of the rule: `GrantQuerySet.in_force` and `Grant.is_in_force` follow it, so
    pages, the API and services treat a grant past expiry as inactive even before the sweep runs.
    """
    now = clock.now() if now is None else now
    return Q(status=GrantStatus.ACTIVE) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))


def past_expiry_q(now: datetime | None = None) -> Q:
    """Still marked active but past its expiry: what the sweep will expire (see `due_for_expiry`)."""
    now = clock.now() if now is None else now
    return Q(status=GrantStatus.ACTIVE, expires_at__lte=now)


class GrantQuerySet(models.QuerySet):
    def live(self):
        """Grants whose access exists or may exist on the target (includes ones being removed)."""
        return self.filter(status__in=GrantStatus.live())

    def in_force(self, now: datetime | None = None):
        """Grants in force now: confirmed active and not past expiry, even before the sweep runs."""
        return self.filter(in_force_q(now))

    def not_in_force(self, now: datetime | None = None):
        return self.exclude(in_force_q(now))

    def due_for_expiry(self, now: datetime | None = None):
        return self.filter(past_expiry_q(now))
