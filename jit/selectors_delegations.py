"""Read paths for delegations: who sees which (the one statement of the rule, for the page and the API)."""

from django.db.models import Case, Prefetch, Q, QuerySet, Value, When

from governance import policies as inventory
from governance.choices import IdentityKind, IdentityStatus
from governance.models import Entitlement, Identity
from governance.roles import Role, has_role

from .models import Delegation
from .services.delegations import DELEGATE_KINDS

DELEGATION_JOINS = ("delegator", "delegate", "created_by", "created_by_identity")


def _with_joins(queryset: QuerySet[Delegation]) -> QuerySet[Delegation]:
    entitlements = Entitlement.objects.select_related("system").order_by("system__name", "name", "pk")
    return queryset.select_related(*DELEGATION_JOINS).prefetch_related(Prefetch("entitlements", queryset=entitlements))


def _of(identities: QuerySet[Identity]) -> Q:
    """Delegations given or received by any of these identities (semi-joins, not an OR across a join)."""
    ids = identities.values("pk")
    return Q(delegator__in=ids) | Q(delegate__in=ids)


def delegations_visible_to(*, user=None, machine: Identity | None = None) -> QuerySet[Delegation]:
    """Delegations this viewer may see, newest first, with what a row shows.

    Admins and auditors see every one; a person those they gave or received and those of the
    identities they own (owner or backup owner); a machine signed in by its token its own.
    """
    if machine is not None:
        return _with_joins(Delegation.objects.filter(_of(Identity.objects.filter(pk=machine.pk))))
    if user is None or not getattr(user, "is_authenticated", False):
        return Delegation.objects.none()
    if has_role(user, Role.ADMIN, Role.AUDITOR):
        return _with_joins(Delegation.objects.all())
    me = inventory.identity_of(user)
    if me is None:
        return Delegation.objects.none()
    answered_for = Identity.objects.filter(Q(pk=me.pk) | Q(owner=me) | Q(backup_owner=me))
    return _with_joins(Delegation.objects.filter(_of(answered_for)))


def delegators_for(*, user) -> QuerySet[Identity]:
    """For whom this person may delegate: themself and the active machines they own."""
    me = inventory.identity_of(user)
    if me is None:
        return Identity.objects.none()
    owned = (Q(owner=me) | Q(backup_owner=me)) & ~Q(kind=IdentityKind.HUMAN)
    yourself_first = Case(When(pk=me.pk, then=Value(0)), default=Value(1))
    return Identity.objects.filter(Q(pk=me.pk) | owned, status=IdentityStatus.ACTIVE).order_by(
        yourself_first, "name", "pk"
    )


def possible_delegates() -> QuerySet[Identity]:
    """The machines one may delegate to: active service accounts, workloads and agents."""
    return Identity.objects.filter(kind__in=DELEGATE_KINDS, status=IdentityStatus.ACTIVE).order_by("name", "pk")
