"""The policy engine: one pure function from a request's facts to a decision.

No database access here: `services.requests.gather_policy_input` collects the facts, and the
decision is stored on the request as a snapshot (`AccessRequest.policy`), so an auditor can see
why a request was refused, routed to these approvers, or approved automatically.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from governance.auto_approval import FindingTolerance
from governance.choices import IdentityKind, RiskTier


@dataclass(frozen=True)
class SodRuleFacts:
    id: int
    name: str
    entitlement_ids: frozenset[int]
    action: str  # "block" | "extra_stage"
    severity: str


@dataclass(frozen=True)
class AutoApprovalFacts:
    """An entitlement's conditions for automatic approval, and the facts of this request they read.

    The defaults are what automatic approval always required (a machine, a low tier), so a caller
    that knows no more decides as before.
    """

    kinds: tuple[str, ...] = tuple(IdentityKind.non_human())
    max_risk: str = RiskTier.LOW
    # The most severe open finding tolerated on the beneficiary ("none": any blocks; FindingTolerance).
    max_finding_severity: str = FindingTolerance.MEDIUM
    max_minutes: int | None = None
    intent_fields: tuple[str, ...] = ()
    max_per_hour: int | None = None
    # Facts about the beneficiary and this entitlement.
    beneficiary_owner_active: bool = True
    open_finding_severity: str = ""  # the most severe of the beneficiary's open findings; "" when none
    approvals_last_hour: int = 0  # automatic approvals of this entitlement for this beneficiary


@dataclass(frozen=True)
class PolicyInput:
    requester_is_beneficiary: bool
    requester_owns_beneficiary: bool
    requester_is_machine: bool
    beneficiary_kind: str
    beneficiary_status: str
    beneficiary_may_self_request: bool
    entitlement_id: int
    entitlement_live: bool
    entitlement_requestable: bool
    entitlement_owner_active: bool
    risk_tier: str
    allowed_kinds: tuple[str, ...]
    stages: tuple[dict, ...]
    auto_approve_machines: bool
    justification_required: bool
    ticket_required: bool
    max_duration: timedelta
    default_duration: timedelta
    duration: timedelta | None
    justification: str
    ticket: str
    intent: str
    start_at: datetime | None
    now: datetime
    held_entitlement_ids: frozenset[int]
    sod_rules: tuple[SodRuleFacts, ...]
    # The declared intent in parts (beside `intent`, its words): which task, doing what, to what.
    intent_task: str = ""
    intent_action: str = ""
    intent_resource: str = ""
    # The requester owns the entitlement or its system: they can rewrite its policy, so no
    # automatic approval may stand in for someone else's look.
    requester_controls_entitlement: bool = False
    # Who the requester says it acts for: only a machine acting for someone may declare this.
    has_delegation_chain: bool = False
    # Renewal facts: how often this access was renewed lately and for how long it has been held.
    is_renewal: bool = False
    # Break-glass access is never extended: more time is a new activation and a new review.
    renewal_of_break_glass: bool = False
    renewal_time_left: timedelta = timedelta(0)
    renewals_in_window: int = 0
    cumulative_active: timedelta = timedelta(0)
    # Settings the caller passes in, so the function stays pure.
    min_quorum: int = 1
    extra_stage_group: str = "approver"
    max_start_ahead: timedelta = timedelta(days=14)
    activation_window: timedelta | None = None
    step_up_after_renewals: int = 3
    step_up_after_cumulative: timedelta = timedelta(days=14)
    auto_approval: AutoApprovalFacts = field(default_factory=AutoApprovalFacts)


@dataclass
class PolicyDecision:
    allowed: bool
    reasons: list[str] = field(default_factory=list)
    field_errors: dict[str, list[str]] = field(default_factory=dict)
    stages: list[dict] = field(default_factory=list)
    max_duration_seconds: int = 0
    duration_seconds: int = 0
    sod_conflicts: list[dict] = field(default_factory=list)
    auto_approve: bool = False
    # Each automatic-approval condition checked, `{"condition", "held", "detail"}`; empty when the
    # entitlement's switch is off. The snapshot keeps it: which held, and which sent it to people.
    auto_approval: list[dict] = field(default_factory=list)
    step_up: bool = False
    activation_window_seconds: int | None = None

    def snapshot(self) -> dict:
        return asdict(self)


def _refuse(decision: PolicyDecision, reason: str, field_name: str | None = None) -> None:
    decision.allowed = False
    decision.reasons.append(reason)
    if field_name:
        decision.field_errors.setdefault(field_name, []).append(reason)


def human_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours = seconds // 3600
    if hours >= 48 and hours % 24 == 0 and seconds % 3600 < 60:
        amount, unit = hours // 24, "day"
    elif hours and seconds % 3600 >= 60:
        return f"{human_duration(timedelta(hours=hours))} {human_duration(timedelta(seconds=seconds % 3600))}"
    elif hours:
        amount, unit = hours, "hour"
    else:
        amount, unit = seconds // 60, "minute"
    return f"{amount} {unit}{'' if amount == 1 else 's'}"


def evaluate(facts: PolicyInput) -> PolicyDecision:
    """Decide whether a request may proceed, who must approve it, and for how long at most."""
    decision = PolicyDecision(allowed=True, max_duration_seconds=int(facts.max_duration.total_seconds()))

    # Who asks, for whom
    if facts.beneficiary_status != "active":
        _refuse(decision, f"The identity is {facts.beneficiary_status}; it cannot receive access.", "beneficiary")
    if not (facts.requester_is_beneficiary or facts.requester_owns_beneficiary):
        _refuse(decision, "You may request only for yourself or for an identity you own.", "beneficiary")
    if facts.requester_is_machine and facts.requester_is_beneficiary and not facts.beneficiary_may_self_request:
        _refuse(decision, "This identity may not request access for itself.", "beneficiary")
    if facts.beneficiary_kind not in facts.allowed_kinds:
        _refuse(
            decision,
            f"This entitlement is not available to {facts.beneficiary_kind.replace('_', ' ')} identities.",
            "beneficiary",
        )

    if facts.has_delegation_chain and not facts.requester_is_machine:
        _refuse(decision, "Only a machine identity acting for someone declares a delegation chain.", "delegation_chain")

    # What is asked
    if not facts.entitlement_live or not facts.entitlement_requestable:
        _refuse(decision, "This entitlement cannot be requested.", "entitlement")
    if not facts.entitlement_owner_active:
        _refuse(
            decision, "This entitlement has no active owner; it cannot be requested until one is set.", "entitlement"
        )

    if facts.renewal_of_break_glass:
        _refuse(
            decision,
            "Break-glass access cannot be extended or renewed: activate again (a new activation and a new review).",
            "duration",
        )

    # For how long, from when, and why
    duration = facts.duration or min(facts.default_duration, facts.max_duration)
    decision.duration_seconds = int(duration.total_seconds())
    if duration <= timedelta(0):
        _refuse(decision, "The duration must be positive.", "duration")
    elif duration > facts.max_duration:
        _refuse(
            decision, f"The maximum duration for this entitlement is {human_duration(facts.max_duration)}.", "duration"
        )
    elif facts.is_renewal and facts.renewal_time_left + duration > facts.max_duration:
        # An extension adds to what is left: together they may not outrun one grant's maximum.
        room = max(facts.max_duration - facts.renewal_time_left, timedelta(0))
        _refuse(
            decision,
            f"This grant still has {human_duration(facts.renewal_time_left)} left and may run at most "
            f"{human_duration(facts.max_duration)} from now; extend it by at most {human_duration(room)}.",
            "duration",
        )
    if facts.start_at is not None:
        if facts.start_at < facts.now - timedelta(minutes=5):
            _refuse(decision, "The start cannot be in the past.", "start_at")
        elif facts.start_at > facts.now + facts.max_start_ahead:
            _refuse(decision, f"The start can be at most {facts.max_start_ahead.days} days ahead.", "start_at")
    # A machine's declared task is its justification; a person must say why in their own words.
    stated_why = facts.justification.strip() or (facts.requester_is_machine and facts.intent.strip())
    if facts.justification_required and not stated_why:
        _refuse(decision, "A justification is required for this entitlement.", "justification")
    if facts.ticket_required and not facts.ticket.strip():
        _refuse(decision, "A ticket reference is required for this entitlement.", "ticket")

    # Separation of duties: the rule is hit when the request would complete the set.
    for rule in facts.sod_rules:
        if (
            facts.entitlement_id in rule.entitlement_ids
            and rule.entitlement_ids - {facts.entitlement_id} <= facts.held_entitlement_ids
        ):
            decision.sod_conflicts.append(
                {"rule": rule.id, "name": rule.name, "severity": rule.severity, "action": rule.action}
            )
            if rule.action == "block":
                _refuse(
                    decision,
                    f"Separation of duties: {rule.name} forbids holding this with what the identity holds.",
                    "entitlement",
                )

    # Approval path
    stages = [dict(stage) for stage in facts.stages] or [{"approver": "entitlement_owner", "quorum": 1}]
    if facts.min_quorum > 1:
        stages[-1]["quorum"] = max(stages[-1].get("quorum", 1), facts.min_quorum)
    for conflict in decision.sod_conflicts:
        if conflict["action"] == "extra_stage":
            stages.append(
                {
                    "approver": "group",
                    "group": facts.extra_stage_group,
                    "quorum": 1,
                    "reason": f"SoD: {conflict['name']}",
                }
            )
    if facts.is_renewal and (
        facts.renewals_in_window >= facts.step_up_after_renewals
        or facts.cumulative_active >= facts.step_up_after_cumulative
    ):
        decision.step_up = True
        stages.append(
            {
                "approver": "group",
                "group": facts.extra_stage_group,
                "quorum": 1,
                "reason": "Step-up: renewed repeatedly (standing access in disguise)",
            }
        )
    decision.stages = stages

    if facts.auto_approve_machines:
        decision.auto_approval = auto_approval_conditions(facts, decision, duration)
        decision.auto_approve = decision.allowed and all(c["held"] for c in decision.auto_approval)
    if facts.activation_window is not None and not facts.is_renewal:
        decision.activation_window_seconds = int(facts.activation_window.total_seconds())
    return decision


#
# Automatic approval
#
INTENT_PARTS = {"task": "intent_task", "action": "intent_action", "resource": "intent_resource", "text": "intent"}


def _condition(name: str, held: bool, detail: str) -> dict:
    return {"condition": name, "held": bool(held), "detail": detail}


def _findings_condition(tolerated: str, worst: str) -> dict:
    if not worst:
        return _condition("findings", True, "no open finding")
    held = FindingTolerance.rank(worst) <= FindingTolerance.rank(tolerated)  # "none" ranks below every severity
    limit = "none tolerated" if tolerated == FindingTolerance.NONE else f"at most {tolerated} tolerated"
    return _condition("findings", held, f"open finding of {worst} severity; {limit}")


def auto_approval_conditions(facts: PolicyInput, decision: PolicyDecision, duration: timedelta) -> list[dict]:
    """Every condition of the entitlement's automatic approval, and the ones no admin can lift, checked."""
    rules = facts.auto_approval
    kind = facts.beneficiary_kind
    machine = kind != IdentityKind.HUMAN
    kinds = ", ".join(rules.kinds) or "none"
    conditions = [
        _condition("kind", kind in rules.kinds, f"{kind} {'in' if kind in rules.kinds else 'not in'} {kinds}"),
        _condition(
            "risk",
            RiskTier.rank(facts.risk_tier) <= RiskTier.rank(rules.max_risk),
            f"risk tier {facts.risk_tier}, at most {rules.max_risk}",
        ),
        _condition(
            "beneficiary_owner_active",
            rules.beneficiary_owner_active or not machine,
            ("owner active" if rules.beneficiary_owner_active else "no active owner") if machine else "a person",
        ),
        _condition(
            "entitlement_owner_active",
            facts.entitlement_owner_active,
            "entitlement owner active" if facts.entitlement_owner_active else "entitlement owner not active",
        ),
        _findings_condition(rules.max_finding_severity, rules.open_finding_severity),
    ]
    if rules.max_minutes is None:
        limit = facts.max_duration
        conditions.append(
            _condition(
                "duration",
                duration <= limit,
                f"duration {human_duration(duration)} <= {human_duration(limit)} (the entitlement's maximum)",
            )
        )
    else:
        limit = timedelta(minutes=rules.max_minutes)
        sign = "<=" if duration <= limit else ">"
        detail = f"duration {human_duration(duration)} {sign} {human_duration(limit)}"
        conditions.append(_condition("duration", duration <= limit, detail))
    missing = [part for part in rules.intent_fields if not getattr(facts, INTENT_PARTS[part]).strip()]
    conditions.append(
        _condition(
            "intent",
            not missing,
            ("missing " + ", ".join(missing))
            if missing
            else (("gives " + ", ".join(rules.intent_fields)) if rules.intent_fields else "none required"),
        )
    )
    if rules.max_per_hour is None:
        conditions.append(_condition("rate", True, "no hourly limit"))
    else:
        conditions.append(
            _condition(
                "rate",
                rules.approvals_last_hour < rules.max_per_hour,
                f"{rules.approvals_last_hour} automatic approvals in the last hour, at most {rules.max_per_hour}",
            )
        )
    conditions += [
        _condition(
            "no_sod_conflict",
            not decision.sod_conflicts,
            ", ".join(c["name"] for c in decision.sod_conflicts) or "no separation-of-duties conflict",
        ),
        _condition("no_step_up", not decision.step_up, "step-up required" if decision.step_up else "no step-up"),
        _condition(
            "requester_not_owner",
            not facts.requester_controls_entitlement,
            "the requester owns the entitlement or its system"
            if facts.requester_controls_entitlement
            else "the requester does not own the entitlement or its system",
        ),
    ]
    return conditions
