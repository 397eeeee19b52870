"""The approval stage builder's htmx endpoint: the builder again after one change, with its preview.

It writes nothing: the entitlement form saves the stages through the catalogue service. Whoever may
edit the entitlement (or, for a new one, add entitlements to the system) may use it.
"""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from . import policies, selectors, stage_builder
from .models import Entitlement, System


def _context(request) -> tuple[Entitlement | None, System | None, str]:
    """The entitlement being edited or the system one is being added to, checked; and the builder's URL."""
    url = reverse("governance:approval_stages_builder")
    entitlement_id, system_id = request.GET.get("entitlement", ""), request.GET.get("system", "")
    if entitlement_id.isdigit():
        entitlement = selectors.entitlement_list(user=request.user).filter(pk=int(entitlement_id)).first()
        if entitlement is None:
            raise Http404("No such entitlement.")
        if not policies.can_edit_entitlement(request.user, entitlement):
            raise PermissionDenied("Only the entitlement's owners or an admin may change its approval stages.")
        return entitlement, entitlement.system, f"{url}?entitlement={entitlement.pk}"
    if system_id.isdigit():
        system = selectors.system_list(user=request.user).filter(pk=int(system_id)).first()
        if system is None:
            raise Http404("No such system.")
        if not policies.can_edit_system(request.user, system):
            raise PermissionDenied("Only the system's owner or an admin may add entitlements to it.")
        return None, system, f"{url}?system={system.pk}"
    if not policies.is_admin(request.user):
        raise PermissionDenied("Say which entitlement or system the stages are for.")
    return None, None, url


@login_required
@require_GET
def approval_stages_builder(request):
    """The builder for the stages sent (`stage_*`), after `stage_op` (add, remove-N, up-N, down-N)."""
    entitlement, system, url = _context(request)
    stages = stage_builder.posted_stages(request.GET) or []
    stages, focus = stage_builder.apply_operation(stages, request.GET.get("stage_op", ""))
    groups = stage_builder.group_names()
    errors = stage_builder.stage_errors(stages, set(groups)) if "stage_op" not in request.GET else {}
    built = stage_builder.builder(
        stages, url=url, entitlement=entitlement, system=system, errors=errors, focus=focus, groups=groups
    )
    return render(request, "governance/partials/stage_builder.html", {"builder": built})
