"""The approval stage builder: an entitlement's approval path edited as stages, not as JSON (issue 16, admin item 1).

The entitlement form's `approval_stages` field posts `stage-N-approver`, `stage-N-group` and
`stage-N-quorum` for stage N; the builder's htmx endpoint takes the same fields plus one
operation (add, remove, move) and answers the builder again, with a preview of who would approve.
The rules stay in one place, `approval_stages.validate_approval_stages`: the builder runs it on each
stage alone so that each error is shown beside its stage, and on the whole path as the service does.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from .approval_stages import MAX_QUORUM, MIN_QUORUM, validate_approval_stages
from .choices import ApproverSource, IdentityStatus
from .errors import ValidationFailed
from .models import Entitlement, System

MAX_STAGES = 10
MEMBERS_NAMED = 5
_STAGE_NUMBER = re.compile(r"^Stage \d+")


_POSTED = re.compile(r"^stage-(\d{1,2}|new)-approver$")


def posted_stages(data: Mapping) -> list[dict] | None:
    """The stages a builder posted, by their numbers (None when the post has no builder: raw JSON
    from a script, or nothing). Fields are numbered, not repeated, so the order they arrive in (htmx
    sends the changed field first) does not matter. `stage-new-*` is the spare row a page without
    script offers, last; a row whose approver is blank ("No stage") is no stage.
    """
    numbers = sorted(
        (match.group(1) for key in data if (match := _POSTED.match(key))),
        key=lambda n: (n == "new", int(n) if n.isdigit() else 0),
    )
    if not numbers:
        return None
    stages = []
    for number in numbers:
        approver = str(data.get(f"stage-{number}-approver", "")).strip()
        if not approver:
            continue
        quorum = str(data.get(f"stage-{number}-quorum", "1")).strip()
        stage: dict[str, Any] = {"approver": approver, "quorum": int(quorum) if quorum.isdigit() else quorum}
        if approver == ApproverSource.GROUP:
            stage["group"] = str(data.get(f"stage-{number}-group", ""))
        stages.append(stage)
    return stages


def apply_operation(stages: list[dict], operation: str) -> tuple[list[dict], int | None]:
    """`add`, `remove-N`, `up-N` or `down-N` (N counts from 1); the stages after it, and the stage to focus."""
    stages = list(stages)
    verb, _, number = operation.partition("-")
    index = int(number) - 1 if number.isdigit() else -1
    if verb == "add" and len(stages) < MAX_STAGES:
        stages.append({"approver": ApproverSource.ENTITLEMENT_OWNER.value, "quorum": 1})
        return stages, len(stages) - 1
    if not 0 <= index < len(stages):
        return stages, None
    if verb == "remove" and len(stages) > 1:
        del stages[index]
        return stages, min(index, len(stages) - 1)
    if verb == "up" and index > 0:
        stages[index - 1], stages[index] = stages[index], stages[index - 1]
        return stages, index - 1
    if verb == "down" and index < len(stages) - 1:
        stages[index + 1], stages[index] = stages[index], stages[index + 1]
        return stages, index + 1
    return stages, None


def stage_errors(stages: list[dict], groups: set[str]) -> dict[int, tuple[str, str]]:
    """Each bad stage's error by index, in the validator's own words numbered as the page shows it:
    (the full message, shown beside the stage; the short one, for the field's summary)."""
    errors = {}
    for index, stage in enumerate(stages):
        try:
            validate_approval_stages([stage], groups=groups)
        except ValidationFailed as exc:
            number = f"Stage {index + 1}"
            short = " ".join(exc.field_errors.get("approval_stages", [exc.message]))
            errors[index] = (_STAGE_NUMBER.sub(number, exc.message), _STAGE_NUMBER.sub(number, short))
    return errors


def group_names() -> list[str]:
    return list(Group.objects.order_by("name").values_list("name", flat=True))


@dataclass
class Builder:
    """What the builder's template shows: the stages with their errors and who would approve each."""

    stages: list[dict]
    groups: list[str]
    url: str
    errors: dict[int, tuple[str, str]] = field(default_factory=dict)
    focus: int | None = None
    rows: list[dict] = field(default_factory=list)
    approvers: list[tuple[str, str]] = field(default_factory=lambda: list(ApproverSource.choices))
    min_quorum: int = MIN_QUORUM
    max_quorum: int = MAX_QUORUM
    can_add: bool = True
    spare: bool = False  # the spare row for a page without script (whole pages only: htmx parses <noscript>)


def _person(identity) -> str:
    if identity is None:
        return ""
    if identity.status != IdentityStatus.ACTIVE or identity.user_id is None:
        return f"{identity.name} (cannot sign in to decide)"
    return identity.name


def previews(stages: list[dict], entitlement: Entitlement | None, system: System | None) -> list[str]:
    """Who would decide each stage, in words (jit.services.routing decides for real, per request).

    One query for the members of every group named, none per stage.
    """
    names = {s.get("group") for s in stages if s.get("approver") == ApproverSource.GROUP}
    members: dict[str, list[str]] = {name: [] for name in names if isinstance(name, str)}
    if members:
        rows = (
            get_user_model()
            .objects.filter(groups__name__in=members, is_active=True)
            .values_list("groups__name", "identity__name", "username")
            .order_by("username")
        )
        for group, name, username in rows:
            if group in members:
                members[group].append(name or username)
    fallback = settings.JIT_FALLBACK_GROUP
    said = []
    for stage in stages:
        approver, quorum = stage.get("approver"), stage.get("quorum", 1)
        if approver == ApproverSource.ENTITLEMENT_OWNER:
            owner = entitlement.owner if entitlement is not None and entitlement.owner_id else None
            who = _person(owner) or "The entitlement's owner (named above)"
            text = who if owner is None else f"{who}, the entitlement's owner"
        elif approver == ApproverSource.SYSTEM_OWNER:
            owner = system.owner if system is not None and system.owner_id else None
            text = f"{_person(owner)}, the system's owner" if owner else "The system's owner"
        elif approver == ApproverSource.BENEFICIARY_OWNER:
            text = "The manager of the person who will hold it (for a machine, its owner's manager)"
        elif approver == ApproverSource.GROUP:
            people = members.get(stage.get("group"), [])
            if not stage.get("group"):
                text = "Pick a group"
            elif not people:
                text = f"Nobody: group {stage.get('group')} has no active members"
            else:
                shown = ", ".join(people[:MEMBERS_NAMED])
                more = f" and {len(people) - MEMBERS_NAMED} more" if len(people) > MEMBERS_NAMED else ""
                text = f"Any {quorum} of {len(people)} in {stage.get('group')}: {shown}{more}"
        else:
            text = "Pick who approves"
        one_person = approver in (
            ApproverSource.ENTITLEMENT_OWNER,
            ApproverSource.SYSTEM_OWNER,
            ApproverSource.BENEFICIARY_OWNER,
        )
        if one_person and isinstance(quorum, int) and quorum > 1:
            text += f"; {quorum - 1} more from the {fallback} group to reach {quorum}"
        said.append(text)
    return said


def builder(
    stages: list[dict],
    *,
    url: str,
    entitlement: Entitlement | None = None,
    system: System | None = None,
    errors: dict[int, tuple[str, str]] | None = None,
    focus: int | None = None,
    groups: list[str] | None = None,
    spare: bool = False,
) -> Builder:
    """The builder for these stages; `errors` by stage index (beside each stage), `focus` the stage to focus."""
    groups = group_names() if groups is None else groups
    known = set(groups)
    for stage in stages:  # a group stage naming a group since deleted keeps it in its list, to be seen
        name = stage.get("group") if stage.get("approver") == ApproverSource.GROUP else None
        if isinstance(name, str) and name and name not in known:
            groups = [*groups, name]
            known.add(name)
    if system is None and entitlement is not None:
        system = entitlement.system
    result = Builder(stages=stages, groups=groups, url=url, errors=errors or {}, focus=focus, spare=spare)
    result.can_add = len(stages) < MAX_STAGES
    for index, (stage, preview) in enumerate(zip(stages, previews(stages, entitlement, system), strict=True)):
        result.rows.append(
            {
                "number": index + 1,
                "approver": stage.get("approver", ""),
                "group": stage.get("group", ""),
                "quorum": stage.get("quorum", 1),
                "preview": preview,
                "error": result.errors.get(index, ("", ""))[0],
                "first": index == 0,
                "last": index == len(stages) - 1,
                "focus": index == focus,
            }
        )
    return result
