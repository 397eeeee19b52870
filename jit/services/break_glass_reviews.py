"""After break-glass: the review every activation opens, the chasing of it, and drills.

Break-glass needs no approval, only prior eligibility, so the review after the fact is where a
person other than the holder says whether it was justified. Nobody reviews an activation they
hold, made, or (for a machine holder) own; only its reviewer, a member of its reviewer group, or
the admins once the review is overdue and escalated to them. The review is recorded once the
emergency window is over, so the reviewer has seen every event of it.

Beat chases open reviews (a reminder every BREAK_GLASS_REMIND_EVERY; past `review_due_at` an
escalation to the admins, repeated at that interval until someone reviews). Each activation is
chased in its own short transaction under its row lock, re-checked after locking, so two beats
at once send each reminder once. Drills are scheduled and cancelled by admins; the activation
(`break_glass_activate(..., drill_id=...)`) marks a drill done, and one not carried out within a
day of its time is marked missed.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.urls import reverse

from audit.choices import AuditAction
from audit.kernel import clock
from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from audit.services import Actor, ActorLike, acting_user, audit_event_record, state_change
from governance import policies as inventory
from governance.choices import GrantStatus, IdentityKind, IdentityStatus
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.locks import lock
from governance.models import Identity
from governance.roles import Role, group_names
from governance.services.notifications import notify

from ..choices import DrillStatus, ReviewOutcome
from ..models import BreakGlassActivation, BreakGlassDrill, BreakGlassEligibility

User = get_user_model()

NOTES_NEEDED = (ReviewOutcome.NOT_JUSTIFIED, ReviewOutcome.FOLLOW_UP)
ENDED_STATUSES = (GrantStatus.EXPIRED, GrantStatus.REVOKED, GrantStatus.PROVISION_FAILED)
DRILL_GRACE = timedelta(days=1)

HOLDER_REFUSAL = "You cannot review a break-glass activation you held, made, or that was for an identity you own."
NOT_REVIEWER = "Only the activation's reviewers (or the admins once its review is overdue) review it."


def review_url(activation_id: int) -> str:
    return reverse("jit:break_glass_review_detail", args=[activation_id])


#
# Who reviews
#
def is_holder(user, activation: BreakGlassActivation) -> bool:
    """The user held the access, made the activation, or owns the machine that held it."""
    if not getattr(user, "is_authenticated", False):
        return False
    if activation.activated_by_id == user.pk:
        return True
    holder = activation.identity
    if holder.user_id is not None and holder.user_id == user.pk:
        return True
    if holder.kind != IdentityKind.HUMAN:
        me = inventory.identity_of(user)
        return me is not None and me.pk in (holder.owner_id, holder.backup_owner_id)
    return False


def _in_group(user, group: str) -> bool:
    return bool(group) and user.groups.filter(name=group).exists()


def review_refusal(user, activation: BreakGlassActivation) -> str | None:
    """Why this user may not record this activation's review, or None.

    The holder's refusal comes first: being in the reviewer group does not make one's own use reviewable.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return NOT_REVIEWER
    if is_holder(user, activation):
        return HOLDER_REFUSAL
    if inventory.is_read_only(user):
        return "An auditor reads and changes nothing."
    status = Identity.objects.filter(user_id=user.pk).values_list("status", flat=True).first()
    if status is not None and status != IdentityStatus.ACTIVE:
        return f"Your identity is {IdentityStatus(status).label.lower()}; you cannot review."
    if activation.reviewer_id == user.pk or _in_group(user, activation.reviewer_group):
        return None
    if activation.escalation_level > 0 and inventory.is_admin(user):
        return None
    return NOT_REVIEWER


def may_review(user, activation: BreakGlassActivation) -> bool:
    return review_refusal(user, activation) is None


def reviewable_q(user) -> Q:
    """Activations this user may review (as a filter): theirs to review, and none they held or made."""
    if not getattr(user, "is_authenticated", False) or inventory.is_read_only(user):
        return Q(pk__in=[])
    mine = Q(reviewer=user) | Q(reviewer_group__in=sorted(group_names(user)))
    if inventory.is_admin(user):
        mine |= Q(escalation_level__gt=0)
    held = Q(activated_by=user) | Q(identity__user=user)
    me = inventory.identity_of(user)
    if me is not None:
        held |= ~Q(identity__kind=IdentityKind.HUMAN) & (Q(identity__owner=me) | Q(identity__backup_owner=me))
    return mine & ~held


def reviewers_of(activation: BreakGlassActivation) -> list:
    """Who may review it now, as notices go to them: the named reviewer and the group's active members,
    never the holder, an auditor, or someone suspended."""
    users = User.objects.filter(is_active=True).exclude(
        identity__status__in=[IdentityStatus.SUSPENDED, IdentityStatus.OFFBOARDED]
    )
    who = Q(pk=activation.reviewer_id) if activation.reviewer_id else Q(pk__in=[])
    if activation.reviewer_group:
        who |= Q(groups__name=activation.reviewer_group)
    candidates = users.filter(who).distinct().order_by("pk")
    return [user for user in candidates if not is_holder(user, activation) and not inventory.is_read_only(user)]


def _admins(activation: BreakGlassActivation) -> list:
    admins = User.objects.filter(is_active=True, groups__name=Role.ADMIN).distinct().order_by("pk")
    return [user for user in admins if not is_holder(user, activation)]


def window_over(activation: BreakGlassActivation, now: datetime | None = None) -> bool:
    """The emergency access has ended (its hard cap passed, or the grant ended early)."""
    now = clock.now() if now is None else now
    return activation.ends_at <= now or activation.grant.status in ENDED_STATUSES


#
# The review
#
def _lock_activation(activation_id: int) -> BreakGlassActivation:
    activation = lock(BreakGlassActivation, activation_id)
    # Read with the lock held: what the checks below look at.
    return BreakGlassActivation.objects.select_related("identity", "grant", "entitlement").get(pk=activation.pk)


@state_change
def break_glass_review_record(
    *, activation_id: int, actor: ActorLike, outcome: str, notes: str
) -> BreakGlassActivation:
    """Record the one review of an activation: justified, not justified, or needs follow-up.

    Input is checked before anything is written; a second review (a lost race, a replay) is a
    conflict, never a second outcome. Notes are required when it was not justified or needs a
    follow-up: whoever reads the report must learn why.
    """
    user = acting_user(actor)
    notes = (notes or "").strip()
    errors: dict[str, list[str]] = {}
    if outcome not in ReviewOutcome.values:
        errors["outcome"] = ["Choose justified, not justified or needs follow-up."]
    elif outcome in NOTES_NEEDED and not notes:
        errors["notes"] = [f"Say why: notes are required when the outcome is “{ReviewOutcome(outcome).label}”."]
    if len(notes) > FREE_TEXT_MAX_LENGTH:
        errors["notes"] = [f"Notes are too long ({FREE_TEXT_MAX_LENGTH} characters at most)."]
    activation = _lock_activation(activation_id)
    refusal = review_refusal(user, activation)
    if refusal is not None:
        raise PermissionRefused(refusal)
    if activation.outcome:
        reviewer = activation.reviewed_by.get_username() if activation.reviewed_by_id else "someone"
        raise InvalidTransition(f"This activation was already reviewed by {reviewer}.")
    if errors:
        raise ValidationFailed("The review was not recorded: correct the fields shown.", field_errors=errors)
    now = clock.database_now()
    if not window_over(activation, now):
        raise InvalidTransition(
            f"The emergency access runs until {activation.ends_at:%Y-%m-%d %H:%M} UTC: review it once it has ended, "
            "when every event of the window is known."
        )
    activation.outcome, activation.outcome_notes = outcome, notes
    activation.reviewed_by, activation.reviewed_at = user, now
    activation.save(update_fields=["outcome", "outcome_notes", "reviewed_by", "reviewed_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.BREAK_GLASS_REVIEWED,
        target=activation,
        data={
            "outcome": outcome,
            "notes": notes,
            "grant": activation.grant_id,
            "holder": activation.identity_id,
            "incident_reference": activation.incident_reference,
            "overdue": now > activation.review_due_at,
            "drill": activation.is_drill,
        },
    )
    if outcome in NOTES_NEEDED:
        notify(
            recipients=[*_admins(activation), *_security_group()],
            kind="break_glass.review_flagged",
            subject=f"Break-glass {ReviewOutcome(outcome).label.lower()}: {activation.entitlement.name} "
            f"({activation.incident_reference})",
            body=notes,
            link=review_url(activation.pk),
            key=f"break-glass:{activation.pk}:reviewed",
        )
    return activation


def _security_group() -> list:
    group = settings.BREAK_GLASS_SECURITY_GROUP
    if not group:
        return []
    return list(User.objects.filter(is_active=True, groups__name=group).distinct().order_by("pk"))


#
# Chasing open reviews
#
def _open() -> QuerySet:
    return BreakGlassActivation.objects.filter(outcome="")


def _due_q(now: datetime) -> Q:
    """Open reviews due a notice: never chased and activated an interval ago, or chased an interval ago."""
    cutoff = now - settings.BREAK_GLASS_REMIND_EVERY
    return (
        Q(reminded_at__lte=cutoff)
        | Q(reminded_at__isnull=True, activated_at__lte=cutoff)
        | Q(review_due_at__lte=now, escalation_level=0)
    )


def _is_due(activation: BreakGlassActivation, now: datetime) -> bool:
    cutoff = now - settings.BREAK_GLASS_REMIND_EVERY
    if activation.review_due_at <= now and activation.escalation_level == 0:
        return True
    last = activation.reminded_at or activation.activated_at
    return last <= cutoff


@state_change
def break_glass_review_chase(*, activation_id: int, now: datetime | None = None) -> str:
    """Remind the reviewers of one open review, or escalate it to the admins once overdue (or when nobody
    else can review it). Returns "reminded", "escalated" or "" (nothing due: reviewed, or chased by a
    run that got there first)."""
    now = now or clock.database_now()
    activation = (
        BreakGlassActivation.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
        .filter(pk=activation_id)
        .first()
    )
    if activation is None or activation.outcome or not _is_due(activation, now):
        return ""
    reviewers = reviewers_of(activation)
    overdue = activation.review_due_at <= now
    link = review_url(activation.pk)
    what = f"{activation.entitlement.name} for {activation.identity.name} ({activation.incident_reference})"
    if overdue or not reviewers:
        level = activation.escalation_level + 1
        activation.escalation_level, activation.reminded_at = level, now
        activation.save(update_fields=["escalation_level", "reminded_at"])
        admins = _admins(activation)
        why = "overdue" if overdue else "nobody else can review it"
        notified = notify(
            recipients=[*admins, *reviewers],
            kind="break_glass.review_escalated",
            subject=f"Break-glass review {why}: {what}"[:200],
            body=f"The review was due {activation.review_due_at:%Y-%m-%d %H:%M} UTC. Review it, or make sure "
            "someone does: an unreviewed activation stays flagged on the dashboards and in the reports.",
            link=link,
            key=f"break-glass:{activation.pk}:escalation:{level}",
        )
        audit_event_record(
            actor=Actor.system(),
            action=AuditAction.BREAK_GLASS_ESCALATED,
            target=activation,
            data={
                "level": level,
                "overdue": overdue,
                "admins": [u.pk for u in admins],
                "reviewers": [u.pk for u in reviewers],
                "notified": notified,
            },
        )
        return "escalated"
    activation.reminded_at = now
    activation.save(update_fields=["reminded_at"])
    notified = notify(
        recipients=reviewers,
        kind="break_glass.review_reminder",
        subject=f"Break-glass review waiting: {what}"[:200],
        body=f"Due {activation.review_due_at:%Y-%m-%d %H:%M} UTC. Say whether the emergency access was justified.",
        link=link,
        key=f"break-glass:{activation.pk}:reminder:{now:%Y%m%d%H%M%S}",
    )
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.BREAK_GLASS_REMINDED,
        target=activation,
        data={"reviewers": [u.pk for u in reviewers], "notified": notified, "due": activation.review_due_at},
    )
    return "reminded"


def break_glass_remind_and_escalate(now: datetime | None = None) -> dict[str, int]:
    """Chase every open review due a notice, each in its own transaction (beat; safe twice or at once)."""
    now = now or clock.database_now()
    done = {"reminded": 0, "escalated": 0}
    due = _open().filter(_due_q(now)).order_by("review_due_at", "pk")
    for pk in due.values_list("pk", flat=True):
        result = break_glass_review_chase(activation_id=pk, now=now)
        if result:
            done[result] += 1
    return done


#
# Drills
#
def _require_admin(user) -> None:
    if inventory.is_read_only(user) or not inventory.is_admin(user):
        raise PermissionRefused("Only admins schedule and cancel break-glass drills.")


def eligible_people(eligibility: BreakGlassEligibility) -> list:
    """Who may break glass under this eligibility: the identity's person (or a machine's owners), or the
    group's active members."""
    if eligibility.identity_id is not None:
        identity = eligibility.identity
        if identity.kind == IdentityKind.HUMAN:
            return [identity.user] if identity.user_id else []
        return [i.user for i in (identity.owner, identity.backup_owner) if i is not None and i.user_id]
    return list(User.objects.filter(is_active=True, groups__name=eligibility.group).distinct().order_by("pk"))


@state_change
def drill_schedule(
    *, actor: ActorLike, eligibility_id: int, scheduled_for: datetime, notes: str = ""
) -> BreakGlassDrill:
    """Schedule a test of one break-glass path; whoever is eligible is told, so someone runs it."""
    _require_admin(acting_user(actor))
    eligibility = lock(BreakGlassEligibility, eligibility_id)
    now = clock.database_now()
    notes = (notes or "").strip()
    errors: dict[str, list[str]] = {}
    if not eligibility.is_active or eligibility.expires_at <= now:
        errors["eligibility"] = ["This eligibility has ended: a drill would test nothing."]
    if scheduled_for is None:
        errors["scheduled_for"] = ["Say when the drill takes place."]
    elif scheduled_for <= now:
        errors["scheduled_for"] = ["A drill is scheduled in the future."]
    elif scheduled_for >= eligibility.expires_at:
        errors["scheduled_for"] = [
            f"The eligibility ends {eligibility.expires_at:%Y-%m-%d %H:%M} UTC: schedule the drill before then."
        ]
    if len(notes) > FREE_TEXT_MAX_LENGTH:
        errors["notes"] = [f"Notes are too long ({FREE_TEXT_MAX_LENGTH} characters at most)."]
    if errors:
        raise ValidationFailed("The drill was not scheduled: correct the fields shown.", field_errors=errors)
    drill = BreakGlassDrill.objects.create(
        eligibility=eligibility, scheduled_for=scheduled_for, notes=notes, created_by=acting_user(actor)
    )
    audit_event_record(
        actor=actor,
        action=AuditAction.BREAK_GLASS_DRILL_SCHEDULED,
        target=drill,
        data={
            "eligibility": eligibility.pk,
            "entitlement": eligibility.entitlement_id,
            "scheduled_for": scheduled_for,
            "notes": notes,
        },
    )
    notify(
        recipients=eligible_people(eligibility),
        kind="break_glass.drill_scheduled",
        subject=f"Break-glass drill scheduled for {scheduled_for:%Y-%m-%d %H:%M} UTC: {eligibility.entitlement.name}"[
            :200
        ],
        body="Break glass as you would in an incident, choosing this drill, so the path is known to work: "
        f"eligibility, step-up, the connector, the alert, the expiry and the review.\n\n{notes}".strip(),
        link=reverse("jit:break_glass_drill_list"),
        key=f"break-glass-drill:{drill.pk}:scheduled",
    )
    return drill


@state_change
def drill_cancel(*, actor: ActorLike, drill_id: int, reason: str = "") -> BreakGlassDrill:
    """Cancel a drill not yet carried out; one already done or missed stays as it was."""
    _require_admin(acting_user(actor))
    drill = lock(BreakGlassDrill, drill_id)
    if drill.status != DrillStatus.SCHEDULED:
        raise InvalidTransition(
            f"This drill is {drill.get_status_display().lower()}: only a scheduled one is cancelled."
        )
    drill.status = DrillStatus.CANCELLED
    drill.save(update_fields=["status"])
    audit_event_record(
        actor=actor,
        action=AuditAction.BREAK_GLASS_DRILL_CANCELLED,
        target=drill,
        data={"eligibility": drill.eligibility_id, "scheduled_for": drill.scheduled_for, "reason": reason.strip()},
    )
    return drill


@state_change
def drill_mark_missed(*, drill_id: int, now: datetime | None = None) -> bool:
    """A drill nobody carried out within a day of its time is missed (once): the path is untested."""
    now = now or clock.database_now()
    drill = BreakGlassDrill.objects.select_for_update(skip_locked=True, no_key=True).filter(pk=drill_id).first()
    if (
        drill is None
        or drill.status != DrillStatus.SCHEDULED
        or drill.activation_id is not None
        or drill.scheduled_for + DRILL_GRACE > now
    ):
        return False
    drill.status = DrillStatus.MISSED
    drill.save(update_fields=["status"])
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.BREAK_GLASS_DRILL_MISSED,
        target=drill,
        data={"eligibility": drill.eligibility_id, "scheduled_for": drill.scheduled_for},
    )
    eligibility = BreakGlassEligibility.objects.select_related("entitlement").get(pk=drill.eligibility_id)
    notify(
        recipients=User.objects.filter(is_active=True, groups__name=Role.ADMIN).distinct().order_by("pk"),
        kind="break_glass.drill_missed",
        subject=f"Break-glass drill missed: {eligibility.entitlement.name} "
        f"(scheduled {drill.scheduled_for:%Y-%m-%d %H:%M} UTC)"[:200],
        body="Nobody broke glass for this drill within a day of its time: schedule it again.",
        link=reverse("jit:break_glass_drill_list"),
        key=f"break-glass-drill:{drill.pk}:missed",
    )
    return True


def drills_mark_missed(now: datetime | None = None) -> int:
    """Mark every scheduled drill a day past its time with no activation as missed (beat)."""
    now = now or clock.database_now()
    due = BreakGlassDrill.objects.filter(
        status=DrillStatus.SCHEDULED, activation__isnull=True, scheduled_for__lte=now - DRILL_GRACE
    ).order_by("scheduled_for", "pk")
    return sum(drill_mark_missed(drill_id=pk, now=now) for pk in due.values_list("pk", flat=True))
