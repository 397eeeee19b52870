"""The dashboard panel of break-glass reviews still open: `{% load break_glass_review_tags %}{% break_glass_reviews_panel %}`.

An unreviewed activation stays in sight until someone other than its holder reviews it: its reviewers
see the ones waiting for them, auditors and admins every unreviewed one (overdue ones flagged).
A tag rather than view context, so any dashboard includes it with one line; it costs one query (the
rows waiting for this person, with their count), and one more for auditors and admins (every open review).
"""

from django import template
from django.db.models import Count, Q, Window

from audit.kernel import clock

from ..models import BreakGlassActivation
from ..selectors_break_glass_reports import reads_all_break_glass
from ..services.break_glass_reviews import reviewable_q

register = template.Library()

SHOWN = 5
# The columns a row shows (jit/break_glass_review_panel.html): only these are read.
ROW_FIELDS = (
    "incident_reference",
    "is_drill",
    "review_due_at",
    "identity__name",
    "entitlement__name",
    "entitlement__system__name",
)


def review_panel(user) -> dict:
    """What the panel shows this user: `show` False when there is nothing for them to see."""
    if not getattr(user, "is_authenticated", False):
        return {"show": False}
    now = clock.now()
    open_reviews = BreakGlassActivation.objects.filter(outcome="")
    # The first rows and how many in all, in one query: the counts are taken over every row before the limit.
    rows = list(
        open_reviews.filter(reviewable_q(user))
        .select_related("identity", "entitlement__system")
        .only(*ROW_FIELDS)
        .annotate(total=Window(Count("pk")), overdue=Window(Count("pk", filter=Q(review_due_at__lte=now))))
        .order_by("review_due_at", "pk")[:SHOWN]
    )
    counts = {"total": rows[0].total, "overdue": rows[0].overdue} if rows else {"total": 0, "overdue": 0}
    reads_all = reads_all_break_glass(user)
    everyone = (
        open_reviews.aggregate(total=Count("pk"), overdue=Count("pk", filter=Q(review_due_at__lte=now)))
        if reads_all
        else None
    )
    if not counts["total"] and not (everyone and everyone["total"]) and not reads_all:
        return {"show": False}
    return {"show": True, "mine": counts, "all": everyone, "rows": rows, "now": now}


@register.inclusion_tag("jit/break_glass_review_panel.html", takes_context=True)
def break_glass_reviews_panel(context) -> dict:
    request = context.get("request")
    return {"panel": review_panel(getattr(request, "user", None))}
