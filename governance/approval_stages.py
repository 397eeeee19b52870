"""The one validator of an entitlement's approval path, shared by the catalogue and the importer.

An approval path is a non-empty list of stages `{"approver": <ApproverSource>, "quorum": 1..5}`,
plus `"group": <name of an existing group>` for a group stage. Anything else in a stage is dropped.

The catalogue and the importer used to check this each their own way, and disagreed: the catalogue
took `true` as a quorum of 1 (a bool is an int in Python), and a group or approver that was not a
string crashed one or the other instead of being refused. Both now call `validate_approval_stages`;
the importer passes the group names it already holds, so a file of 100,000 rows asks nothing per row.
"""

from collections.abc import Collection
from typing import Any

from django.contrib.auth.models import Group

from .choices import ApproverSource
from .errors import ValidationFailed

MIN_QUORUM, MAX_QUORUM = 1, 5
_APPROVERS = frozenset(ApproverSource.values)
FIELD = "approval_stages"


def _refuse(message: str, field_message: str) -> ValidationFailed:
    return ValidationFailed(message, field_errors={FIELD: [field_message]})


def validate_approval_stages(stages: Any, *, groups: Collection[str] | None = None) -> list[dict]:
    """Normalise and check an approval path; raise ValidationFailed naming the first bad stage.

    `groups` is the set of existing group names when the caller holds it (the importer, once per
    file); otherwise the groups the path names are looked up in one query.
    """
    if not isinstance(stages, list) or not stages:
        raise _refuse("At least one approval stage is required.", "Required.")
    if groups is None:
        groups = _groups_named(stages)
    clean: list[dict] = []
    for number, stage in enumerate(stages, start=1):
        approver = stage.get("approver") if isinstance(stage, dict) else None
        if not isinstance(approver, str) or approver not in _APPROVERS:
            raise _refuse(
                f"Stage {number}: approver must be one of {', '.join(ApproverSource.values)}.",
                f"Stage {number} has an unknown approver.",
            )
        quorum = stage.get("quorum", 1)
        # bool is a subclass of int: `true` is not a quorum.
        if type(quorum) is not int or not MIN_QUORUM <= quorum <= MAX_QUORUM:
            raise _refuse(
                f"Stage {number}: quorum must be between {MIN_QUORUM} and {MAX_QUORUM}.",
                f"Stage {number}: quorum {MIN_QUORUM} to {MAX_QUORUM}.",
            )
        entry: dict[str, Any] = {"approver": approver, "quorum": quorum}
        if approver == ApproverSource.GROUP:
            group = stage.get("group", "")
            if not isinstance(group, str) or group not in groups:
                raise _refuse(f"Stage {number}: group {group!r} does not exist.", f"Stage {number}: unknown group.")
            entry["group"] = group
        clean.append(entry)
    return clean


def _groups_named(stages: list) -> set[str]:
    """The existing groups among those the stages name, in one query (none without a group stage)."""
    names = {
        stage["group"]
        for stage in stages
        if isinstance(stage, dict)
        and stage.get("approver") == ApproverSource.GROUP
        and isinstance(stage.get("group"), str)
    }
    return set(Group.objects.filter(name__in=names).values_list("name", flat=True)) if names else set()
