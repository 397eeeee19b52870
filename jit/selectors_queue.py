"""The approver's queue as a page shows it: filtered and sorted, and each card with its context.

What is in my queue is `selectors.approval_queue` (the one statement of the rule). Here it gets
the page's filters and order, and a page of cards gets what an approver needs to judge: the
beneficiary (team, manager), what they hold now (risk, just-in-time or standing, last use, what was
just approved), conflicts with their other requests, earlier stages' decisions and past requests.
A fixed number of queries for the whole page, however many cards (`queue_cards`).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Exists, F, OuterRef, Prefetch, Q, QuerySet
from django.db.models.functions import Coalesce

from audit.kernel import clock
from governance import policies as inventory
from governance.choices import GrantStatus, RiskTier
from governance.models import Entitlement, Grant, SodRule
from governance.querysets import in_force_q
from governance.roles import Role
from governance.selectors import tier_rank

from .choices import RequestStatus
from .models import AccessRequest, Approval, ApprovalStage
from .models_deputies import ApproverAbsence
from .selectors import (
    RECENT_REQUESTS_SHOWN,
    REQUEST_JOINS,
    approval_queue,
    current_stage_position,
    past_request_count,
    requests_visible_to,
)
from .services.requests import _in_flight as in_flight  # the rule of "on its way to a grant", one home

User = get_user_model()

# Who asked, as a name to sort by: a person's inventory name, else their login; a machine's name.
REQUESTER_NAME = Coalesce("requester__identity__name", "requester__username", "requester_identity__name")
ORDERS = {
    "oldest": ("created_at", "pk"),
    "newest": ("-created_at", "-pk"),
    "risk": ("-risk_rank", "created_at", "pk"),
    "requester": ("requester_name", "created_at", "pk"),
}
HOLDINGS_SHOWN = 8
# What an approver may cut a request down to, offered when shorter than what is asked now.
SHORTER = tuple(
    timedelta(minutes=m) for m in (15, 30, 60, 120, 240, 480, 24 * 60, 3 * 24 * 60, 7 * 24 * 60, 14 * 24 * 60)
)


#
# The rows
#
def queue_requesters(*, user) -> list[tuple[str, str]]:
    """The people and machines who asked for something in my queue, as filter choices (one query)."""
    rows = (
        approval_queue(user=user)
        .order_by()
        .values_list(
            "requester_id",
            "requester__username",
            "requester__identity__name",
            "requester_identity_id",
            "requester_identity__name",
        )
        .distinct()
    )
    choices = set()
    for user_id, username, name, machine_id, machine in rows:
        if user_id is not None:
            choices.add((f"u{user_id}", f"{name} ({username})" if name else username))
        elif machine_id is not None:
            choices.add((f"i{machine_id}", f"{machine} (API)"))
    return sorted(choices, key=lambda choice: choice[1].lower())


def queue_rows(
    *,
    user,
    requester: str = "",
    risk_tier: str = "",
    system_id: int | None = None,
    waiting_at_least: timedelta | None = None,
    order: str = "oldest",
) -> QuerySet[AccessRequest]:
    """My queue, filtered and sorted, with the joins every card needs (the rest: `queue_cards`).

    `requester` is "u<user id>" or "i<identity id>" (a machine on the API); `waiting_at_least`
    keeps requests submitted at least that long ago (a read: this process's clock).
    """
    rows = approval_queue(user=user, risk_tier=risk_tier, system_id=system_id)
    if requester[:1] == "u" and requester[1:].isdigit():
        rows = rows.filter(requester_id=int(requester[1:]))
    elif requester[:1] == "i" and requester[1:].isdigit():
        rows = rows.filter(requester__isnull=True, requester_identity_id=int(requester[1:]))
    if waiting_at_least:
        rows = rows.filter(created_at__lte=clock.now() - waiting_at_least)
    rows = rows.alias(risk_rank=tier_rank("entitlement__risk_tier"), requester_name=REQUESTER_NAME)
    return _with_card_joins(rows, user=user).order_by(*ORDERS.get(order, ORDERS["oldest"]))


def queue_page(keys: list[int], *, user) -> list[AccessRequest]:
    """The requests `keys` names (a page of `queue_rows`, picked by key), in that order, with the joins
    and annotations `queue_rows` gives them.

    Read by key, not through the queue's filters: with them, the page's query joined eleven tables
    beside the routing subqueries, and PostgreSQL took 25-50 ms to plan it (1 ms to run it); by key
    the same rows plan in a few milliseconds.
    """
    rows = AccessRequest.objects.filter(pk__in=keys).annotate(
        current_position=current_stage_position(), past_request_count=past_request_count()
    )
    found = {row.pk: row for row in _with_card_joins(rows, user=user)}
    return [found[key] for key in keys if key in found]


def _with_card_joins(rows: QuerySet[AccessRequest], *, user) -> QuerySet[AccessRequest]:
    visible = requests_visible_to(user).filter(pk=OuterRef("pk"))
    return (
        rows.select_related(*REQUEST_JOINS, "beneficiary__manager", "beneficiary__backup_owner")
        .prefetch_related(None)
        .prefetch_related(
            Prefetch(
                "stages",
                queryset=ApprovalStage.objects.order_by("position").prefetch_related(
                    Prefetch(
                        "approvals",
                        queryset=Approval.objects.select_related("approver", "approver__identity").order_by(
                            "decided_at", "pk"
                        ),
                    ),
                ),
            ),
            # The latest few (one may be this request), linked where I may open them.
            Prefetch(
                "beneficiary__access_requests",
                queryset=AccessRequest.objects.select_related("entitlement", "entitlement__system")
                .annotate(linkable=Exists(visible))
                .order_by("-created_at", "-pk")[: RECENT_REQUESTS_SHOWN + 1],
                to_attr="recent_requests",
            ),
        )
    )


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

    def get_risk_tier_display(self) -> str:
        return RISK_LABELS.get(self.risk_tier, self.risk_tier)


@dataclass(frozen=True, slots=True)
class GrantShown:
    """A grant as a card shows it: its kind, its end and its last use."""

    pk: int
    kind: str
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class RequestShown:
    """Another request of the beneficiary as a card names it, linked when I may open it."""

    pk: int
    status: str
    linkable: bool

    def __str__(self) -> str:
        return f"Request #{self.pk}"


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


@dataclass
class Conflict:
    """A separation-of-duties rule this request would complete, and with what."""

    rule: SodRule
    others: list[Holding] = field(default_factory=list)

    @property
    def pending_requests(self) -> list[RequestShown]:
        return [h.request for h in self.others if h.request is not None and h.state == "pending"]


# What a card shows of an entitlement, read as values: a page's holdings were a few hundred grants,
# each built as three model instances (grant, entitlement, system) for four fields.
ENTITLEMENT_SHOWN = ("entitlement_id", "entitlement__name", "entitlement__risk_tier", "entitlement__system__name")
RISK_LABELS = dict(RiskTier.choices)


def _entitlement_shown(row: dict) -> EntitlementShown:
    return EntitlementShown(
        row["entitlement_id"], row["entitlement__name"], row["entitlement__risk_tier"], row["entitlement__system__name"]
    )


def _holdings(
    beneficiary_ids: set[int], now: datetime, *, user
) -> tuple[dict[int, list[Holding]], dict[int, list[Holding]]]:
    """Per beneficiary: grants in force or being provisioned (what was just approved counts), and
    requests on their way to a grant (pending, or approved and not started). Two queries, values only."""
    grants: dict[int, list[Holding]] = {pk: [] for pk in beneficiary_ids}
    for row in (
        Grant.objects.filter(identity_id__in=beneficiary_ids)
        .filter(in_force_q(now) | Q(status=GrantStatus.PENDING_PROVISION))
        .order_by(F("expires_at").asc(nulls_last=True), "pk")
        .values("pk", "identity_id", "status", "kind", "expires_at", "last_used_at", *ENTITLEMENT_SHOWN)
    ):
        state = "being provisioned" if row["status"] == GrantStatus.PENDING_PROVISION else "in force"
        grant = GrantShown(row["pk"], row["kind"], row["expires_at"], row["last_used_at"])
        grants[row["identity_id"]].append(Holding(_entitlement_shown(row), state, grant=grant))
    requests: dict[int, list[Holding]] = {pk: [] for pk in beneficiary_ids}
    for row in (
        in_flight(AccessRequest.objects.filter(beneficiary_id__in=beneficiary_ids))
        .annotate(linkable=Exists(requests_visible_to(user).filter(pk=OuterRef("pk"))))
        .order_by("created_at", "pk")
        .values("pk", "beneficiary_id", "status", "linkable", *ENTITLEMENT_SHOWN)
    ):
        state = "pending" if row["status"] == RequestStatus.PENDING else "approved, not started"
        other = RequestShown(row["pk"], row["status"], row["linkable"])
        requests[row["beneficiary_id"]].append(Holding(_entitlement_shown(row), state, request=other))
    return grants, requests


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


def _rules_for(entitlement_ids: set[int]) -> dict[int, list[SodRule]]:
    """Active separation-of-duties rules naming each entitlement, with all their entitlements. Two queries."""
    rules = (
        SodRule.objects.filter(is_active=True, entitlements__in=entitlement_ids)
        .distinct()
        .prefetch_related(
            Prefetch("entitlements", queryset=Entitlement.objects.only("pk").order_by("name", "pk"))  # pks only
        )
    )
    found: dict[int, list[SodRule]] = {pk: [] for pk in entitlement_ids}
    for rule in rules.order_by("name", "pk"):
        for entitlement in rule.entitlements.all():
            if entitlement.pk in found:
                found[entitlement.pk].append(rule)
    return found


def _conflicts(req: AccessRequest, rules: list[SodRule], held: list[Holding]) -> list[Conflict]:
    """The rules this request would complete with what its beneficiary holds, is being given or asks
    for in another request (the policy's own rule: requests in flight count as held)."""
    by_entitlement: dict[int, list[Holding]] = {}
    for holding in held:
        if holding.request is not None and holding.request.pk == req.pk:
            continue
        by_entitlement.setdefault(holding.entitlement.pk, []).append(holding)
    conflicts = []
    for rule in rules:
        others = [e.pk for e in rule.entitlements.all() if e.pk != req.entitlement_id]
        if others and all(pk in by_entitlement for pk in others):
            conflicts.append(Conflict(rule, [h for pk in others for h in by_entitlement[pk]]))
    return conflicts


def queue_cards(rows: list[AccessRequest], *, user) -> list[AccessRequest]:
    """Give each card of a page what it shows beside the request (attributes on each row).

    `holdings` (in force and being provisioned, then on its way), `conflicts` (with the other
    request or grant named), `earlier_stages` (each with its decisions and comments),
    `current_stage`, `deputy_for` (the absent approvers I stand in for here), `shorter` (what an
    approval may cut the duration to), `stage_count`. Five queries for a page (six when I stand in for
    someone), none per card; what the holdings show is read as values, not model instances.
    """
    if not rows:
        return rows
    now = clock.now()
    grants, requests = _holdings({r.beneficiary_id for r in rows}, now, user=user)
    rules = _rules_for({r.entitlement_id for r in rows})
    standing_in_for = {
        absence.approver_id: absence
        for absence in ApproverAbsence.objects.in_force(now).filter(deputy=user).select_related("approver__identity")
    }
    deputies = _eligible_deputies(
        {s.pk for r in rows for s in r.stages.all() if s.position == r.current_position},
        set(standing_in_for) - {user.pk},
    )
    for req in rows:
        stages = list(req.stages.all())
        req.stage_count = len(stages)
        req.current_stage = next((s for s in stages if s.position == req.current_position), None)
        req.earlier_stages = [s for s in stages if s.position < (req.current_position or 0)]
        held = grants[req.beneficiary_id]
        waiting = [h for h in requests[req.beneficiary_id] if h.request.pk != req.pk]
        req.holdings = held + waiting
        req.holdings_shown = req.holdings[:HOLDINGS_SHOWN]
        req.conflicts = _conflicts(req, rules[req.entitlement_id], req.holdings)
        live = {c.rule.pk for c in req.conflicts}
        req.submission_conflicts = [c for c in req.policy.get("sod_conflicts", []) if c.get("rule") not in live]
        eligible = deputies.get(req.current_stage.pk, set()) if req.current_stage else set()
        req.deputy_for = [a for pk, a in standing_in_for.items() if pk in eligible]
        req.asked_duration = timedelta(seconds=req.policy.get("duration_seconds") or req.duration.total_seconds())
        req.shortened = req.duration < req.asked_duration
        req.shorter = [(int(d.total_seconds() // 60), d) for d in SHORTER if d < req.duration]
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
