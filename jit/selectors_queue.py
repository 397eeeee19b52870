"""The approver's queue as a page shows it: filtered and sorted, and each card with its context.

What is in my queue is `selectors.routed_to_me` (the one statement of the rule). Here it gets
the page's filters and order, and a page of cards gets what an approver needs to judge: the
beneficiary (team, manager), what they hold now (risk, just-in-time or standing, last use, what was
just approved), conflicts with their other requests, earlier stages' decisions and past requests.
A fixed number of queries for the whole page, however many cards (`queue_cards`).
"""

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Value, Window
from django.db.models.functions import Coalesce, RowNumber
from django.template.defaultfilters import timesince_filter, truncatechars

from audit.kernel import clock
from audit.kernel.links import links_for
from audit.kernel.prepared import PreparedInstances, PreparedQuery
from audit.templatetags.times import when
from governance import policies as inventory
from governance.choices import RISK_LABELS, GrantKind, GrantStatus, IdentityKind, IdentityStatus, Severity
from governance.models import Grant, Identity, SodRule
from governance.querysets import in_force_q, one_of
from governance.roles import Role
from governance.selectors import tier_rank
from governance.templatetags.grant_tags import approver_label, duration, person

from .choices import RequestStatus, StageStatus
from .models import AccessRequest, Approval, ApprovalStage
from .models_deputies import ApproverAbsence
from .selectors import (
    RECENT_REQUESTS_SHOWN,
    login_stand_in,
    panel_rows,
    requests_involving,
    routed_to_me,
    sees_every_request,
)
from .services.requests import _in_flight as in_flight  # the rule of "on its way to a grant", one home
from .templatetags.jit_tags import intent_summary, time_out

User = get_user_model()

# Who asked, as a name to sort by: a person's inventory name, else their login; a machine's name.
REQUESTER_NAME = Coalesce("requester__identity__name", "requester__username", "requester_identity__name")
# What a card shows of its request's relations (its grant and the beneficiary's backup owner: nothing),
# read in two statements: the request's own (who asked, for what) and its beneficiary's (`queue_page`).
CARD_JOINS = (
    "requester",
    "requester__identity",
    "requester_identity",
    "entitlement",
    "entitlement__system",
)
BENEFICIARY_JOINS = ("owner", "manager")
# ... and of those relations, only the columns a card shows (all of them were ~150 values a card).
CARD_FIELDS = (
    "requester__username",
    "requester__first_name",
    "requester__last_name",
    "requester__identity__name",
    "requester_identity__name",
    "entitlement__name",
    "entitlement__risk_tier",
    "entitlement__system__name",
)
BENEFICIARY_FIELDS = ("name", "kind", "status", "team", "last_used_at", "owner__name", "manager__name")
REQUEST_FIELDS = tuple(f.attname for f in AccessRequest._meta.concrete_fields)
ORDERS = {
    "oldest": ("created_at", "pk"),
    "newest": ("-created_at", "-pk"),
    "risk": ("-risk_rank", "created_at", "pk"),
    "requester": ("requester_name", "created_at", "pk"),
}
HOLDINGS_SHOWN = 8
# What an approver may cut a request down to, offered when shorter than what is asked now: each
# span with its minutes as the form takes them and its words as the option says them.
SHORTER = tuple(
    (span, str(int(span.total_seconds() // 60)), duration(span))
    for span in (
        timedelta(minutes=m) for m in (15, 30, 60, 120, 240, 480, 24 * 60, 3 * 24 * 60, 7 * 24 * 60, 14 * 24 * 60)
    )
)


def _status_of(me: Identity | None) -> str | None:
    """What the queue's rule reads of my identity, part of its prepared queries' shape (`panel_rows`)."""
    return None if me is None else me.status


#
# The rows
#
def _requester_of(requester: str) -> tuple[str, int | None]:
    """The requester filter's "u<user id>" as ("u", id), "i<identity id>" (a machine on the API) as
    ("i", id); anything else is no key: ("", None) (text to search for, or nothing)."""
    if requester[:1] in ("u", "i") and requester[1:].isdigit():
        return requester[0], int(requester[1:])
    return "", None


def _searched(rows: QuerySet, text: str) -> QuerySet:
    """The rows whose requester's name or login contains `text` (any case; `%` and `_` literally, as
    `icontains` escapes them): a person's inventory name or login, a machine's name on the API.

    The machine's name by a subquery per row, not a join: joined, PostgreSQL merged the queue with
    the identities' primary key index, walking ~45,000 of them (~11 ms for 500 requests on the bench
    machine, ~4 ms so).
    """
    machine = Identity.objects.filter(pk=OuterRef("requester_identity_id")).values("name")[:1]
    return rows.alias(machine_name=Subquery(machine)).filter(
        Q(requester__identity__name__icontains=text)
        | Q(requester__username__icontains=text)
        | Q(requester__isnull=True, machine_name__icontains=text)
    )


def _narrowed(rows: QuerySet, kind: str, requester_id, cutoff, order: str) -> QuerySet:
    """My queue's rows by one requester (`_requester_of`) and submitted by `cutoff` (None: any time),
    in the order asked for. Values may be a prepared query's `Slot`s (`queue_keys`)."""
    if kind == "u":
        rows = rows.filter(requester_id=requester_id)
    elif kind == "i":
        rows = rows.filter(requester__isnull=True, requester_identity_id=requester_id)
    if cutoff is not None:
        rows = rows.filter(created_at__lte=cutoff)
    # Only the order that sorts by it joins for it: the count and the keys would carry the joins too.
    if order == "risk":
        rows = rows.alias(risk_rank=tier_rank("entitlement__risk_tier"))
    elif order == "requester":
        rows = rows.alias(requester_name=REQUESTER_NAME)
    return rows.order_by(*ORDERS.get(order, ORDERS["oldest"]))


def queue_rows(
    *,
    user,
    requester: str = "",
    risk_tier: str = "",
    system_id: int | None = None,
    waiting_at_least: timedelta | None = None,
    order: str = "oldest",
) -> QuerySet[AccessRequest]:
    """My queue, filtered and sorted: the keys a page picks (`queue_page` reads their cards).

    `requester` is "u<user id>" or "i<identity id>" (a machine on the API: links and bookmarks name
    one exactly), else text searched for in requesters' names and logins; `waiting_at_least` keeps
    requests submitted at least that long ago (a read: this process's clock).
    """
    routed = routed_to_me(user=user, risk_tier=risk_tier, system_id=system_id)
    kind, requester_id = _requester_of(requester)
    if requester and not kind:
        routed = _searched(routed, requester)
    cutoff = clock.now() - waiting_at_least if waiting_at_least else None
    return _narrowed(routed, kind, requester_id, cutoff, order)


def _prepared_filters(user, requester: str, risk_tier: str, system_id, waiting_at_least) -> tuple | None:
    """The shape and the values of my queue's prepared keys and count under these filters (`_keys_query`,
    `_count_query`): my identity's status, the requester key's kind, whether an age filter applies;
    my login, my identity, the requester and the cutoff. None where the queryset must do (a risk or
    system filter, a search by name)."""
    kind, requester_id = _requester_of(requester)
    if risk_tier or system_id or (requester and not kind):
        return None
    me = inventory.identity_of(user)
    cutoff = clock.now() - waiting_at_least if waiting_at_least else None
    shape = (_status_of(me), kind, cutoff is not None)
    return shape, (user.pk, None if me is None else me.pk, requester_id, cutoff)


# The first pages of each shape of the queue have their keys' SQL built once per process (an OFFSET
# is no parameter: each page is its own statement, ~70 KB kept); deeper pages are sliced from `queue_rows`.
PREPARED_PAGES = 3


def _keys_query(status, kind, waiting, order, bottom, span, user_id, identity_id, requester_id, cutoff) -> QuerySet:
    """The keys of my queue's rows `bottom` to `bottom + span` under the requester and age filters (`queue_keys`)."""
    routed = routed_to_me(user=login_stand_in(user_id, identity_id, status))
    rows = _narrowed(routed, kind, requester_id, cutoff if waiting else None, order)
    return rows.values_list("pk")[bottom : bottom + span]


def queue_keys(
    *,
    user,
    per_page: int,
    requester: str = "",
    risk_tier: str = "",
    system_id: int | None = None,
    waiting_at_least: timedelta | None = None,
    order: str = "oldest",
) -> Callable[[int, int], list[int] | None]:
    """The keys a page of `queue_rows` picks, as its slice `[bottom:top]` would: `keys(bottom, top)`
    for `DeferredJoinPaginator`, None where the page's queryset must read them (the risk and system
    filters, a page deeper than PREPARED_PAGES, a page longer than `per_page` and one more).

    Building my queue's rule and compiling its keys' query cost ~2 ms of CPU a page, several
    times what PostgreSQL takes to run it; here each page's SQL is built once per process for each
    shape (my identity's status, which filters, which order, which page), its values bound at each run.
    """
    prepared = _prepared_filters(user, requester, risk_tier, system_id, waiting_at_least)
    if prepared is None:
        return lambda bottom, top: None
    shape, values = prepared
    order = order if order in ORDERS else "oldest"
    span = per_page + 1  # a page, and one more to know whether another follows (a list over the count's cap)

    def keys(bottom: int, top: int) -> list[int] | None:
        if bottom >= PREPARED_PAGES * per_page or top - bottom > span:
            return None
        return [pk for (pk,) in panel_rows(_keys_query, (*shape, order, bottom, span), *values)[: top - bottom]]

    return keys


def _count_query(status, kind, waiting, user_id, identity_id, requester_id, cutoff) -> QuerySet:
    """How many rows my queue has under the requester and age filters (`queue_count`): one row, no
    GROUP BY (grouping on a constant groups on nothing), and no order (the count has none to follow)."""
    routed = routed_to_me(user=login_stand_in(user_id, identity_id, status))
    rows = _narrowed(routed, kind, requester_id, cutoff if waiting else None, "oldest")
    return rows.order_by().values(every=Value(1)).annotate(n=Count("pk")).values_list("n")


def queue_count(
    *,
    user,
    requester: str = "",
    risk_tier: str = "",
    system_id: int | None = None,
    waiting_at_least: timedelta | None = None,
    order: str = "oldest",
) -> int | None:
    """How many rows `queue_rows` finds under these filters, by SQL built once per process for the
    shapes `queue_keys` prepares; None for the others (a risk or system filter, a search by name:
    the paginator counts the queryset, capped). The order changes no count and is no part of it.

    Counting per requester for the old requester filter's choices grouped the whole queue and read
    ~500 names (~8.5 ms on the bench machine); the paginator needs one number.
    """
    prepared = _prepared_filters(user, requester, risk_tier, system_id, waiting_at_least)
    if prepared is None:
        return None
    shape, values = prepared
    counted = panel_rows(_count_query, shape, *values)
    return counted[0][0] if counted else 0


def _page_query(keys) -> QuerySet:
    return (
        AccessRequest.objects.filter(one_of("pk", keys))
        .select_related(*CARD_JOINS)
        .only(*REQUEST_FIELDS, *CARD_FIELDS)
        .order_by()
    )


def _beneficiaries_query(keys) -> QuerySet:
    return (
        Identity.objects.filter(one_of("pk", keys))
        .select_related(*BENEFICIARY_JOINS)
        .only(*BENEFICIARY_FIELDS)
        .order_by()
    )


_PAGE = PreparedInstances(_page_query)
_BENEFICIARIES = PreparedInstances(_beneficiaries_query)
_BENEFICIARY = AccessRequest._meta.get_field("beneficiary")


def queue_page(keys: list[int]) -> list[AccessRequest]:
    """The cards' requests `keys` names (a page of `queue_rows`, picked by key), in that order, with
    what a card shows of each (`queue_cards` adds the rest).

    Read by key, not through the queue's filters: with them, the page's query joined eleven tables
    beside the routing subqueries, and PostgreSQL took 25-50 ms to plan it (1 ms to run it). Of the
    relations, only the columns a card shows; and no ORDER BY (the keys give the order): with one,
    Django hashed each selected column (~5 ms). The beneficiaries (with their owner and manager) in
    a statement of their own, given to the requests as `select_related` gives them: nine tables in
    one statement took PostgreSQL ~3 ms to plan (0.3 ms to run), six and three ~1.4 ms together.
    Both statements' SQL is built once per process (`PreparedInstances`).
    Each row's stages, in order, are its `stage_list`, and `current_position` is its current stage's.
    """
    found = {row.pk: row for row in _PAGE.rows(list(keys))} if keys else {}
    page = [found[key] for key in keys if key in found]
    if page:
        beneficiaries = {person.pk: person for person in _BENEFICIARIES.rows(list({r.beneficiary_id for r in page}))}
        for row in page:
            _BENEFICIARY.set_cached_value(row, beneficiaries[row.beneficiary_id])
    _stages_of(page)
    return page


@dataclass(slots=True)
class StageShown:
    """A stage as a card reads it; an earlier stage gets its `decisions` (`_decisions`)."""

    pk: int
    request_id: int
    position: int
    approver_source: str
    reason: str
    status: str
    decisions: list[Approval] = field(default_factory=list)


def _stages_query(request_ids) -> QuerySet:
    return (
        ApprovalStage.objects.filter(one_of("request_id", request_ids))
        .order_by("position")
        .values_list("pk", "request_id", "position", "approver_source", "reason", "status")
    )


_STAGES = PreparedQuery(_stages_query)


def _stages_of(rows: list[AccessRequest]) -> None:
    """Give each row its stages in order (`stage_list`) and the position of its current one, the
    lowest pending (`current_position`, as `current_stage_position` reads it in SQL: here from the
    stages read anyway, not a subquery more in the rows' query). One query, as `prefetch_related`
    would run, of values, its SQL built once per process."""
    by_request: dict[int, list[StageShown]] = {row.pk: [] for row in rows}
    if rows:
        for values in _STAGES.rows(list(by_request)):
            stage = StageShown(*values)
            by_request[stage.request_id].append(stage)
    for row in rows:
        row.stage_list = by_request[row.pk]
        row.current_position = next((s.position for s in row.stage_list if s.status == StageStatus.PENDING), None)


#
# The cards
#
@dataclass(frozen=True, slots=True)
class EntitlementShown:
    """An entitlement as a card names it (system, name, risk): a row of values, not a model instance."""

    pk: int
    name: str
    risk_tier: str
    system_name: str

    @property
    def label(self) -> str:
        return f"{self.system_name} / {self.name}"

    def get_risk_tier_display(self) -> str:
        return RISK_LABELS.get(self.risk_tier, self.risk_tier)


@dataclass(frozen=True, slots=True)
class GrantShown:
    """A grant as a card shows it: its kind, its end and its last use."""

    pk: int
    kind: str
    expires_at: datetime | None
    last_used_at: datetime | None

    @property
    def kind_label(self) -> str:
        return GRANT_KIND_WORDS.get(self.kind, "break-glass")

    @property
    def until(self) -> str:
        return when(self.expires_at, "exact")

    @property
    def last_use(self) -> str:
        return when(self.last_used_at) if self.last_used_at else "never recorded"


@dataclass(frozen=True, slots=True)
class RequestShown:
    """Another request of the beneficiary as a card names it, linked when I may open it."""

    pk: int
    status: str
    linkable: bool
    url: str
    entitlement: EntitlementShown | None = None  # named in the past requests (a holding has its own)

    def __str__(self) -> str:
        return f"Request #{self.pk}"

    def get_status_display(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)


@dataclass
class Holding:
    """Something the beneficiary holds or is about to hold, as a card lists it."""

    entitlement: EntitlementShown
    state: str  # "in force", "being provisioned", "approved, not started", "pending"
    grant: GrantShown | None = None
    request: RequestShown | None = None

    @property
    def is_request(self) -> bool:
        return self.grant is None


@dataclass(frozen=True, slots=True)
class RuleShown:
    """A separation-of-duties rule as a card names it, with the entitlements it names."""

    pk: int
    name: str
    severity: str
    action: str
    entitlement_ids: tuple[int, ...]

    def get_severity_display(self) -> str:
        return SEVERITY_LABELS.get(self.severity, self.severity)


@dataclass
class Conflict:
    """A separation-of-duties rule this request would complete, and with what."""

    rule: RuleShown
    others: list[Holding] = field(default_factory=list)

    @property
    def pending_requests(self) -> list[RequestShown]:
        return [h.request for h in self.others if h.request is not None and h.state == "pending"]


# What a card shows of an entitlement, read as values: a page's holdings were a few hundred grants,
# each built as three model instances (grant, entitlement, system) for four fields.
ENTITLEMENT_SHOWN = ("entitlement_id", "entitlement__name", "entitlement__risk_tier", "entitlement__system__name")
STATUS_LABELS = dict(RequestStatus.choices)
GRANT_KIND_WORDS = {GrantKind.STANDING: "standing", GrantKind.JIT: "just-in-time"}  # else break-glass
SEVERITY_LABELS = dict(Severity.choices)
KIND_LABELS = dict(IdentityKind.choices)  # as get_kind_display() and get_status_display(), without their ~5 us a call
IDENTITY_STATUS_LABELS = dict(IdentityStatus.choices)


def _grants_query(identity_ids, now) -> QuerySet:
    return (
        Grant.objects.filter(one_of("identity_id", identity_ids))
        .filter(in_force_q(now) | Q(status=GrantStatus.PENDING_PROVISION))
        .order_by(F("expires_at").asc(nulls_last=True), "pk")
        .values_list("pk", "identity_id", "status", "kind", "expires_at", "last_used_at", *ENTITLEMENT_SHOWN)
    )


_GRANTS = PreparedQuery(_grants_query)


def _grants_held(beneficiary_ids: set[int], now: datetime) -> dict[int, list[Holding]]:
    """Per beneficiary, grants in force or being provisioned (what was just approved counts). One query."""
    grants: dict[int, list[Holding]] = {pk: [] for pk in beneficiary_ids}
    for pk, identity_id, status, kind, expires_at, last_used_at, *entitlement in _GRANTS.rows(
        list(beneficiary_ids), now
    ):
        state = "being provisioned" if status == GrantStatus.PENDING_PROVISION else "in force"
        grant = GrantShown(pk, kind, expires_at, last_used_at)
        grants[identity_id].append(Holding(EntitlementShown(*entitlement), state, grant=grant))
    return grants


def _requests_of(
    beneficiary_ids: set[int], *, user
) -> tuple[dict[int, list[Holding]], dict[int, list[RequestShown]], dict[int, int]]:
    """Per beneficiary: requests on their way to a grant (pending, or approved and not started) as
    holdings; its latest requests, newest first (one may be the card's own); how many it made.

    Three queries (and the database's clock), values only, their SQL built once per process, each
    request linked when I may open it. Whether I may is asked once for the requests named, not per
    request in each query (a correlated subquery, compiled in each): `_linkable`.
    """
    waiting = _WAITING.rows(list(beneficiary_ids), clock.database_now())
    latest = _LATEST.rows(list(beneficiary_ids))
    named = {row[0] for row in waiting} | {row[0] for row in latest}
    linkable = _linkable(named, user=user)
    request_url = links_for("jit:request_detail")
    requests: dict[int, list[Holding]] = {pk: [] for pk in beneficiary_ids}
    for pk, beneficiary_id, status, *entitlement in waiting:
        state = "pending" if status == RequestStatus.PENDING else "approved, not started"
        other = RequestShown(pk, status, pk in linkable, request_url(pk))
        requests[beneficiary_id].append(Holding(EntitlementShown(*entitlement), state, request=other))
    recent: dict[int, list[RequestShown]] = {pk: [] for pk in beneficiary_ids}
    made: dict[int, int] = dict.fromkeys(beneficiary_ids, 0)
    for pk, beneficiary_id, status, count, *entitlement in latest:
        shown = RequestShown(pk, status, pk in linkable, request_url(pk), EntitlementShown(*entitlement))
        recent[beneficiary_id].append(shown)
        made[beneficiary_id] = count
    return requests, recent, made


def _waiting_query(beneficiary_ids, now) -> QuerySet:
    """Each beneficiary's requests on their way to a grant, oldest first (`_requests_of`)."""
    return (
        in_flight(AccessRequest.objects.filter(one_of("beneficiary_id", beneficiary_ids)), now)
        .order_by("created_at", "pk")
        .values_list("pk", "beneficiary_id", "status", *ENTITLEMENT_SHOWN)
    )


_WAITING = PreparedQuery(_waiting_query)


def _latest_query(beneficiary_ids) -> QuerySet:
    """Each beneficiary's latest requests, newest first, with how many it made (`_requests_of`)."""
    newest = (F("created_at").desc(), F("pk").desc())
    return (
        AccessRequest.objects.filter(one_of("beneficiary_id", beneficiary_ids))
        .annotate(
            rank=Window(RowNumber(), partition_by=F("beneficiary_id"), order_by=newest),
            made=Window(Count("pk"), partition_by=F("beneficiary_id")),
        )
        .filter(rank__lte=RECENT_REQUESTS_SHOWN + 1)
        .order_by("rank")
        .values_list("pk", "beneficiary_id", "status", "made", *ENTITLEMENT_SHOWN)
    )


_LATEST = PreparedQuery(_latest_query)


def _linkable_query(status, user_id, identity_id, keys) -> QuerySet:
    return requests_involving(login_stand_in(user_id, identity_id, status), among=keys).order_by().values_list("pk")


def _linkable(keys: set[int], *, user) -> set[int]:
    """Which of these requests I may open (`requests_visible_to`): all of them for those who see every
    request, no query; for anyone else one, its SQL built once per process (building and compiling the
    rule cost ~1.3 ms of CPU a page)."""
    if not keys or sees_every_request(user):
        return set(keys)
    me = inventory.identity_of(user)
    shape = (_status_of(me),)
    return {pk for (pk,) in panel_rows(_linkable_query, shape, user.pk, None if me is None else me.pk, list(keys))}


def _eligible_deputies(stage_ids: set[int], absent: set[int]) -> dict[int, set[int]]:
    """Per stage, which of the absent approvers I stand in for are eligible on it. One query, only
    when I stand in for someone (the stages' eligible logins are not loaded for every card)."""
    if not stage_ids or not absent:
        return {}
    through = ApprovalStage.eligible.through.objects.filter(approvalstage_id__in=stage_ids, user_id__in=absent)
    found: dict[int, set[int]] = {}
    for stage_id, user_id in through.values_list("approvalstage_id", "user_id"):
        found.setdefault(stage_id, set()).add(user_id)
    return found


def _decisions_query(stage_ids) -> QuerySet:
    return (
        Approval.objects.filter(one_of("stage_id", stage_ids))
        .select_related("approver", "approver__identity")
        .order_by("decided_at", "pk")
    )


_DECISIONS = PreparedInstances(_decisions_query)


def _decisions(stages: list[StageShown]) -> None:
    """Give each earlier stage its decisions (`decisions`), oldest first, with who decided. One query,
    only when a card has an earlier stage (most wait at their first), its SQL built once per process."""
    by_stage: dict[int, list[Approval]] = {stage.pk: [] for stage in stages}
    if stages:
        for approval in _DECISIONS.rows(list(by_stage)):
            by_stage[approval.stage_id].append(approval)
    for stage in stages:
        stage.decisions = by_stage[stage.pk]


def _rules_query(entitlement_ids) -> QuerySet:
    through = SodRule.entitlements.through.objects
    naming = through.filter(one_of("entitlement_id", entitlement_ids)).values("sodrule_id")
    return (
        through.filter(sodrule__is_active=True, sodrule_id__in=naming)
        .order_by("sodrule__name", "sodrule_id", "entitlement__name", "entitlement_id")
        .values_list("sodrule_id", "sodrule__name", "sodrule__severity", "sodrule__action", "entitlement_id")
    )


_RULES = PreparedQuery(_rules_query)


def _rules_for(entitlement_ids: set[int]) -> dict[int, list[RuleShown]]:
    """Active separation-of-duties rules naming each entitlement, with all their entitlements. One
    query, values only (the rules' rows and their entitlements were two queries of model instances)."""
    named: dict[int, tuple[tuple, list[int]]] = {}
    for rule_id, name, severity, action, entitlement_id in _RULES.rows(list(entitlement_ids)):
        named.setdefault(rule_id, ((rule_id, name, severity, action), []))[1].append(entitlement_id)
    found: dict[int, list[RuleShown]] = {pk: [] for pk in entitlement_ids}
    for fields, members in named.values():
        rule = RuleShown(*fields, tuple(members))
        for entitlement_id in members:
            if entitlement_id in found:
                found[entitlement_id].append(rule)
    return found


def _conflicts(req: AccessRequest, rules: list[RuleShown], held: list[Holding]) -> list[Conflict]:
    """The rules this request would complete with what its beneficiary holds, is being given or asks
    for in another request (the policy's own rule: requests in flight count as held)."""
    by_entitlement: dict[int, list[Holding]] = {}
    for holding in held:
        if holding.request is not None and holding.request.pk == req.pk:
            continue
        by_entitlement.setdefault(holding.entitlement.pk, []).append(holding)
    conflicts = []
    for rule in rules:
        others = [pk for pk in rule.entitlement_ids if pk != req.entitlement_id]
        if others and all(pk in by_entitlement for pk in others):
            conflicts.append(Conflict(rule, [h for pk in others for h in by_entitlement[pk]]))
    return conflicts


def _truncated(text: str, limit: int) -> str:
    """`truncatechars`, which walks the text a character at a time (~20 us), only for text that may be
    longer than `limit`; text already within it and in NFC is what the filter returns anyway."""
    if len(text) <= limit and unicodedata.is_normalized("NFC", text):
        return text
    return truncatechars(text, limit)


def _card_text(req: AccessRequest) -> None:
    """What a card prints of its request, worked out once here in the very words of the filters and
    methods the card called (`when`, `timesince`, `duration`, `person`, `get_kind_display`, ...):
    each cost 5-30 us more a card through the template, where the page spent ~1.2 ms a card."""
    entitlement, beneficiary, stage = req.entitlement, req.beneficiary, req.current_stage
    req.entitlement_label = f"{entitlement.system.name} / {entitlement.name}"
    req.risk_label = RISK_LABELS.get(entitlement.risk_tier, entitlement.risk_tier)
    req.stage_note = ""
    if stage is not None:
        req.stage_note = f"stage {stage.position} of {req.stage_count} · {approver_label(stage.approver_source)}"
        req.stage_note += f" · {stage.reason}" if stage.reason else ""
    if req.requester:
        req.asked_by = person(req.requester)
    else:
        req.asked_by = f"{getattr(req.requester_identity, 'name', '')} (API)"
    req.asked_at = when(req.created_at, "exact")
    req.waited = timesince_filter(req.created_at)
    req.times_out = time_out(req)
    kind = KIND_LABELS.get(beneficiary.kind, beneficiary.kind)
    if beneficiary.owner:
        kind += f", owned by {beneficiary.owner.name}"
    if beneficiary.status != IdentityStatus.ACTIVE:
        kind += f", {IDENTITY_STATUS_LABELS.get(beneficiary.status, beneficiary.status).lower()}"
    req.beneficiary_kind = kind
    req.beneficiary_team = beneficiary.team or "none recorded"
    req.beneficiary_manager = None  # only a person has a manager line
    if beneficiary.is_human:
        req.beneficiary_manager = beneficiary.manager.name if beneficiary.manager else "none recorded"
    last_used = beneficiary.last_used_at
    req.beneficiary_last_active = when(last_used) if last_used else "never recorded"
    req.duration_words = duration(req.duration)
    req.asked_duration_words = duration(req.asked_duration) if req.shortened else ""
    req.starts = when(req.start_at, "exact") if req.start_at else "as soon as approved"
    req.justification_shown = _truncated(req.justification or req.intent or "—", 200)
    req.intent_shown = None
    if req.intent_task or req.intent_action or req.intent_resource or req.intent:
        req.intent_shown = _truncated(intent_summary(req), 300)
    req.holdings_hidden = len(req.holdings) > len(req.holdings_shown)


def queue_cards(
    rows: list[AccessRequest], *, user, covering: list[ApproverAbsence] | None = None
) -> list[AccessRequest]:
    """Give each card of a page what it shows beside the request (attributes on each row).

    `holdings` (in force and being provisioned, then on its way), `conflicts` (with the other
    request or grant named), `earlier_stages` (each with its decisions and comments),
    `current_stage`, `deputy_for` (the absent approvers I stand in for here), `shorter` (what an
    approval may cut the duration to), `stage_count`, `past_requests` (the beneficiary's latest
    others) and `past_request_count`, the links a card follows (`url`, `decide_url`,
    `beneficiary_url`), and the words it prints of the request (`_card_text`). `covering`: the
    absences not yet over for which I am the deputy, when the page read them already (`queue_absences`).

    Seven queries for a page (six given `covering`, one fewer for those who see every request; one
    more when a card has an earlier stage, one more when I stand in for someone), none per card; what
    the holdings, past requests and rules show is read as values, not model instances, and each
    query's SQL is built once per process (Django built it at each run, ~1 ms each).
    """
    if not rows:
        return rows
    now = clock.now()
    beneficiary_ids = {r.beneficiary_id for r in rows}
    grants = _grants_held(beneficiary_ids, now)
    requests, recent, made = _requests_of(beneficiary_ids, user=user)
    rules = _rules_for({r.entitlement_id for r in rows})
    if covering is None:
        covering = ApproverAbsence.objects.in_force(now).filter(deputy=user).select_related("approver__identity")
    standing_in_for = {  # those in force (`ApproverAbsenceQuerySet.in_force`, for rows already read)
        absence.approver_id: absence
        for absence in covering
        if absence.starts_at <= now < absence.ends_at and absence.ended_at is None
    }
    deputies = _eligible_deputies(
        {s.pk for r in rows for s in r.stage_list if s.position == r.current_position},
        set(standing_in_for) - {user.pk},
    )
    _decisions([s for r in rows for s in r.stage_list if s.position < (r.current_position or 0)])
    request_url, decide_url = links_for("jit:request_detail"), links_for("jit:approval_decide")
    beneficiary_url = links_for("governance:identity_detail")
    for req in rows:
        req.url, req.decide_url = request_url(req.pk), decide_url(req.pk)
        req.beneficiary_url = beneficiary_url(req.beneficiary_id)
        stages = req.stage_list
        req.stage_count = len(stages)
        req.current_stage = next((s for s in stages if s.position == req.current_position), None)
        req.earlier_stages = [s for s in stages if s.position < (req.current_position or 0)]
        req.is_selected = False  # the view ticks the cards a refused selection named
        held = grants[req.beneficiary_id]
        waiting = [h for h in requests[req.beneficiary_id] if h.request.pk != req.pk]
        req.holdings = held + waiting
        req.holdings_shown = req.holdings[:HOLDINGS_SHOWN]
        req.past_requests = [r for r in recent[req.beneficiary_id] if r.pk != req.pk][:RECENT_REQUESTS_SHOWN]
        req.past_request_count = max(made[req.beneficiary_id] - 1, 0)  # the others: not this one
        req.conflicts = _conflicts(req, rules[req.entitlement_id], req.holdings)
        live = {c.rule.pk for c in req.conflicts}
        req.submission_conflicts = [c for c in req.policy.get("sod_conflicts", []) if c.get("rule") not in live]
        eligible = deputies.get(req.current_stage.pk, set()) if req.current_stage else set()
        req.deputy_for = [a for pk, a in standing_in_for.items() if pk in eligible]
        req.asked_duration = timedelta(seconds=req.policy.get("duration_seconds") or req.duration.total_seconds())
        req.shortened = req.duration < req.asked_duration
        req.shorter = [(minutes, words) for span, minutes, words in SHORTER if span < req.duration]
        _card_text(req)
    return rows


def may_read_inventory(user) -> bool:
    """The beneficiary's page is linked for those who read the inventory (approvers, owners, auditors, admins)."""
    return inventory.can_view_inventory(user)


#
# Out of office
#
def my_absences(*, user) -> QuerySet[ApproverAbsence]:
    """My absences not yet over, soonest first."""
    return ApproverAbsence.objects.not_over(clock.now()).filter(approver=user).select_related("deputy__identity")


def absences_i_cover(*, user) -> QuerySet[ApproverAbsence]:
    """Absences not yet over for which I am the deputy."""
    return ApproverAbsence.objects.not_over(clock.now()).filter(deputy=user).select_related("approver__identity")


def _absences_query(now, user_id) -> QuerySet:
    return ApproverAbsence.objects.not_over(now).filter(Q(approver_id=user_id) | Q(deputy_id=user_id))


_ABSENCES = PreparedInstances(_absences_query)


def queue_absences(*, user) -> tuple[ApproverAbsence | None, list[ApproverAbsence]]:
    """The queue's banners: my absence not yet over that starts first (`my_absences`' first), and the
    absences not yet over for which I am the deputy (`absences_i_cover`), with the people they name.

    One query, its SQL built once per process, and one more for the people only when there is an
    absence: most approvers are neither away nor standing in, and joining two logins and their
    identities cost ~1 ms to compile.
    """
    absences = _ABSENCES.rows(clock.now(), user.pk)
    if absences:
        named = {a.approver_id for a in absences} | {a.deputy_id for a in absences}
        people = User.objects.select_related("identity").in_bulk(named)
        for absence in absences:
            absence.approver, absence.deputy = people[absence.approver_id], people[absence.deputy_id]
    away = next((a for a in absences if a.approver_id == user.pk), None)
    return away, [a for a in absences if a.deputy_id == user.pk]


def deputy_choices(*, user) -> QuerySet:
    """Who may stand in: active logins with a deciding role (approver, owner, admin), not oneself, by name.

    The service checks the rest (not an auditor only, an active identity)."""
    deciders = User.objects.filter(is_active=True, groups__name__in=[Role.APPROVER, Role.OWNER, Role.ADMIN])
    return (
        User.objects.filter(pk__in=deciders.values("pk"))
        .exclude(pk=user.pk)
        .select_related("identity")
        .order_by("identity__name", "username")
    )
