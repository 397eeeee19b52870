"""Automatic approval in words: an entitlement's conditions, and the ones a request met or missed."""

from django import template

from governance.auto_approval import conditions_in_words

register = template.Library()


@register.filter
def auto_approval_words(entitlement) -> list[str]:
    """What must hold for a request of `entitlement` to be approved automatically, one sentence each."""
    return conditions_in_words(entitlement)


@register.filter
def conditions_held(conditions, held: bool = True) -> list[dict]:
    """The conditions of a policy snapshot (`auto_approval`) that held, or with `False` that did not."""
    return [c for c in conditions or [] if bool(c.get("held")) == held]


LABELS = {
    "kind": "identity kind",
    "risk": "risk tier",
    "beneficiary_owner_active": "identity's owner",
    "entitlement_owner_active": "entitlement's owner",
    "findings": "findings",
    "duration": "duration",
    "intent": "declared intent",
    "rate": "rate",
    "no_sod_conflict": "separation of duties",
    "no_step_up": "step-up",
    "requester_not_owner": "who asks",
}


@register.filter
def auto_approval_line(condition: dict) -> str:
    """One checked condition as a line: what it is about, then what was found ("declared intent: missing task")."""
    label = LABELS.get(condition.get("condition", ""), str(condition.get("condition", "")).replace("_", " "))
    detail = str(condition.get("detail", ""))
    return detail if detail.startswith(label) else f"{label}: {detail}"
