"""Read paths for the request, approval, grant and notification pages.

Each selector takes the viewing user and returns only what is theirs, with the joins its page
needs declared here once, so no page runs a query per row.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.contrib.auth import get_user_model
from django.contrib.postgres.expressions import ArraySubquery
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, Window
from django.db.models.functions import Coalesce
from django.urls import reverse

from audit.choices import ActorType, AuditAction
from audit.kernel import clock
from audit.kernel.links import links_for
from audit.kernel.prepared import PreparedQuery
from audit.models import AuditEvent
from governance import policies as inventory
from governance.choices import RISK_LABELS, GrantStatus, IdentityKind, IdentityStatus
from governance.models import Entitlement, Grant, Identity, Notification, SodRule
from governance.querysets import EqualsAny, one_of, past_expiry_q
from governance.roles import Role, has_role

from .choices import RequestStatus, StageStatus
from .forms import duration_words
from .models import AccessRequest, Approval, ApprovalStage

REQUEST_JOINS = (
    "requester",
    "requester__identity",
    "requester_identity",
    "beneficiary",
    "beneficiary__owner",
    "entitlement",
    "entitlement__system",
    "grant",
)
GRANT_JOINS = ("identity", "identity__owner", "entitlement", "entitlement__system", "entitlement__owner")
RECENTLY_ENDED = timedelta(days=30)
RECENT_REQUESTS_SHOWN = 3
User = get_user_model()


#
# Whose access is it
#
def _mine_q(me, prefix: str) -> Q:
    """Access of my own identity or of an identity I own (owner or backup owner).

    A semi-join on the few identities concerned: an OR across the join made PostgreSQL scan every
    grant (90 ms at 170k grants).
    """
    answered_for = Identity.objects.filter(Q(pk=me.pk) | Q(owner=me) | Q(backup_owner=me)).values("pk")
    return Q(**{f"{prefix}__in": answered_for})


def beneficiaries_for(*, user) -> QuerySet[Identity]:
    """Whom this user may request for: themself, and the active non-human identities they own."""
    me = inventory.identity_of(user)
    if me is None:
        return Identity.objects.none()
    owned = Q(owner=me) | Q(backup_owner=me)
    return (
        Identity.objects.filter(Q(pk=me.pk) | (owned & ~Q(kind="human")), status=IdentityStatus.ACTIVE)
        .select_related("owner")
        .order_by("kind", "name", "pk")
    )


#
# Requests
#
def request_list(*, user, status: str = "", order: str = "-created_at") -> QuerySet[AccessRequest]:
    """Requests I made, or made for me or for an identity I own."""
    me = inventory.identity_of(user)
    mine = Q(requester=user)
    if me is not None:
        mine |= _mine_q(me, "beneficiary")
    queryset = AccessRequest.objects.filter(mine).select_related(*REQUEST_JOINS)
    if status:
        queryset = queryset.filter(status=status)
    return queryset.order_by(order, "-pk" if order.startswith("-") else "pk")


def requests_visible_to(user) -> QuerySet[AccessRequest]:
    """Every request this user may see (the one statement of the rule, for pages and the API).

    Admins and auditors see all; anyone else the requests they made, those for their own identity
    or an identity they own (owner or backup owner), and those with a stage routed to them.
    """
    if sees_every_request(user):
        return AccessRequest.objects.all()
    return requests_involving(user)


def sees_every_request(user) -> bool:
    """Admins and auditors see every request (`requests_visible_to`)."""
    return has_role(user, Role.ADMIN, Role.AUDITOR)


def requests_involving(user, *, among=None) -> QuerySet[AccessRequest]:
    """What `requests_visible_to` shows those who see not all: the requests they made, those for their
    identity or one they own, those with a stage routed to them. Reads of the login only its key and
    identity (a login stand-in builds it: `jit.selectors_queue`'s prepared query of the links).

    `among`: only these keys (or a prepared query's slot for them), inside the semi-join too, so that
    PostgreSQL looks at these requests only, not at every one involving the user.
    """
    me = inventory.identity_of(user)
    mine = Q(requester=user) | Q(stages__eligible=user)
    if me is not None:
        mine |= _mine_q(me, "beneficiary")
    involving, requests = AccessRequest.objects.filter(mine), AccessRequest.objects.all()
    if among is not None:
        involving, requests = involving.filter(one_of("pk", among)), requests.filter(one_of("pk", among))
    # A semi-join: the stage join must not repeat a request once per eligible person.
    return requests.filter(pk__in=involving.values("pk"))


def request_get(*, user, pk: int) -> AccessRequest:
    """One request this user may see, with everything its page shows; DoesNotExist otherwise."""
    return (
        requests_visible_to(user)
        .select_related(*REQUEST_JOINS, "renewal_of")
        .prefetch_related(
            Prefetch(
                "stages",
                queryset=ApprovalStage.objects.order_by("position").prefetch_related(
                    Prefetch("eligible", queryset=User.objects.select_related("identity")),
                    Prefetch(
                        "approvals",
                        queryset=Approval.objects.select_related("approver", "approver__identity").order_by(
                            "decided_at"
                        ),
                    ),
                ),
            )
        )
        .get(pk=pk)
    )


def pending_requests(*, user) -> QuerySet[AccessRequest]:
    return request_list(user=user, status=RequestStatus.PENDING)


#
# The approver's queue
#
def current_stage_position() -> Subquery:
    """A request's current stage: the position of its lowest pending one."""
    return Subquery(
        ApprovalStage.objects.filter(request=OuterRef("pk"), status=StageStatus.PENDING)
        .order_by("position")
        .values("position")[:1]
    )


def past_request_count() -> Coalesce:
    """How many other requests the request's beneficiary has made (0 when none)."""
    past_requests = (
        AccessRequest.objects.filter(beneficiary=OuterRef("beneficiary"))
        .exclude(pk=OuterRef("pk"))
        .order_by()
        .values("beneficiary")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(past_requests, output_field=IntegerField()), Value(0))


def approval_queue(*, user, risk_tier: str = "", system_id: int | None = None) -> QuerySet[AccessRequest]:
    """Pending requests whose current stage is routed to me, that I have not decided, oldest first.

    Everything a row shows is joined or prefetched, so the query count does not grow with the queue.
    """
    queryset = routed_to_me(user=user, risk_tier=risk_tier, system_id=system_id)
    grants_now = Grant.objects.in_force().select_related("entitlement", "entitlement__system").order_by("pk")
    return (
        queryset.annotate(past_request_count=past_request_count())
        .select_related(*REQUEST_JOINS)
        .prefetch_related(
            Prefetch("stages", queryset=ApprovalStage.objects.order_by("position").prefetch_related("eligible")),
            Prefetch("beneficiary__grants", queryset=grants_now, to_attr="grants_in_force"),
            # The latest few (one may be this request), so an approver sees a pattern, not just a count.
            Prefetch(
                "beneficiary__access_requests",
                queryset=AccessRequest.objects.select_related("entitlement", "entitlement__system").order_by(
                    "-created_at", "-pk"
                )[: RECENT_REQUESTS_SHOWN + 1],
                to_attr="recent_requests",
            ),
        )
        .order_by("created_at", "pk")
    )


def routed_to_me(*, user, risk_tier: str = "", system_id: int | None = None) -> QuerySet[AccessRequest]:
    """The rule of my queue alone (`approval_queue` adds what its rows show): no join but the beneficiary's.

    The current stage is the lowest-positioned pending one. Conflicts of interest are excluded
    here too (routing already leaves those people out; this keeps fallback approvers honest).

    In SQL, a pending stage routed to me with no pending stage before it (a request's positions are
    unique: that is its current stage), and the machines I answer for as a NOT EXISTS on the few I
    own: compared with the current position (a subquery per request, run twice each) and a join on
    every beneficiary, the queue's rule ran in half the time (~2.2 ms for 500 requests, from ~4.5).
    `current_position` is still annotated for the rows that select it.
    """
    me = inventory.identity_of(user)
    earlier_pending = ApprovalStage.objects.filter(
        request=OuterRef(OuterRef("pk")), status=StageStatus.PENDING, position__lt=OuterRef("position")
    )
    routed = ApprovalStage.objects.filter(request=OuterRef("pk"), status=StageStatus.PENDING, eligible=user).exclude(
        Exists(earlier_pending)
    )
    decided_by_me = Approval.objects.filter(request=OuterRef("pk"), approver=user)
    queryset = (
        AccessRequest.objects.filter(status=RequestStatus.PENDING)
        .annotate(current_position=current_stage_position())
        .filter(Exists(routed))
        .exclude(Exists(decided_by_me))
        .exclude(requester=user)
    )
    if me is not None and me.status != IdentityStatus.ACTIVE:
        return AccessRequest.objects.none()
    if me is not None:
        answered_for = Identity.objects.filter(Q(owner=me) | Q(backup_owner=me), pk=OuterRef("beneficiary_id"))
        queryset = queryset.exclude(beneficiary=me).exclude(Exists(answered_for.exclude(kind="human")))
    if risk_tier:
        queryset = queryset.filter(entitlement__risk_tier=risk_tier)
    if system_id:
        queryset = queryset.filter(entitlement__system_id=system_id)
    return queryset


def with_my_standing(entitlements: QuerySet, *, me) -> QuerySet:
    """Mark what I hold now, what is on its way to me and what I asked for, so the catalogue neither
    invites a refused request nor says "you hold it" of access not (or no longer) in force."""
    if me is None:
        return entitlements.annotate(held_by_me=Value(False), granting_to_me=Value(False), requested_by_me=Value(False))
    mine = Grant.objects.filter(identity=me, entitlement=OuterRef("pk"))
    asked = AccessRequest.objects.filter(beneficiary=me, entitlement=OuterRef("pk"))
    waiting = Q(status=RequestStatus.APPROVED, grant__isnull=True, activation_deadline__gt=clock.now())
    return entitlements.annotate(
        held_by_me=Exists(mine.in_force()),
        granting_to_me=Exists(mine.filter(status=GrantStatus.PENDING_PROVISION)),
        requested_by_me=Exists(asked.filter(Q(status=RequestStatus.PENDING) | waiting)),
    )


# The catalogue's sortable columns (`?sort=key`, `-key` descending), each to a field or an alias.
CATALOGUE_SORTS = {"system": "system__name", "name": "name", "risk": "risk_rank"}


def catalogue_order(entitlements: QuerySet, sort: str) -> QuerySet:
    """The catalogue in the order asked for (system, then name, by default); ties by id."""
    from governance.selectors import tier_rank

    field = CATALOGUE_SORTS.get(sort.lstrip("-"))
    if field is None:
        return entitlements.order_by("system__name", "name", "pk")
    ordered = f"-{field}" if sort.startswith("-") else field
    return entitlements.alias(risk_rank=tier_rank("risk_tier")).order_by(ordered, "system__name", "name", "pk")


def approval_queue_count(*, user) -> int:
    return approval_queue(user=user).count()


#
# Grants
#
def holder_grants(*, user) -> QuerySet[Grant]:
    """Grants of my identity and of the identities I own, with a flag for a pending extension."""
    held = _held_grants(user)
    return held.select_related(*GRANT_JOINS, "source_request").annotate(has_pending_renewal=_pending_renewal())


def _held_grants(user) -> QuerySet[Grant]:
    me = inventory.identity_of(user)
    return Grant.objects.none() if me is None else Grant.objects.filter(_mine_q(me, "identity"))


def _pending_renewal() -> Exists:
    return Exists(AccessRequest.objects.filter(renewal_of=OuterRef("pk"), status=RequestStatus.PENDING))


# What a grant table shows beside the grant (jit/_grant_table.html): holder, entitlement, system, source request.
GRANT_SHOWN_JOINS = ("identity", "entitlement__system", "source_request")


def grants_shown(keys: list[int]) -> list[Grant]:
    """The grants `keys` names, in that order, with what a grant table shows.

    A list picks its keys with its filters, then reads the rows by key: joined to the holder's
    filters, each list's query took PostgreSQL ~8 ms to plan for 0.4 ms to run.
    """
    rows = Grant.objects.filter(pk__in=keys).select_related(*GRANT_SHOWN_JOINS)
    found = {grant.pk: grant for grant in rows.annotate(has_pending_renewal=_pending_renewal())}
    return [found[key] for key in keys if key in found]


SOONEST_EXPIRY_FIRST = (F("expires_at").asc(nulls_last=True), "pk")


def my_grants(*, user) -> dict[str, list[Grant]]:
    """My grants in three groups: in force (soonest expiry first), pending provisioning, recently ended.

    A grant past its expiry counts as ended even while the sweep has not reached it yet.
    """
    now = clock.now()
    grants = _held_grants(user)
    past_expiry = past_expiry_q(now)
    finished = ~Q(status__in=[GrantStatus.ACTIVE, GrantStatus.PENDING_PROVISION]) & Q(
        updated_at__gte=now - RECENTLY_ENDED
    )
    groups = {
        "in_force": grants.in_force(now).order_by(*SOONEST_EXPIRY_FIRST),
        "pending": grants.filter(status=GrantStatus.PENDING_PROVISION).order_by("created_at", "pk"),
        "ended": grants.filter(past_expiry | finished).order_by("-updated_at", "-pk")[:50],
    }
    keys = {name: list(rows.values_list("pk", flat=True)) for name, rows in groups.items()}
    shown = {grant.pk: grant for grant in grants_shown([key for group in keys.values() for key in group])}
    return {name: [shown[key] for key in group if key in shown] for name, group in keys.items()}


def ready_to_activate(*, user, now: datetime | None = None) -> QuerySet[AccessRequest]:
    """Approved access waiting for its holder to start it, within its activation window, soonest
    closing first: mine, and that of the identities I own (the pages offer one click to start it)."""
    me = inventory.identity_of(user)
    if me is None:
        return AccessRequest.objects.none()
    return (
        AccessRequest.objects.filter(
            _mine_q(me, "beneficiary"),
            status=RequestStatus.APPROVED,
            grant__isnull=True,
            activation_deadline__gt=clock.now() if now is None else now,
        )
        .select_related("beneficiary", "entitlement", "entitlement__system")
        .order_by("activation_deadline", "pk")
    )


#
# Notifications
#
def notification_list(*, user) -> QuerySet[Notification]:
    """My notifications in time order, newest first (unread ones stand out on the page)."""
    return Notification.objects.filter(recipient=user).order_by("-created_at", "-pk")


# Where a notice's action is, by its kind: the words of the link that leads there.
NOTICE_ACTIONS = {
    "grant.expiring": "Extend",
    "request.approval_needed": "Decide",
    "request.reminder": "Decide",
    "request.escalated": "Decide",
}


def notifications_about(notes: list[Notification]) -> list[Notification]:
    """Name the system and entitlement of each notice about a request or a grant (its key says which:
    "request:42:..." or "grant:7:..."), in two queries for a whole page, and the action it leads to."""
    ids: dict[str, set[int]] = {"request": set(), "grant": set()}
    for note in notes:
        kind, _, rest = note.key.partition(":")
        number = rest.partition(":")[0]
        if kind in ids and number.isdigit():
            ids[kind].add(int(number))
    requests = AccessRequest.objects.filter(pk__in=ids["request"]).select_related("entitlement__system")
    grants = Grant.objects.filter(pk__in=ids["grant"]).select_related("entitlement__system")
    found = {
        **{("request", r.pk): r for r in (requests if ids["request"] else [])},
        **{("grant", g.pk): g for g in (grants if ids["grant"] else [])},
    }
    for note in notes:
        kind, _, rest = note.key.partition(":")
        number = rest.partition(":")[0]
        subject = found.get((kind, int(number))) if number.isdigit() else None
        note.entitlement = subject.entitlement if subject is not None else None
        action = NOTICE_ACTIONS.get(note.kind, "Open")
        if note.kind == "request.approved" and kind == "request" and subject is not None:
            waiting = subject.status == RequestStatus.APPROVED and subject.grant_id is None
            action = "Activate" if waiting and subject.activation_deadline else action
        note.action = action if note.link else ""
    return notes


def unread_notifications(*, user) -> QuerySet[Notification]:
    return Notification.objects.filter(recipient=user, read_at__isnull=True)


def unread_notification_count(*, user) -> int:
    return unread_notifications(user=user).count()


#
# Dashboard
#
# The panels' rows are values, read by SQL built once per process (audit.kernel.prepared): building and
# compiling the panels' seven querysets cost ~5 ms of CPU a page, several times what PostgreSQL took to
# run them, and their rows' model instances ~1 ms more. Each panel still picks its keys by its page's
# rule (`routed_to_me`, `ready_to_activate`, `pending_requests`, `_held_grants`), and reads its rows by
# key, in the same statement but for the approvals (their count comes with their keys).


@dataclass(frozen=True, slots=True)
class SystemNamed:
    """A system as a panel names it."""

    name: str


@dataclass(frozen=True, slots=True)
class EntitlementNamed:
    """An entitlement as a panel names it: its system, its name and its risk."""

    name: str
    system: SystemNamed
    risk_tier: str = ""

    def get_risk_tier_display(self) -> str:
        return RISK_LABELS.get(self.risk_tier, self.risk_tier)


@dataclass(frozen=True, slots=True)
class IdentityNamed:
    """A beneficiary or a holder as a panel names it (and tells a person from a machine)."""

    name: str
    kind: str

    @property
    def is_human(self) -> bool:
        return self.kind == IdentityKind.HUMAN


@dataclass(frozen=True, slots=True)
class PanelRequest:
    """A request as the dashboard's panels show it (jit/_ready_to_activate.html too), linked to its page."""

    pk: int
    url: str
    created_at: datetime
    start_at: datetime | None
    activation_deadline: datetime | None
    entitlement: EntitlementNamed
    beneficiary: IdentityNamed

    def __str__(self) -> str:
        return f"Request #{self.pk}"


@dataclass(frozen=True, slots=True)
class PanelGrant:
    """A grant in force as the dashboard lists it: `timeleft` and `expires_soon` read its status, kind and expiry."""

    pk: int
    url: str
    status: str
    kind: str
    expires_at: datetime | None
    entitlement: EntitlementNamed
    identity: IdentityNamed


@dataclass(frozen=True, slots=True)
class PanelNotice:
    """An unread notice: its subject, where it leads (if anywhere), when it came."""

    pk: int
    subject: str
    link: str
    created_at: datetime


# What the panels show of a request and of a grant: only these columns (the rows' others, JSON among
# them, cost more to read), and no model instances.
PANEL_REQUEST_COLUMNS = (
    "pk",
    "created_at",
    "start_at",
    "activation_deadline",
    "beneficiary__name",
    "beneficiary__kind",
    "entitlement__name",
    "entitlement__risk_tier",
    "entitlement__system__name",
)
PANEL_GRANT_COLUMNS = (
    "pk",
    "status",
    "kind",
    "expires_at",
    "identity__name",
    "identity__kind",
    "entitlement__name",
    "entitlement__system__name",
)


def dashboard_panels(*, user, limit: int = 10) -> dict:
    """What the dashboard shows: access ready to start, my grants in force, my pending requests, my
    approvals to do (and how many), unread notices.

    Six queries, each panel's SQL built once per process: the approvals' keys with their count, then
    their rows by key; each other panel its keys and its rows in one statement. Read through the pages'
    querysets, with their joins and the queue's prefetches, the panels took eleven, and PostgreSQL
    ~12 ms to plan them (the approvals' alone ~9 ms, for 1 ms to run).
    """
    me = inventory.identity_of(user)
    shape = (None if me is None else me.status, limit)
    ids = (user.pk, None if me is None else me.pk)
    now = clock.now()
    approvals = panel_rows(_approvals_query, shape, *ids)
    approval_keys = [pk for pk, _ in approvals]
    request_url = links_for("jit:request_detail")
    approving = {row[0]: row for row in panel_rows(_requests_by_key_query, (), approval_keys)} if approvals else {}
    grant_url = links_for("governance:grant_detail")
    return {
        "ready_to_activate": [_request(row, request_url) for row in panel_rows(_ready_query, shape, *ids, now)],
        "pending_requests": [_request(row, request_url) for row in panel_rows(_pending_query, shape, *ids)],
        "approvals_todo": [_request(approving[pk], request_url) for pk in approval_keys if pk in approving],
        "approvals_todo_count": approvals[0][1] if approvals else 0,
        "grants_in_force": [_grant(row, grant_url) for row in panel_rows(_grants_query, shape, *ids, now)],
        "unread_notifications": [PanelNotice(*row) for row in panel_rows(_unread_query, shape, *ids)],
    }


def _request(row: tuple, url: Callable[[int], str]) -> PanelRequest:
    pk, created_at, start_at, deadline, beneficiary, kind, entitlement, risk_tier, system = row
    named = EntitlementNamed(entitlement, SystemNamed(system), risk_tier)
    return PanelRequest(pk, url(pk), created_at, start_at, deadline, named, IdentityNamed(beneficiary, kind))


def _grant(row: tuple, url: Callable[[int], str]) -> PanelGrant:
    pk, status, kind, expires_at, holder, holder_kind, entitlement, system = row
    named = EntitlementNamed(entitlement, SystemNamed(system))
    return PanelGrant(pk, url(pk), status, kind, expires_at, named, IdentityNamed(holder, holder_kind))


# Each panel query's SQL by shape; None for a shape whose rule matches nothing (`.none()`).
_PREPARED: dict[tuple, PreparedQuery | None] = {}


def panel_rows(build: Callable[..., QuerySet], shape: tuple, *values) -> list[tuple]:
    """The rows of a panel's query for these values: `build(*shape, *values)`, its SQL built once per
    process for each shape (what the query's form depends on: the status of the viewer's identity, or
    None without one; how many rows a panel shows; ...), the values bound at each run."""
    key = (build, *shape)
    prepared = _PREPARED.get(key, False)
    if prepared is None:
        return []
    if prepared is False:
        prepared = _PREPARED[key] = PreparedQuery(partial(build, *shape))
    try:
        return prepared.rows(*values)
    except EmptyResultSet:  # raised building the SQL: nothing of this shape, no query (now or later)
        _PREPARED[key] = None
        return []


class StandIn:
    """A login or an identity in a panel's prepared query (`panel_rows`): where a filter compares it,
    its key's slot (or its key, on a database where the query is built at each run); and what the
    pages' rules read of it, so that those rules, written for model instances, build the panels' SQL.
    Of a login they read its `identity` (`identity_of`); of an identity its key (`_mine_q`) and its
    status (`routed_to_me`): part of the query's shape. Anything else they read raises.
    """

    is_authenticated = True

    def __init__(self, key, **read):
        self.pk = key
        vars(self).update(read)

    def resolve_expression(self, *args, **kwargs):
        key = self.pk if hasattr(self.pk, "resolve_expression") else Value(self.pk)
        return key.resolve_expression(*args, **kwargs)


def login_stand_in(user_id, identity_id, status: str | None, **read) -> StandIn:
    """A login, and its identity when `status` is not None (`read`: more of what a rule reads of it)."""
    identity = None if status is None else StandIn(identity_id, status=status)
    return StandIn(user_id, identity=identity, **read)


def _by_key(rows: QuerySet, limit: int) -> QuerySet:
    """The first `limit` rows of a page's queryset, in its order, picked by key in the same statement
    that reads them: its filters pick the keys apart from the joins of what a panel shows (with them,
    PostgreSQL took ~8 ms to plan a list's query for 0.4 ms to run). On PostgreSQL `pk = ANY(ARRAY(keys))`,
    the keys read first, on their own; elsewhere `pk IN (keys)`."""
    keys = rows.values("pk")[:limit]
    picked = EqualsAny(F("pk"), ArraySubquery(keys)) if connection.vendor == "postgresql" else Q(pk__in=keys)
    return rows.model.objects.filter(picked).order_by(*rows.query.order_by)


def _approvals_query(status, limit, user_id, identity_id) -> QuerySet:
    """My approval queue's first keys, and how many wait in all (counted before the limit)."""
    routed = routed_to_me(user=login_stand_in(user_id, identity_id, status))
    return (
        routed.annotate(waiting=Window(Count("pk"))).order_by("created_at", "pk").values_list("pk", "waiting")[:limit]
    )


def _requests_by_key_query(keys) -> QuerySet:
    return AccessRequest.objects.filter(one_of("pk", keys)).order_by().values_list(*PANEL_REQUEST_COLUMNS)


def _ready_query(status, limit, user_id, identity_id, now) -> QuerySet:
    ready = ready_to_activate(user=login_stand_in(user_id, identity_id, status), now=now)
    return _by_key(ready, limit).values_list(*PANEL_REQUEST_COLUMNS)


def _pending_query(status, limit, user_id, identity_id) -> QuerySet:
    pending = pending_requests(user=login_stand_in(user_id, identity_id, status))
    return _by_key(pending, limit).values_list(*PANEL_REQUEST_COLUMNS)


def _grants_query(status, limit, user_id, identity_id, now) -> QuerySet:
    held = _held_grants(login_stand_in(user_id, identity_id, status)).in_force(now).order_by(*SOONEST_EXPIRY_FIRST)
    return _by_key(held, limit).values_list(*PANEL_GRANT_COLUMNS)


def _unread_query(status, limit, user_id, identity_id) -> QuerySet:
    unread = notification_list(user=login_stand_in(user_id, identity_id, status)).filter(read_at__isnull=True)
    return unread.values_list("pk", "subject", "link", "created_at")[:limit]


#
# A request's history, in words
#
def _when(value) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return None


def _spoken(event: AuditEvent, request: AccessRequest) -> tuple[str, str]:
    """What an event on a request says, as a sentence after its actor's name, and a quote (or "")."""
    data, action = event.data or {}, event.action
    stage = data.get("stage")
    if action == AuditAction.REQUEST_SUBMITTED:
        seconds = data.get("duration_seconds")
        what = (
            f"asked for {request.entitlement.name} on {request.entitlement.system.name} for {request.beneficiary.name}"
        )
        if seconds:
            what += f", for {duration_words(timedelta(seconds=seconds))}"
        start = _when(data.get("start_at"))
        if start:
            what += f", starting {start:%Y-%m-%d %H:%M} UTC"
        if data.get("renewal_of"):
            what += f", to extend grant #{data['renewal_of']}"
        if data.get("ticket"):
            what += f" (ticket {data['ticket']})"
        return what, data.get("justification") or data.get("intent") or ""
    if action == AuditAction.REQUEST_STAGE_APPROVED:
        count = f" ({data['approvals']} of {data['quorum']} needed)" if data.get("quorum", 1) > 1 else ""
        return f"approved stage {stage}{count}", data.get("comment") or ""
    if action == AuditAction.REQUEST_DENIED:
        return f"denied it at stage {stage}", data.get("comment") or ""
    if action == AuditAction.REQUEST_AUTO_APPROVED:
        return "approved it automatically by policy: nobody needed to look", ""
    if action == AuditAction.REQUEST_APPROVED:
        deadline = _when(data.get("activation_deadline"))
        then = f"; to be activated by {deadline:%Y-%m-%d %H:%M} UTC" if deadline else ""
        return f"completed the last approval: the request is approved{then}", ""
    if action == AuditAction.REQUEST_CANCELLED:
        return "cancelled it", data.get("reason") or ""
    if action == AuditAction.REQUEST_ACTIVATED:
        return "activated it", ""
    if action == AuditAction.REQUEST_STARTED:
        return "started it at its scheduled time", ""
    if action == AuditAction.REQUEST_TIMED_OUT:
        return "closed it: nobody decided in time", ""
    if action == AuditAction.REQUEST_REMINDED:
        return f"reminded the approvers of stage {stage}", ""
    if action == AuditAction.REQUEST_ESCALATED:
        return f"asked more approvers to decide stage {stage}", ""
    if action == AuditAction.REQUEST_ACTIVATION_LAPSED:
        return "closed it: it was not activated in time", ""
    if action == AuditAction.REQUEST_FAILED:
        return "could not grant it", data.get("reason") or ""
    label = AuditAction(action).label if action in AuditAction.values else action.replace("_", " ").replace(".", ": ")
    return label[:1].lower() + label[1:], data.get("reason") or data.get("note") or ""


def request_history(access_request: AccessRequest) -> list[dict]:
    """The request's events as sentences ("Olu Owner approved stage 1"), oldest first, with who acted by
    their inventory name; the grant an event produced is linked. Two queries, however long."""
    events = list(AuditEvent.objects.for_target(access_request).order_by("seq"))
    user_ids = {e.actor_user_id for e in events if e.actor_user_id}
    names = dict(Identity.objects.filter(user_id__in=user_ids).values_list("user_id", "name") if user_ids else [])
    history = []
    for event in events:
        if event.actor_type == ActorType.SYSTEM:
            who = "The portal"
        else:
            who = names.get(event.actor_user_id) or event.actor_label
        what, quote = _spoken(event, access_request)
        grant_id = (event.data or {}).get("grant")
        history.append(
            {
                "at": event.occurred_at,
                "who": who,
                "what": what,
                "quote": quote,
                "action": event.action,
                "grant_id": grant_id if isinstance(grant_id, int) else None,
            }
        )
    return history


def asked_together(access_request: AccessRequest) -> list[AccessRequest]:
    """The other requests of the submission this one was part of (the `together` of its submitted
    event), each with its entitlement, for links between them."""
    submitted = (
        AuditEvent.objects.for_target(access_request)
        .filter(action=AuditAction.REQUEST_SUBMITTED)
        .values_list("data", flat=True)
        .first()
    )
    together = (submitted or {}).get("together") or {}
    others = [i for i in together.get("entitlements", []) if i != access_request.entitlement_id]
    if not others:
        return []
    candidates = AccessRequest.objects.filter(beneficiary_id=access_request.beneficiary_id, entitlement_id__in=others)
    same_submission = AuditEvent.objects.filter(
        target_type=AccessRequest._meta.label_lower,
        target_id__in=[str(pk) for pk in candidates.values_list("pk", flat=True)],
        action=AuditAction.REQUEST_SUBMITTED,
        data__together__submission=together.get("submission"),
    ).values_list("target_id", flat=True)
    ids = [int(pk) for pk in same_submission]
    return list(
        AccessRequest.objects.filter(pk__in=ids).select_related("entitlement", "entitlement__system").order_by("pk")
    )


#
# Separation of duties, in the preview
#
def name_conflicts(items: list[dict], *, beneficiary: Identity, together: frozenset[int]) -> None:
    """Name, for each separation-of-duties conflict in the preview's items, the other entitlements of
    the rule and what to do about each: untick it here, release the grant that holds it, or cancel
    the request that asks for it. Four queries for the whole preview, none when there is no conflict.
    """
    rule_ids = {c["rule"] for item in items for c in item["decision"].sod_conflicts}
    for item in items:
        item["conflicts"] = []
    if not rule_ids:
        return
    rules = {
        rule.pk: rule
        for rule in SodRule.objects.filter(pk__in=rule_ids).prefetch_related(
            Prefetch("entitlements", queryset=Entitlement.objects.select_related("system").order_by("name", "pk"))
        )
    }
    involved = {e.pk for rule in rules.values() for e in rule.entitlements.all()}
    grants = {
        g.entitlement_id: g
        for g in Grant.objects.filter(identity=beneficiary, entitlement_id__in=involved, status__in=GrantStatus.live())
    }
    waiting = Q(status=RequestStatus.APPROVED, grant__isnull=True, activation_deadline__gt=clock.now())
    asked = {
        r.entitlement_id: r
        for r in AccessRequest.objects.filter(beneficiary=beneficiary, entitlement_id__in=involved).filter(
            Q(status=RequestStatus.PENDING) | waiting
        )
    }
    whose = "you" if beneficiary.is_human else beneficiary.name
    for item in items:
        this = item["entitlement"]
        for conflict in item["decision"].sod_conflicts:
            rule = rules.get(conflict["rule"])
            if rule is None:
                continue
            for other in (e for e in rule.entitlements.all() if e.pk != this.pk):
                item["conflicts"].append(
                    {
                        "rule": conflict,
                        "other": other,
                        "blocks": conflict["action"] == "block",
                        **_what_to_do(other, whose, together, grants.get(other.pk), asked.get(other.pk)),
                    }
                )


def _what_to_do(other: Entitlement, whose: str, together: frozenset[int], grant, request) -> dict:
    holds = "hold" if whose == "you" else "holds"
    if other.pk in together:
        return {"how": "asked together", "advice": f"Untick {other.name} above, or ask for it on its own later."}
    if request is not None:
        return {
            "how": f"asked for in {request}",
            "advice": f"Cancel {request} first if {other.name} is no longer needed, then ask again.",
            "url": reverse("jit:request_detail", args=[request.pk]),
            "link": f"Open {request}",
        }
    if grant is not None:
        return {
            "how": f"{whose} {holds} it (grant #{grant.pk})",
            "advice": f"Release {other.name} first if it is no longer needed, then ask again; "
            "or ask its owner for an exception.",
            "url": reverse("jit:grant_release", args=[grant.pk]),
            "link": f"Release {other.name}",
        }
    return {"how": "held", "advice": "Ask for only one of the two, or ask the rule's owner for an exception."}
