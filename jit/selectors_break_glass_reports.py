"""What the break-glass review, report and drill pages read.

Reviews: a reviewer sees the activations they may review; auditors and admins read them all.
Reports: activations over a period, each with how long the access lasted and how long its review
took, computed by the database so a page costs the same few queries whatever its rows; the CSV
streams the same rows from a cursor.
"""

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, DateTimeField, DurationField, ExpressionWrapper, F, Q, QuerySet
from django.db.models.functions import Coalesce, Least

from audit.kernel import clock
from audit.models import AuditEvent
from governance import policies as inventory
from governance.roles import Role, has_role

from .choices import DrillStatus, ReviewOutcome
from .models import BreakGlassActivation, BreakGlassDrill
from .services.break_glass_reviews import reviewable_q

CHUNK = 2000
WINDOW_EVENTS_SHOWN = 300
# Events a little after the cap still belong to the window: the sweep confirming the expiry, the
# connector's answer.
WINDOW_SLACK = timedelta(minutes=15)


def reads_all_break_glass(user) -> bool:
    """Auditors and admins read every activation, its review and the reports."""
    return has_role(user, Role.AUDITOR, Role.ADMIN)


#
# Reviews
#
def reviews_visible_to(user) -> QuerySet[BreakGlassActivation]:
    """Every activation for auditors and admins; for others those they may review (never their own)."""
    activations = BreakGlassActivation.objects.all()
    if reads_all_break_glass(user):
        return activations
    return activations.filter(reviewable_q(user))


def review_rows(queryset: QuerySet) -> QuerySet[BreakGlassActivation]:
    """What a review or report row shows, loaded with the rows."""
    return queryset.select_related(
        "identity",
        "entitlement__system",
        "grant",
        "reviewer__identity",
        "reviewed_by__identity",
        "activated_by__identity",
    ).annotate(
        ended_at=Least(Coalesce(F("grant__revoked_at"), F("ends_at")), F("ends_at"), output_field=DateTimeField()),
        held_for=ExpressionWrapper(
            Least(Coalesce(F("grant__revoked_at"), F("ends_at")), F("ends_at")) - F("activated_at"),
            output_field=DurationField(),
        ),
        time_to_review=ExpressionWrapper(F("reviewed_at") - F("activated_at"), output_field=DurationField()),
        drill_pk=F("drill__pk"),
    )


def open_reviews_for(user) -> QuerySet[BreakGlassActivation]:
    """Open reviews this user may decide (none they held or made)."""
    return BreakGlassActivation.objects.filter(outcome="").filter(reviewable_q(user))


def window_end(activation: BreakGlassActivation) -> datetime:
    ends = [activation.ends_at]
    if activation.grant.revoked_at is not None:
        ends.append(activation.grant.revoked_at)
    return min(ends) + WINDOW_SLACK


def window_events(activation: BreakGlassActivation, *, limit: int = WINDOW_EVENTS_SHOWN) -> list[AuditEvent]:
    """Every audit event of the grant and of the activation, and everything its holder (or whoever broke
    glass for it) did or had done to them between activation and end, oldest first."""
    holder = activation.identity
    start, end = activation.activated_at - timedelta(seconds=1), window_end(activation)
    actors = Q(actor_identity_id=holder.pk) | Q(target_type="governance.identity", target_id=str(holder.pk))
    for user_id in {holder.user_id, activation.activated_by_id} - {None}:
        actors |= Q(actor_user_id=user_id)
    about = Q(target_type="governance.grant", target_id=str(activation.grant_id)) | Q(
        target_type=BreakGlassActivation._meta.label_lower, target_id=str(activation.pk)
    )
    events = AuditEvent.objects.filter(about | (actors & Q(occurred_at__gte=start, occurred_at__lte=end)))
    return list(events.order_by("seq")[:limit])


#
# Reports
#
class Reviewed:
    YES, NO = "yes", "no"


def activations_report(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    outcome: str = "",
    reviewed: str = "",
    drill: str = "",
    system_id: int | None = None,
    entitlement_id: int | None = None,
) -> QuerySet[BreakGlassActivation]:
    """Activations in [since, until) by activation time, filtered; the rows annotated by `review_rows`."""
    rows = BreakGlassActivation.objects.all()
    if since is not None:
        rows = rows.filter(activated_at__gte=since)
    if until is not None:
        rows = rows.filter(activated_at__lt=until)
    if outcome:
        rows = rows.filter(outcome=outcome)
    if reviewed == Reviewed.YES:
        rows = rows.exclude(outcome="")
    elif reviewed == Reviewed.NO:
        rows = rows.filter(outcome="")
    if drill == "yes":
        rows = rows.filter(is_drill=True)
    elif drill == "no":
        rows = rows.filter(is_drill=False)
    if system_id:
        rows = rows.filter(entitlement__system_id=system_id)
    if entitlement_id:
        rows = rows.filter(entitlement_id=entitlement_id)
    return review_rows(rows)


def report_summary(rows: QuerySet, *, now: datetime | None = None) -> dict[str, int]:
    """Counts over the filtered rows, in one query."""
    now = now or clock.now()
    return rows.order_by().aggregate(
        total=Count("pk"),
        unreviewed=Count("pk", filter=Q(outcome="")),
        overdue=Count("pk", filter=Q(outcome="", review_due_at__lte=now)),
        not_justified=Count("pk", filter=Q(outcome=ReviewOutcome.NOT_JUSTIFIED)),
        follow_up=Count("pk", filter=Q(outcome=ReviewOutcome.FOLLOW_UP)),
        drills=Count("pk", filter=Q(is_drill=True)),
    )


CSV_HEADER = [
    "activation",
    "holder",
    "holder kind",
    "system",
    "entitlement",
    "incident reference",
    "reason",
    "step-up",
    "activated by",
    "activated at",
    "ends at (cap)",
    "ended at",
    "duration (minutes)",
    "drill",
    "review due",
    "review outcome",
    "review notes",
    "reviewer",
    "reviewed at",
    "time to review (hours)",
    "escalations",
]


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""


def _minutes(delta: timedelta | None) -> str:
    return "" if delta is None else str(round(delta.total_seconds() / 60))


def _hours(delta: timedelta | None) -> str:
    return "" if delta is None else f"{delta.total_seconds() / 3600:.1f}"


def csv_rows(rows: QuerySet, *, now: datetime | None = None) -> Iterator[list[Any]]:
    """One line per activation, read from a cursor in chunks; an unreviewed one says so, and whether it is
    overdue."""
    now = now or clock.now()
    values = rows.values_list(
        "pk",
        "identity__name",
        "identity__kind",
        "entitlement__system__name",
        "entitlement__name",
        "incident_reference",
        "reason",
        "step_up",
        "activated_by__username",
        "activated_at",
        "ends_at",
        "ended_at",
        "held_for",
        "is_drill",
        "review_due_at",
        "outcome",
        "outcome_notes",
        "reviewed_by__username",
        "reviewed_at",
        "time_to_review",
        "escalation_level",
    )
    labels = dict(ReviewOutcome.choices)
    for row in values.iterator(chunk_size=CHUNK):
        (pk, holder, kind, system, entitlement, incident, reason, step_up, by, activated, ends, ended, held,
         drill, due, outcome, notes, reviewer, reviewed, to_review, escalations) = row  # fmt: skip
        running = ends > now and ended == ends
        if outcome:
            outcome_text = str(labels.get(outcome, outcome))
        else:
            outcome_text = "UNREVIEWED (overdue)" if due <= now else "UNREVIEWED"
        yield [
            pk,
            holder,
            kind,
            system,
            entitlement,
            incident,
            reason,
            step_up,
            by or "",
            _iso(activated),
            _iso(ends),
            "" if running else _iso(ended),
            "" if running else _minutes(held),
            "drill" if drill else "",
            _iso(due),
            outcome_text,
            notes,
            reviewer or "",
            _iso(reviewed),
            _hours(to_review),
            escalations,
        ]


#
# Drills
#
def drills_listed(*, status: str = "", since: datetime | None = None, until: datetime | None = None) -> QuerySet:
    drills = BreakGlassDrill.objects.select_related(
        "eligibility__entitlement__system", "eligibility__identity", "activation", "created_by"
    )
    if status:
        drills = drills.filter(status=status)
    if since is not None:
        drills = drills.filter(scheduled_for__gte=since)
    if until is not None:
        drills = drills.filter(scheduled_for__lt=until)
    return drills


def drill_counts(drills: QuerySet) -> dict[str, int]:
    return drills.order_by().aggregate(
        **{status: Count("pk", filter=Q(status=status)) for status in DrillStatus.values}, total=Count("pk")
    )


def may_read_reports(user) -> bool:
    return reads_all_break_glass(user)


def may_manage_drills(user) -> bool:
    return inventory.is_admin(user) and not inventory.is_read_only(user)
