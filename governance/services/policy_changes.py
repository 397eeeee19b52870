"""Loosening a high or critical entitlement's policy takes two people: one asks, another admin approves.

`entitlement_update` applies what tightens or is neutral at once and hands the loosening fields here
(`policy_change_hold`); they wait as a `PolicyChange` until an admin other than the one who asked
approves (applied then, with before and after audited) or rejects it, or the asker withdraws it.
"""

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils.dateparse import parse_duration
from django.utils.duration import duration_iso_string

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import ActorLike, acting_user, audit_event_record, state_change

from .. import policies
from ..choices import LifecycleStatus
from ..errors import InvalidTransition, PermissionRefused, ValidationFailed
from ..locks import lock, lock_entitlement
from ..models import Entitlement, PolicyChange, PolicyChangeStatus
from ..roles import Role
from .common import full_clean_or_fail
from .notifications import notify

DURATION_FIELDS = frozenset({"max_duration"})


def _stored(name: str, value: Any) -> Any:
    """A field's value as a JSON document holds it: durations as the audit trail writes them (ISO 8601)."""
    if name in DURATION_FIELDS and isinstance(value, timedelta):
        return duration_iso_string(value)
    return value


def _loaded(name: str, value: Any) -> Any:
    if name in DURATION_FIELDS and value is not None:
        return parse_duration(value)
    return value


def _other_admins(user) -> list:
    users = get_user_model().objects.filter(is_active=True, groups__name=Role.ADMIN).exclude(pk=user.pk)
    return list(users.distinct().order_by("pk"))


def policy_change_hold(
    *,
    entitlement: Entitlement,
    actor: ActorLike,
    before: dict[str, Any],
    after: dict[str, Any],
    loosens: dict[str, str],
) -> PolicyChange:
    """Keep a loosening to be approved; called by `entitlement_update` inside its transaction, the entitlement locked."""
    user = acting_user(actor)
    pending = PolicyChange.objects.filter(entitlement=entitlement, status=PolicyChangeStatus.PENDING).first()
    if pending is not None:
        raise InvalidTransition(
            f"A loosening of {entitlement} (#{pending.pk}) is already waiting for approval: "
            "have it decided or withdraw it first."
        )
    change = PolicyChange.objects.create(
        entitlement=entitlement,
        before={name: _stored(name, before[name]) for name in loosens},
        after={name: _stored(name, after[name]) for name in loosens},
        loosens=[f"{name}: {words}" for name, words in loosens.items()],
        requested_by=user,
        requested_at=clock.database_now(),
    )
    audit_event_record(
        actor=actor,
        action=AuditAction.POLICY_CHANGE_PROPOSED,
        target=entitlement,
        data={"policy_change": change.pk, "before": change.before, "after": change.after, "loosens": change.loosens},
    )
    notify(
        recipients=_other_admins(user),
        kind="policy_change",
        subject=f"Approve a loosening of {entitlement}?",
        body=f"{user} asks to change {entitlement}: {'; '.join(change.loosens)}.",
        link=reverse("governance:entitlement_detail", args=[entitlement.pk]),
        key=f"policy-change:{change.pk}:asked",
    )
    return change


def _locked_pending(change_id: int) -> tuple[PolicyChange, Entitlement]:
    """The change and its entitlement, locked in the documented order (entitlement first)."""
    entitlement_id = PolicyChange.objects.filter(pk=change_id).values_list("entitlement_id", flat=True).first()
    if entitlement_id is None:
        raise ValidationFailed(f"Policy change {change_id} does not exist.")
    entitlement = lock_entitlement(entitlement_id)
    change = lock(PolicyChange, change_id)
    if change.status != PolicyChangeStatus.PENDING:
        raise InvalidTransition(f"{change} is already {change.get_status_display().lower()}.")
    return change, entitlement


def _require_second_admin(actor: ActorLike, change: PolicyChange, verb: str) -> None:
    user = acting_user(actor)
    if user is None or not policies.is_admin(user):
        raise PermissionRefused(f"Only an admin may {verb} a policy change.")
    if user.pk == change.requested_by_id:
        raise PermissionRefused(f"You asked for this change: another admin must {verb} it.")


def _close(change: PolicyChange, actor: ActorLike, status: str, action: str, comment: str) -> PolicyChange:
    change.status, change.decided_by, change.decided_at = status, acting_user(actor), clock.database_now()
    change.comment = comment
    change.save(update_fields=["status", "decided_by", "decided_at", "comment"])
    audit_event_record(
        actor=actor,
        action=action,
        target=change.entitlement,
        data={"policy_change": change.pk, "before": change.before, "after": change.after, "comment": comment},
    )
    return change


@state_change
def policy_change_approve(*, change_id: int, actor: ActorLike, comment: str = "") -> PolicyChange:
    """Apply a held loosening: by an admin other than the one who asked, on the policy it was asked against."""
    change, entitlement = _locked_pending(change_id)
    _require_second_admin(actor, change, "approve")
    if entitlement.status != LifecycleStatus.ACTIVE:
        raise InvalidTransition(f"{entitlement} is retired.")
    current = {name: _stored(name, getattr(entitlement, name)) for name in change.before}
    if current != change.before:
        raise InvalidTransition(
            f"{entitlement} changed since this was asked: reject it, and ask again against its policy today."
        )
    for name, value in change.after.items():
        setattr(entitlement, name, _loaded(name, value))
    full_clean_or_fail(entitlement, exclude=["owner", "system"])
    entitlement.save()
    _close(change, actor, PolicyChangeStatus.APPLIED, AuditAction.POLICY_CHANGE_APPROVED, comment)
    audit_event_record(
        actor=actor,
        action=AuditAction.ENTITLEMENT_UPDATED,
        target=entitlement,
        data={"before": change.before, "after": change.after, "policy_change": change.pk},
    )
    _tell_the_asker(change, "approved")
    return change


@state_change
def policy_change_reject(*, change_id: int, actor: ActorLike, comment: str) -> PolicyChange:
    """Refuse a held loosening (another admin); the entitlement keeps its policy."""
    change, _ = _locked_pending(change_id)
    _require_second_admin(actor, change, "reject")
    change = _close(change, actor, PolicyChangeStatus.REJECTED, AuditAction.POLICY_CHANGE_REJECTED, comment)
    _tell_the_asker(change, "rejected")
    return change


@state_change
def policy_change_withdraw(*, change_id: int, actor: ActorLike, comment: str = "") -> PolicyChange:
    """The asker takes their own held loosening back."""
    change, _ = _locked_pending(change_id)
    user = acting_user(actor)
    if user is None or user.pk != change.requested_by_id:
        raise PermissionRefused("Only the person who asked for a policy change may withdraw it.")
    return _close(change, actor, PolicyChangeStatus.WITHDRAWN, AuditAction.POLICY_CHANGE_WITHDRAWN, comment)


def _tell_the_asker(change: PolicyChange, verb: str) -> None:
    notify(
        recipients=[change.requested_by],
        kind="policy_change",
        subject=f"Your change of {change.entitlement} was {verb}",
        body=change.comment,
        link=reverse("governance:entitlement_detail", args=[change.entitlement_id]),
        key=f"policy-change:{change.pk}:{verb}",
    )
