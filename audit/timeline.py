"""A timeline: everything the trail says about one object and what hangs off it (an identity's
requests, decisions, grants, their use and removal), in the chain's order.

The apps above say what hangs off what (`register_related`, in their `audit_names` modules). A page
of a timeline is one UNION ALL of index lookups, one branch per kind of related object, each reading
the `(target_type, target_id)` index for the ids a subquery selects and keeping only its first
rows past the page's cursor; an OR of those subqueries would not use the index (PostgreSQL cannot
turn OR-ed sublinks into joins) and would scan the whole trail.
"""

import operator
from collections import defaultdict
from collections.abc import Callable
from functools import reduce

from django.db import connection
from django.db.models import CharField, QuerySet
from django.db.models.functions import Cast

from .models import AuditEvent
from .sentences import discover
from .trail_pages import Slice, ordered_slice

# subject type -> related target type -> the related objects of one subject (a queryset)
_RELATED: dict[str, dict[str, Callable[[int], QuerySet]]] = defaultdict(dict)


def register_related(subject_type: str, target_type: str, objects: Callable[[int], QuerySet]) -> None:
    """Events about the `target_type` objects that `objects(subject_pk)` selects are on the subject's timeline."""
    _RELATED[subject_type][target_type] = objects


def _branches(subject_type: str, pk: int) -> list[QuerySet[AuditEvent]]:
    discover()
    branches = [AuditEvent.objects.filter(target_type=subject_type, target_id=str(pk))]
    for target_type, objects in sorted(_RELATED.get(subject_type, {}).items()):
        keys = objects(pk).order_by().annotate(audit_key=Cast("pk", output_field=CharField())).values("audit_key")
        branches.append(AuditEvent.objects.filter(target_type=target_type, target_id__in=keys))
    return branches


def timeline_slice(subject_type: str, pk: int, *, oldest_first: bool = False) -> Slice:
    """Pages of the subject's timeline (`audit.trail_pages.trail_page`), newest or oldest first."""
    # The subject's own events are named by a literal id, which the planner's statistics know; a related
    # kind's by a subquery, which they do not: those are sorted once found (see `ordered_slice`).
    if not connection.features.supports_slicing_ordering_in_compound:
        # SQLite (`make run`) takes no LIMIT inside a UNION: there the branches are one query, ORed.
        return ordered_slice(reduce(operator.or_, _branches(subject_type, pk)), newest_first=not oldest_first)
    own, *related = _branches(subject_type, pk)
    cuts = [ordered_slice(own, newest_first=not oldest_first)]
    cuts += [ordered_slice(branch, newest_first=not oldest_first, few=True) for branch in related]

    def cut(*, after: int | None = None, before: int | None = None, reverse: bool = False, limit: int, counting=False):
        parts = [each(after=after, before=before, reverse=reverse, limit=limit, counting=counting) for each in cuts]
        union = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
        if counting:  # each branch holds at most `limit`; Django cannot count an ordered, sliced union
            return union
        older = oldest_first == reverse  # walking towards older events
        return union.order_by("-seq" if older else "seq")[:limit]

    return cut


def events_concerning(subject_type: str, pk: int) -> QuerySet[AuditEvent]:
    """The whole timeline, newest first, as one query (for a report or a test; pages use `timeline_slice`)."""
    branches = [branch.order_by() for branch in _branches(subject_type, pk)]
    union = branches[0].union(*branches[1:], all=True) if len(branches) > 1 else branches[0]
    return union.order_by("-seq")
