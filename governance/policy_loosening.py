"""Which edits of an entitlement loosen its policy: on high and critical access these wait for a second admin.

Each rule compares a field's value before and after an edit. Anything that lets more access through,
or through with fewer eyes, loosens: a longer cap, a lower tier, automatic approval, a stage or an
approver removed or a quorum lowered, break-glass or more identity kinds allowed, a justification or
ticket no longer asked for, reviews further apart. Any condition of automatic approval widened does
too (more kinds, a higher tier or finding severity tolerated, longer, fewer intent parts asked for,
more per hour or no limit): it lets more through with nobody looking, as switching it on does. The
same edit's other fields apply at once.
"""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from .auto_approval import FindingTolerance
from .choices import RiskTier
from .models.entitlements import effective_max_duration

GUARDED_TIERS = frozenset({RiskTier.HIGH, RiskTier.CRITICAL})


def _cap(values: dict[str, Any]) -> timedelta:
    return effective_max_duration(values["max_duration"], values["risk_tier"])


def _stage_kept(stage: dict, stages: list[dict]) -> bool:
    """A stage is kept when the new stages still ask the same approvers, at least as many of them."""
    return any(
        other.get("approver") == stage.get("approver")
        and other.get("group") == stage.get("group")
        and int(other.get("quorum") or 1) >= int(stage.get("quorum") or 1)
        for other in stages
    )


def _fewer_approvals(before: list[dict], after: list[dict]) -> bool:
    return len(after) < len(before) or not all(_stage_kept(stage, after) for stage in before)


def _turned_on(name: str) -> Callable[[dict, dict], bool]:
    return lambda before, after: not before[name] and bool(after[name])


def _turned_off(name: str) -> Callable[[dict, dict], bool]:
    return lambda before, after: bool(before[name]) and not after[name]


def _limit_raised(name: str) -> Callable[[dict, dict], bool]:
    """A limit where empty means none: raised, or removed."""

    def raised(before: dict, after: dict) -> bool:
        if after[name] is None:
            return before[name] is not None
        return before[name] is not None and after[name] > before[name]

    return raised


def _more(name: str) -> Callable[[dict, dict], bool]:
    return lambda before, after: bool(set(after[name] or []) - set(before[name] or []))


def _fewer(name: str) -> Callable[[dict, dict], bool]:
    return lambda before, after: bool(set(before[name] or []) - set(after[name] or []))


# field -> (how it loosens, in words; whether the change from `before` to `after` does).
RULES: dict[str, tuple[str, Callable[[dict, dict], bool]]] = {
    "max_duration": ("raises the maximum duration", lambda b, a: _cap(a) > _cap(b)),
    "risk_tier": ("lowers the risk tier", lambda b, a: RiskTier.rank(a["risk_tier"]) < RiskTier.rank(b["risk_tier"])),
    "auto_approve_machines": ("approves machine identities automatically", _turned_on("auto_approve_machines")),
    "approval_stages": (
        "removes an approval stage or approver",
        lambda b, a: _fewer_approvals(b["approval_stages"] or [], a["approval_stages"] or []),
    ),
    "break_glass_eligible": ("allows break-glass", _turned_on("break_glass_eligible")),
    "justification_required": ("no longer asks for a justification", _turned_off("justification_required")),
    "ticket_required": ("no longer asks for a ticket", _turned_off("ticket_required")),
    "allowed_identity_kinds": (
        "allows more identity kinds",
        lambda b, a: bool(set(a["allowed_identity_kinds"] or []) - set(b["allowed_identity_kinds"] or [])),
    ),
    "review_cadence_days": ("reviews it less often", lambda b, a: a["review_cadence_days"] > b["review_cadence_days"]),
    "requestable": ("makes it requestable", _turned_on("requestable")),
    "auto_approve_kinds": ("approves more identity kinds automatically", _more("auto_approve_kinds")),
    "auto_approve_max_risk": (
        "approves automatically at a higher risk tier",
        lambda b, a: RiskTier.rank(a["auto_approve_max_risk"]) > RiskTier.rank(b["auto_approve_max_risk"]),
    ),
    "auto_approve_max_finding_severity": (
        "approves automatically despite more severe findings",
        lambda b, a: (
            FindingTolerance.rank(a["auto_approve_max_finding_severity"])
            > FindingTolerance.rank(b["auto_approve_max_finding_severity"])
        ),
    ),
    "auto_approve_max_minutes": (
        "approves longer access automatically",
        _limit_raised("auto_approve_max_minutes"),
    ),
    "auto_approve_intent_fields": (
        "approves automatically with less of the intent declared",
        _fewer("auto_approve_intent_fields"),
    ),
    "auto_approve_max_per_hour": (
        "approves automatically more often",
        _limit_raised("auto_approve_max_per_hour"),
    ),
}
# A cap follows the tier when none is set: lowering the tier may raise the cap, so both are judged together;
# and the longest automatic approval must stay within the cap, so it is judged with both.
JUDGED_WITH = {
    "risk_tier": ("max_duration", "auto_approve_max_minutes"),
    "max_duration": ("risk_tier", "auto_approve_max_minutes"),
    "auto_approve_max_minutes": ("max_duration", "risk_tier"),
}
JUDGED_WITH_WORDS = {
    "risk_tier": "changes with the risk tier",
    "max_duration": "changes with the maximum duration",
    "auto_approve_max_minutes": "changes with the longest automatic approval",
}


def loosened_fields(before: dict[str, Any], after: dict[str, Any]) -> dict[str, str]:
    """Of the fields that changed, those that loosen policy (name -> what it does), when the
    entitlement is high or critical before or after; {} for any other."""
    if before["risk_tier"] not in GUARDED_TIERS and after["risk_tier"] not in GUARDED_TIERS:
        return {}
    loosened = {}
    for name, (words, loosens) in RULES.items():
        if before[name] != after[name] and loosens(before, after):
            loosened[name] = words
    for name in list(loosened):
        for other in JUDGED_WITH.get(name, ()):
            if other not in loosened and before[other] != after[other]:
                loosened[other] = JUDGED_WITH_WORDS[name]
    return loosened
