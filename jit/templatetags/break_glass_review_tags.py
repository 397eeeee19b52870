"""The dashboard panel of break-glass reviews still open: `{% load break_glass_review_tags %}{% break_glass_reviews_panel %}`.

An unreviewed activation stays in sight until someone other than its holder reviews it: its reviewers
see the ones waiting for them, auditors and admins every unreviewed one (overdue ones flagged).
A tag rather than view context, so any dashboard includes it with one line; it costs one query (the
rows waiting for this person, with their count), and one more for auditors and admins (every open review).
Both are built once per process (`jit.selectors.panel_rows`): building them cost ~1.5 ms of CPU a page.
"""

from dataclasses import dataclass
from datetime import datetime

from django import template
from django.db.models import Count, Q, QuerySet, Window

from audit.kernel import clock
from audit.kernel.links import links_for
from governance import policies
from governance.roles import group_names, remember_group_names
from governance.templatetags.grant_tags import timeleft

from ..models import BreakGlassActivation
from ..selectors import login_stand_in, panel_rows
from ..selectors_break_glass_reports import reads_all_break_glass
from ..services.break_glass_reviews import reviewable_q

register = template.Library()

SHOWN = 5
# The columns a row shows (jit/break_glass_review_panel.html): only these are read.
ROW_COLUMNS = (
    "pk",
    "incident_reference",
    "is_drill",
    "review_due_at",
    "identity__name",
    "entitlement__name",
    "entitlement__system__name",
)


@dataclass(frozen=True, slots=True)
class ReviewShown:
    """An activation waiting for review, as the panel lists it: what it was, and when its review is due."""

    pk: int
    url: str
    label: str
    is_drill: bool
    overdue: bool
    due_in: str


def review_panel(user) -> dict:
    """What the panel shows this user: `show` False when there is nothing for them to see."""
    if not getattr(user, "is_authenticated", False):
        return {"show": False}
    now = clock.now()
    me = policies.identity_of(user)
    # The first rows and how many in all, in one query: the counts are taken over every row before the limit.
    shape = (user.is_superuser, tuple(sorted(group_names(user))), None if me is None else me.status)
    found = panel_rows(_waiting_query, shape, user.pk, None if me is None else me.pk, now)
    counts = {"total": found[0][-2], "overdue": found[0][-1]} if found else {"total": 0, "overdue": 0}
    reads_all = reads_all_break_glass(user)
    everyone = None
    if reads_all:
        total, overdue = (panel_rows(_everyone_query, (), now) or [(0, 0)])[0]
        everyone = {"total": total, "overdue": overdue}
    if not counts["total"] and not (everyone and everyone["total"]) and not reads_all:
        return {"show": False}
    url = links_for("jit:break_glass_review_detail")
    rows = [_shown(row[: len(ROW_COLUMNS)], url, now) for row in found]
    return {"show": True, "mine": counts, "all": everyone, "rows": rows, "now": now}


def _shown(row: tuple, url, now: datetime) -> ReviewShown:
    pk, incident, is_drill, due, holder, entitlement, system = row
    label = f"{holder} · {system} / {entitlement} · {incident}"
    return ReviewShown(pk, url(pk), label, is_drill, due <= now, timeleft(due))


def _open_reviews() -> QuerySet[BreakGlassActivation]:
    return BreakGlassActivation.objects.filter(outcome="")


def _waiting_query(is_superuser, groups, status, user_id, identity_id, now) -> QuerySet:
    """The open reviews this login may make (`reviewable_q`, which reads its roles, groups and identity:
    the query's shape), soonest due first, with how many in all and how many overdue."""
    login = login_stand_in(user_id, identity_id, status, is_superuser=is_superuser)
    remember_group_names(login, groups)
    overdue = Q(review_due_at__lte=now)
    return (
        _open_reviews()
        .filter(reviewable_q(login))
        .annotate(total=Window(Count("pk")), overdue=Window(Count("pk", filter=overdue)))
        .order_by("review_due_at", "pk")
        .values_list(*ROW_COLUMNS, "total", "overdue")[:SHOWN]
    )


def _everyone_query(now) -> QuerySet:
    """Every open review, and how many overdue: one row (none when there is no open review)."""
    counts = {"total": Count("pk"), "overdue": Count("pk", filter=Q(review_due_at__lte=now))}
    return _open_reviews().order_by().values("outcome").annotate(**counts).values_list("total", "overdue")


@register.inclusion_tag("jit/break_glass_review_panel.html", takes_context=True)
def break_glass_reviews_panel(context) -> dict:
    request = context.get("request")
    return {"panel": review_panel(getattr(request, "user", None))}
