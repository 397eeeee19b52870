"""Read paths for pages and the API: each returns a queryset restricted to what the user may see,
with the joins its list needs declared once (no N+1 in any caller)."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import (
    BigIntegerField,
    Count,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Cast, Coalesce
from guardian.models import GroupObjectPermission, UserObjectPermission

from audit.kernel.links import links_for
from audit.models import AuditEvent

from . import policies
from .choices import Connector, FindingStatus, GrantStatus, IdentityKind, IdentityStatus
from .models import Entitlement, Finding, Grant, Identity, System
from .querysets import (
    EqualsAny,
    tier_rank,  # noqa: F401  (the pages and jit sort by it from here)
)


def _visible_identity_q(user) -> Q:
    """Identities a user without inventory-wide read may see: themself and what they own or manage.

    One indexed set per way of answering for an identity, united: an OR of the same conditions (with
    the delegations' subqueries) cannot use the indexes and read all 100,000 identities (28 ms) on
    every page of a requester's or owner's.
    """
    me = policies.identity_of(user)
    if me is None:
        return Q(pk__in=[])
    identities = Identity.objects.order_by()
    ids = (
        identities.filter(pk=me.pk)
        .values("pk")
        .union(
            identities.filter(owner=me).values("pk"),
            identities.filter(backup_owner=me).values("pk"),
            identities.filter(manager=me).values("pk"),
            _delegated_to(UserObjectPermission, user=user),
            _delegated_to(GroupObjectPermission, group__user=user),
        )
    )
    return Q(pk__in=ids)


def _delegated_to(permission_model, **holder) -> QuerySet:
    """Ids of identities delegated to this user, directly or through a group (guardian object
    permissions, the same ones `has_perm` answers from), as a subquery: no extra query."""
    app_label, codename = policies.DELEGATED_PERMISSION.split(".")
    return (
        permission_model.objects.filter(
            **holder,
            permission__codename=codename,
            content_type__app_label=app_label,
            content_type__model=Identity._meta.model_name,
        )
        .annotate(identity_id=Cast("object_pk", BigIntegerField()))
        .order_by()
        .values("identity_id")
    )


#
# Identities
#
def _count_of(model, field: str, **filters) -> Coalesce:
    """A correlated COUNT: evaluated for the rows a page shows, not joined and grouped over the whole table."""
    rows = model.objects.filter(**{field: OuterRef("pk")}, **filters).order_by().values(field)
    return Coalesce(Subquery(rows.annotate(n=Count("pk")).values("n")), 0)


def _identity_counts() -> dict[str, Coalesce]:
    return {
        "live_grant_count": _count_of(Grant, "identity", status__in=GrantStatus.live()),
        "open_finding_count": _count_of(Finding, "identity", status=FindingStatus.OPEN),
    }


def identities_visible_to(*, user) -> QuerySet[Identity]:
    """The identities this user may see, bare: what a list filters, sorts and picks its page's keys from
    (then `identity_rows` reads the page). `identity_list` adds what a page of model instances shows."""
    if policies.can_view_inventory(user):
        return Identity.objects.all()
    return Identity.objects.filter(_visible_identity_q(user))


def identity_list(*, user) -> QuerySet[Identity]:
    return (
        identities_visible_to(user=user)
        .select_related("owner", "backup_owner", "manager")
        .annotate(**_identity_counts())
    )


# As get_kind_display() and get_status_display(), without their ~5 µs a call (lists print one a row).
KIND_LABELS = dict(IdentityKind.choices)
STATUS_LABELS = dict(IdentityStatus.choices)


@dataclass(frozen=True, slots=True)
class OwnerShown:
    """An identity's owner as its list names them: the name, and the status when they are no longer active."""

    name: str
    status: str

    def get_status_display(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)


@dataclass(frozen=True, slots=True)
class IdentityRow:
    """An identity as its list shows it (governance/_identity_results.html): a row of values, not the
    identity and its three people built as four model instances of twenty-one fields each."""

    pk: int
    name: str
    kind: str
    status: str
    team: str
    last_used_at: datetime | None
    owner: OwnerShown | None
    live_grant_count: int
    open_finding_count: int
    url: str

    def get_kind_display(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    def get_status_display(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def is_human(self) -> bool:
        return self.kind == IdentityKind.HUMAN


IDENTITY_ROW = ("pk", "name", "kind", "status", "team", "last_used_at", "owner__name", "owner__status")


def identity_rows(keys: list[int]) -> list[IdentityRow]:
    """The identities `keys` names, in that order, as their list shows them.

    A list picks its keys with its filters (`identities_visible_to` and the page's), then reads its rows
    here by key alone: with the filters again, a search planned its trigram conditions twice over, and the
    page built 200 model instances to show nine values a row.
    """
    rows = Identity.objects.filter(pk__in=keys).annotate(**_identity_counts()).order_by()
    link = links_for("governance:identity_detail")
    found = {}
    for pk, name, kind, status, team, last_used_at, owner_name, owner_status, grants, findings in rows.values_list(
        *IDENTITY_ROW, "live_grant_count", "open_finding_count"
    ):
        owner = OwnerShown(owner_name, owner_status) if owner_name is not None else None
        found[pk] = IdentityRow(pk, name, kind, status, team, last_used_at, owner, grants, findings, link(pk))
    return [found[key] for key in keys if key in found]


TRIGRAM = 3  # characters: shorter text has no trigram for pg_trgm to look up


def searched_by_trigrams(text: str) -> bool:
    """Whether a contains-search for `text` is read through the trigram indexes (migration 0016), which
    return every match: on PostgreSQL, for text of a trigram or more. The searches below choose their
    plan by it, and the lists count such matches with their keys (`IdentityFilter.reads_every_match`)."""
    return connection.vendor == "postgresql" and len(text) >= TRIGRAM


def identities_matching(queryset: QuerySet[Identity], text: str) -> QuerySet[Identity]:
    """The identity search, one for the lists and the API: name, email or team contains the text.

    On PostgreSQL each field is read through its trigram index (migration 0016). The match is given
    twice on purpose: the planner multiplies the two estimates as if independent, so it expects few
    rows, reads them through those indexes and sorts them. Given once, a page (name order, LIMIT 50)
    walked the name index betting that matches are spread evenly; those of "svc-data" all sort after
    the people, so it read 67,000 identities to find 50 (0.2-0.5 s at 100,000; now ~5 ms). Each row
    is compared twice, which costs nothing next to reading it. Text shorter than a trigram has no
    index to use and matches nearly everyone: that walk then pays, so it is given once.
    """
    match = Q(name__icontains=text) | Q(email__icontains=text) | Q(team__icontains=text)
    if not searched_by_trigrams(text):
        return queryset.filter(match)
    return queryset.filter(match).filter(match)


def identities_with_open_finding(queryset: QuerySet[Identity], kind: str) -> QuerySet[Identity]:
    """The identity lists' finding filter: identities with an open finding of this kind.

    On PostgreSQL the findings' identities are read first, as one array (`id = ANY(ARRAY(...))`, off the
    partial index of migration 0020), then the identities by key: a few thousand look-ups whatever the
    sort. As `id IN (...)` the planner chose between walking the sort's index in hope of early matches
    (50 ms for "orphaned" by name at 100,000 identities) and reading every identity to join them (50 ms
    for "stale" by owner, the count 16-25 ms); here 6-20 ms, and the count 2-7 ms.
    """
    identities = Finding.objects.filter(kind=kind, status=FindingStatus.OPEN).order_by().values("identity_id")
    if connection.vendor != "postgresql":
        return queryset.filter(pk__in=identities)
    return queryset.filter(EqualsAny(F("pk"), ArraySubquery(identities)))


def identities_with_owner_named(queryset: QuerySet[Identity], text: str) -> QuerySet[Identity]:
    """The identity lists' owner filter: identities whose owner's name contains the text.

    On PostgreSQL, for text long enough to have a trigram, the owners are read first through the name's
    trigram index, as one array (`owner_id = ANY(ARRAY(...))`), then their identities off the (owner,
    status) index. As a join, the planner walked the name index in the list's order betting that matches
    are spread evenly: those of "costa" own machines, which sort after the people, so it read 46,756
    identities to find 50 (24 ms at 100,000; now ~3 ms). Shorter text matches nearly every owner: there
    the walk pays.
    """
    if not searched_by_trigrams(text):
        return queryset.filter(owner__name__icontains=text)
    owners = Identity.objects.filter(name__icontains=text).order_by().values("pk")
    return queryset.filter(EqualsAny(F("owner_id"), ArraySubquery(owners)))


OWNER_WALK_ROWS = 5_000  # rows before a page sorted by owner: past them, one sorted query is cheaper


def identity_keys_by_owner(rows: QuerySet[Identity], sort: str) -> Callable[[int, int], list[int]] | None:
    """The identity lists' keys sorted by owner (`sort` "owner" or "-owner"), the owned and the unowned
    read apart; None for any other sort.

    As one query sorted by the owner's name, PostgreSQL joined every identity to its owner and sorted
    them all for any page (a hash join of 100,000, ~40 ms). Apart, the owned ones in their owners' name
    order walk the owners' (name, id) index and each one's identities off (owner, status): page 1 in
    ~1.2 ms. Those without an owner come last (first when descending, as PostgreSQL sorts NULL) in key
    order. How many the first part holds is counted only for a page that reaches past it. The walk grows
    with the page (page 100: ~5,000 identities): past OWNER_WALK_ROWS the one sorted query reads them.
    """
    if sort.lstrip("-") != "owner" or connection.vendor != "postgresql":
        return None  # (elsewhere NULL sorts first, and the plans this counts on are PostgreSQL's)
    descending = sort.startswith("-")
    owned = rows.filter(owner__name__isnull=False).order_by("-owner__name" if descending else "owner__name", "pk")
    unowned = rows.filter(owner__isnull=True).order_by("pk")
    first, then = (unowned, owned) if descending else (owned, unowned)

    def keys(bottom: int, top: int) -> list[int] | None:
        if bottom >= OWNER_WALK_ROWS:
            return None  # deep: the one sorted query, whose cost does not grow with the page
        found = list(first.values_list("pk", flat=True)[bottom:top])
        if len(found) == top - bottom:
            return found
        in_first = bottom + len(found) if found else first.count()
        start = max(0, bottom - in_first)
        return found + list(then.values_list("pk", flat=True)[start : start + top - bottom - len(found)])

    return keys


def identities_owned_by(*, user) -> QuerySet[Identity]:
    """The identities this user answers for (owner or backup owner): the 'my identities' page's keys
    (`identity_rows` reads its rows)."""
    me = policies.identity_of(user)
    if me is None:
        return Identity.objects.none()
    return identities_visible_to(user=user).filter(Q(owner=me) | Q(backup_owner=me))


def identity_get(*, user, pk: int) -> Identity:
    """One identity the user may see, or DoesNotExist (callers turn it into a 404, never a 403 leak)."""
    return identity_list(user=user).get(pk=pk)


#
# Catalogue
#
def system_list(*, user) -> QuerySet[System]:
    """Systems for those who read the inventory; anyone else sees only the systems they answer for
    (as owner, or as the owner of one of its entitlements). The request catalogue does not come from
    here: it lists `requestable_entitlements`, which everyone browses."""
    queryset = System.objects.select_related("owner").annotate(
        entitlement_count=Count("entitlements", filter=Q(entitlements__status="active"), distinct=True)
    )
    if policies.can_view_inventory(user):
        return queryset
    me = policies.identity_of(user)
    if me is None:
        return queryset.none()
    return queryset.filter(Q(owner=me) | Q(pk__in=Entitlement.objects.filter(owner=me).values("system_id")))


def entitlement_list(*, user) -> QuerySet[Entitlement]:
    return Entitlement.objects.select_related("system", "owner", "system__owner")


def entitlements_matching(queryset: QuerySet[Entitlement], text: str) -> QuerySet[Entitlement]:
    """The catalogue's search, one for the page and the API: name, system or purpose contains the text.

    Two sets united, not one OR: an OR that reaches across the join to the system can use no index,
    while each set here is read through its trigram index (migration 0016) on PostgreSQL.
    """
    own = Entitlement.objects.filter(Q(name__icontains=text) | Q(business_purpose__icontains=text))
    by_system = Entitlement.objects.filter(system__in=System.objects.filter(name__icontains=text).values("pk"))
    return queryset.filter(pk__in=own.order_by().values("pk").union(by_system.order_by().values("pk")))


def requestable_entitlements(*, user) -> QuerySet[Entitlement]:
    """What may be requested now: live, requestable, in a live system, with an active owner."""
    return entitlement_list(user=user).filter(
        status="active", requestable=True, system__status="active", owner__status=IdentityStatus.ACTIVE
    )


#
# Grants
#
def grant_list(*, user) -> QuerySet[Grant]:
    queryset = Grant.objects.select_related(
        "identity", "identity__owner", "entitlement", "entitlement__system", "entitlement__owner"
    )
    if policies.can_view_inventory(user):
        return queryset
    me = policies.identity_of(user)
    if me is None:
        return queryset.none()
    # The few identities and entitlements this user answers for, read first: with plain id lists
    # PostgreSQL combines two index scans; an OR across joins walked every grant (290 ms at 170k).
    identity_ids = list(Identity.objects.filter(_visible_identity_q(user)).values_list("pk", flat=True))
    entitlement_ids = list(Entitlement.objects.filter(Q(owner=me) | Q(system__owner=me)).values_list("pk", flat=True))
    return queryset.filter(Q(identity_id__in=identity_ids) | Q(entitlement_id__in=entitlement_ids))


def grant_list_of(*, identity: Identity) -> QuerySet[Grant]:
    """An identity's own grants: what a machine signed in by its token reads of the inventory."""
    return Grant.objects.select_related(
        "identity", "identity__owner", "entitlement", "entitlement__system", "entitlement__owner"
    ).filter(identity=identity)


def provisioning_work_for(*, identity: Identity) -> QuerySet[Grant]:
    """Grants the manual connector asked this system owner to put in place or take away, oldest first."""
    return (
        Grant.objects.select_related("identity", "entitlement", "entitlement__system")
        .filter(
            status__in=[GrantStatus.PENDING_PROVISION, GrantStatus.REVOKING],
            entitlement__system__owner=identity,
            entitlement__system__connector=Connector.MANUAL,
        )
        .order_by("updated_at", "pk")
    )


#
# Findings
#
def finding_list(*, user) -> QuerySet[Finding]:
    queryset = Finding.objects.select_related("identity", "entitlement", "entitlement__system", "grant", "owner_to_act")
    if policies.can_view_inventory(user):
        return queryset
    me = policies.identity_of(user)
    return queryset.filter(owner_to_act=me) if me is not None else queryset.none()


#
# An object's history on its page
#
EVENTS_SHOWN = 20


def object_events(*, user, obj, limit: int = EVENTS_SHOWN) -> QuerySet[AuditEvent]:
    """The latest audit events of one object, if this user may see its history (`policies.can_view_history`).

    Whoever may not gets none: seeing a page is not reading the audit trail.
    """
    if not policies.can_view_history(user, obj):
        return AuditEvent.objects.none()
    return AuditEvent.objects.for_target(obj).order_by("-seq")[:limit]


def audit_actors_named(value: str) -> Q:
    """Audit events by the people and machines named `value` (the trail records logins and ids)."""
    named = Identity.objects.filter(name__icontains=value)
    return Q(actor_user_id__in=named.filter(user__isnull=False).values("user_id")) | Q(
        actor_identity_id__in=named.values("pk")
    )
