"""Held loosenings of an entitlement's policy: shown on its page, decided by another admin."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect
from django.utils.dateparse import parse_duration
from django.views.decorators.http import require_POST

from . import auto_approval, policies, selectors
from .models import Entitlement, PolicyChange, PolicyChangeStatus
from .services import policy_changes
from .templatetags.grant_tags import approver_label, duration, kind_labels


def _shown(name: str, value) -> str:
    """A policy value as the entitlement page shows it."""
    if name == "max_duration":
        return duration(parse_duration(value)) if value else "the risk tier's default"
    if name == "approval_stages":
        return "; ".join(
            approver_label(stage.get("approver", ""))
            + (f" “{stage['group']}”" if stage.get("group") else "")
            + (f", {stage['quorum']} approvers" if int(stage.get("quorum") or 1) > 1 else "")
            for stage in value or []
        )
    if name == "allowed_identity_kinds":
        return kind_labels(value)
    if name.startswith("auto_approve_") and (words := auto_approval.shown(name, value)) is not None:
        return words
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def pending_change_context(user, entitlement: Entitlement) -> dict:
    """What the entitlement page shows of a loosening waiting for approval, and what `user` may do with it."""
    change = (
        PolicyChange.objects.select_related("requested_by")
        .filter(entitlement=entitlement, status=PolicyChangeStatus.PENDING)
        .first()
    )
    if change is None:
        return {"pending_change": None}
    fields = Entitlement._meta
    return {
        "pending_change": change,
        "pending_rows": [
            {
                "label": fields.get_field(name).verbose_name,
                "now": _shown(name, change.before[name]),
                "asked": _shown(name, value),
            }
            for name, value in change.after.items()
        ],
        "may_decide_change": policies.is_admin(user) and user.pk != change.requested_by_id,
        "may_withdraw_change": user.pk == change.requested_by_id,
    }


DECISIONS = {
    "approve": (policy_changes.policy_change_approve, "Policy change approved and applied."),
    "reject": (policy_changes.policy_change_reject, "Policy change rejected; the policy stays as it was."),
    "withdraw": (policy_changes.policy_change_withdraw, "Policy change withdrawn."),
}


@login_required
@require_POST
def policy_change_decide(request, pk: int, decision: str):
    from .views import _attempt

    change = get_object_or_404(PolicyChange, pk=pk)
    # Only those who may see the entitlement learn that the change exists.
    get_object_or_404(selectors.entitlement_list(user=request.user), pk=change.entitlement_id)
    service, success = DECISIONS[decision]
    comment = request.POST.get("comment", "").strip()
    if decision == "reject" and not comment:
        messages.error(request, "Say why you reject it: the person who asked reads it.")
    elif len(comment) > 1000:
        messages.error(request, "The comment is too long (at most 1000 characters).")
    else:
        _attempt(request, lambda: service(change_id=change.pk, actor=request.user, comment=comment), success)
    return redirect("governance:entitlement_detail", change.entitlement_id)
