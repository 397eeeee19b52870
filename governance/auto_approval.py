"""The conditions under which an entitlement's requests are approved with nobody asked, as admins set them.

Each entitlement keeps its own (`Entitlement.auto_approve_*`); the jit policy engine checks them
against a request's facts. This module holds their vocabulary and says them in words, for the
entitlement's page, the held policy changes and the form.
"""

from django.db import models

from .choices import IdentityKind, RiskTier


class IntentPart(models.TextChoices):
    """A part of a request's declared intent that automatic approval may require."""

    TASK = "task", "Task id"
    ACTION = "action", "Action"
    RESOURCE = "resource", "Resource"
    TEXT = "text", "Free text"


class FindingTolerance(models.TextChoices):
    """The most severe open hygiene finding an identity may have and still be approved automatically.

    Ordered: a finding above the tolerated severity sends the request to people. `none` tolerates
    no open finding at all; `critical` tolerates any (findings never block).
    """

    NONE = "none", "None: any open finding blocks"
    LOW = "low", "Low: medium, high and critical findings block"
    MEDIUM = "medium", "Medium: high and critical findings block"
    HIGH = "high", "High: only critical findings block"
    CRITICAL = "critical", "Critical: findings never block"

    @classmethod
    def rank(cls, value: str) -> int:
        return cls.values.index(value)


def default_auto_approve_kinds() -> list[str]:
    """Machines only, as automatic approval always was before it had conditions."""
    return IdentityKind.non_human()


def _listed(words: list[str], last: str = "and") -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {last} {words[-1]}"


def _lower_first(label: str) -> str:
    return label if label[:2].isupper() else label[:1].lower() + label[1:]


def kinds_in_words(kinds) -> str:
    labels = dict(IdentityKind.choices)
    return _listed([_lower_first(str(labels.get(kind, kind))) for kind in kinds or []], "or") or "no kind at all"


def intent_in_words(parts) -> str:
    labels = dict(IntentPart.choices)
    return _listed([str(labels.get(part, part)).lower() for part in parts or []]) or "nothing"


def findings_in_words(tolerance: str) -> str:
    if tolerance == FindingTolerance.NONE:
        return "the identity has no open hygiene finding"
    if tolerance == FindingTolerance.CRITICAL:
        return "open hygiene findings do not matter"
    tolerated = FindingTolerance.rank(tolerance)
    above = [str(label).lower() for value, label in RiskTier.choices if FindingTolerance.rank(value) > tolerated]
    return f"the identity has no open hygiene finding of {_listed(above, 'or')} severity"


def conditions_in_words(entitlement) -> list[str]:
    """What must hold for a request of this entitlement to be approved automatically, one sentence each."""
    from .templatetags.grant_tags import duration

    risk = entitlement.auto_approve_max_risk
    words = [
        f"the identity's kind is {kinds_in_words(entitlement.auto_approve_kinds)}",
        f"this entitlement's risk tier is at most {RiskTier(risk).label.lower()}"
        + (
            f" (it is {entitlement.get_risk_tier_display().lower()} now, so nothing is approved automatically)"
            if RiskTier.rank(entitlement.risk_tier) > RiskTier.rank(risk)
            else ""
        ),
        "the identity's owner (for a machine) and this entitlement's owner are active",
        findings_in_words(entitlement.auto_approve_max_finding_severity),
    ]
    minutes = entitlement.auto_approve_max_minutes
    cap = entitlement.effective_max_duration
    words.append(
        f"the duration is at most {minutes} minute{'' if minutes == 1 else 's'}"
        if minutes
        else f"the duration is within the entitlement's maximum ({duration(cap)})"
    )
    if entitlement.auto_approve_intent_fields:
        words.append(f"the declared intent gives its {intent_in_words(entitlement.auto_approve_intent_fields)}")
    per_hour = entitlement.auto_approve_max_per_hour
    if per_hour:
        words.append(
            f"the identity was approved automatically for it fewer than {per_hour} time{'' if per_hour == 1 else 's'}"
            " in the last hour"
        )
    words.append(
        "always: no separation-of-duties conflict, no step-up for repeated renewals, and whoever asks does not "
        "own this entitlement or its system"
    )
    return words


# How a held policy change shows these fields' values (governance.views_policy_changes).
def shown(name: str, value) -> str | None:
    if name == "auto_approve_kinds":
        return kinds_in_words(value)
    if name == "auto_approve_max_risk":
        return RiskTier(value).label
    if name == "auto_approve_max_finding_severity":
        return str(FindingTolerance(value).label)
    if name == "auto_approve_max_minutes":
        return f"{value} minutes" if value else "up to the maximum duration"
    if name == "auto_approve_intent_fields":
        return intent_in_words(value) if value else "none required"
    if name == "auto_approve_max_per_hour":
        return f"{value} per hour" if value else "no limit"
    return None
