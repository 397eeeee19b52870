"""Break-glass pages: activation (eligible people), an activation's page, and eligibility (admins).

Views parse input, call one service and render; every page checks who may see it (others get 403
or 404) and a refusal is shown beside its field.
"""

from datetime import UTC

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_otp import user_has_device

from audit.kernel.htmx import render_list
from audit.kernel.pagination import CappedCountPaginator
from audit.models import AuditEvent
from governance import policies as inventory
from governance.errors import DomainError
from governance.roles import Role, has_role

from . import selectors_break_glass as selectors
from .forms_break_glass import (
    ActivationForm,
    EligibilityFilterForm,
    EligibilityForm,
    RenewForm,
    RevokeForm,
    add_service_errors,
)
from .models import BreakGlassActivation, BreakGlassEligibility
from .policy import human_duration
from .selectors_break_glass_reports import reviews_visible_to
from .services.break_glass import (
    break_glass_activate,
    eligibility_create,
    eligibility_renew,
    eligibility_revoke,
    eligibility_update,
)

PAGE_SIZE = 25
SORTS = {
    "entitlement": "entitlement__name",
    "holder": "identity__name",
    "duration": "max_duration",
    "expires": "expires_at",
    "reviewed": "reviewed_at",
}


#
# Activation
#
@login_required
@require_http_methods(["GET", "POST"])
def break_glass(request):
    """The eligible person breaks glass: picks the access, says why, re-authenticates."""
    user = request.user
    eligibilities = selectors.eligible_entitlements(user)
    has_device = user_has_device(user, confirmed=True)
    form = ActivationForm(request.POST or None, eligibilities=eligibilities, has_device=has_device)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            activation = break_glass_activate(
                actor=user,
                eligibility_id=data["eligibility"].pk,
                incident_reference=data["incident_reference"],
                reason=data["reason"],
                password=data["password"],
                otp_token=data.get("otp_token"),
            )
        except DomainError as error:
            if not add_service_errors(form, error):
                form.add_error(None, error.message)
        else:
            messages.warning(
                request,
                f"Break-glass activated: {activation.entitlement.name} until "
                f"{activation.ends_at.astimezone(UTC):%H:%M} UTC. The reviewers, owners and security team have been told.",
            )
            return redirect("jit:break_glass_detail", pk=activation.pk)
    status = 400 if form.is_bound and form.errors else 200
    recent = list(
        selectors.activations_visible_to(user)
        .filter(activated_by=user)
        .select_related(*selectors.ACTIVATION_JOINS)
        .order_by("-activated_at", "-pk")[:10]
    )
    context = {
        "form": form,
        "has_eligibility": eligibilities.exists(),
        "has_device": has_device,
        "recent": recent,
    }
    return render(request, "jit/break_glass_activate.html", context, status=status)


@login_required
def break_glass_detail(request, pk: int):
    try:
        activation = selectors.activation_get(user=request.user, pk=pk)
    except BreakGlassActivation.DoesNotExist:
        raise Http404 from None
    grant = activation.grant
    context = {
        "activation": activation,
        "grant": grant,
        "duration": human_duration(activation.ends_at - activation.activated_at),
        "events": AuditEvent.objects.for_target(activation).order_by("seq")
        if inventory.can_view_history(request.user, grant) or has_role(request.user, Role.ADMIN, Role.AUDITOR)
        else AuditEvent.objects.none(),
        # Its reviewers, auditors and admins open the review after the fact from here; never the holder.
        "review_visible": reviews_visible_to(request.user).filter(pk=activation.pk).exists(),
    }
    return render(request, "jit/break_glass_detail.html", context)


#
# Eligibility (admins; auditors read)
#
def _require_admin(user) -> None:
    if not inventory.is_admin(user) or inventory.is_read_only(user):
        raise PermissionDenied("Only an admin may manage break-glass eligibility.")


@login_required
def eligibility_list(request):
    if not has_role(request.user, Role.ADMIN, Role.AUDITOR):
        raise PermissionDenied("Only admins and auditors see break-glass eligibility.")
    form = EligibilityFilterForm(request.GET or None)
    q = state = ""
    if form.is_valid():
        q, state = form.cleaned_data["q"], form.cleaned_data["state"]
    sort = request.GET.get("sort", "expires")
    order = SORTS.get(sort.lstrip("-"), "expires_at")
    order = f"-{order}" if sort.startswith("-") else order
    queryset = selectors.eligibility_list(user=request.user, q=q, state=state, order=order)
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "filter_form": form,
        "page_obj": CappedCountPaginator(queryset, PAGE_SIZE).get_page(request.GET.get("page")),
        "querystring": query.urlencode(),
        "can_manage": inventory.is_admin(request.user) and not inventory.is_read_only(request.user),
    }
    return render_list(
        request, "jit/break_glass_eligibility_list.html", "jit/_break_glass_eligibility_results.html", context
    )


def _eligibility(pk: int) -> BreakGlassEligibility:
    eligibility = BreakGlassEligibility.objects.select_related(*selectors.ELIGIBILITY_JOINS).filter(pk=pk).first()
    if eligibility is None:
        raise Http404
    return eligibility


def _form_page(request, *, form, title: str, submit: str, intro: str = "", eligibility=None, status=200):
    context = {
        "form": form,
        "title": title,
        "submit": submit,
        "intro": intro,
        "eligibility": eligibility,
        "back": reverse("jit:break_glass_eligibility_list"),
    }
    return render(request, "jit/break_glass_eligibility_form.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def eligibility_new(request):
    _require_admin(request.user)
    form = EligibilityForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            eligibility = eligibility_create(
                actor=request.user,
                entitlement=data["entitlement"],
                identity=data["identity"],
                group=data["group"],
                max_duration=form.max_duration,
                reviewer_group=data["reviewer_group"],
                expires_at=data["expires_at"],
                reason=data["reason"],
            )
        except DomainError as error:
            if not add_service_errors(form, error):
                form.add_error(None, error.message)
        else:
            messages.success(request, f"{eligibility} created: {eligibility.entitlement.name}.")
            return redirect("jit:break_glass_eligibility_list")
    return _form_page(
        request,
        form=form,
        title="New break-glass eligibility",
        submit="Create",
        intro="Who may break glass into which access, for how long at most, and who reviews each use.",
        status=400 if form.errors else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def eligibility_edit(request, pk: int):
    _require_admin(request.user)
    eligibility = _eligibility(pk)
    initial = {
        "max_minutes": int(eligibility.max_duration.total_seconds() // 60),
        "reviewer_group": eligibility.reviewer_group,
        "reason": eligibility.reason,
    }
    form = EligibilityForm(request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            eligibility_update(
                eligibility_id=eligibility.pk,
                actor=request.user,
                max_duration=form.max_duration,
                reviewer_group=data["reviewer_group"],
                reason=data["reason"],
            )
        except DomainError as error:
            if not add_service_errors(form, error):
                form.add_error(None, error.message)
        else:
            messages.success(request, f"{eligibility} changed.")
            return redirect("jit:break_glass_eligibility_list")
    return _form_page(
        request,
        form=form,
        title=f"Change {eligibility}",
        submit="Save",
        intro=f"{eligibility.entitlement.system.name} / {eligibility.entitlement.name} for "
        f"{eligibility.identity or 'group ' + eligibility.group}.",
        eligibility=eligibility,
        status=400 if form.errors else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def eligibility_renew_view(request, pk: int):
    _require_admin(request.user)
    eligibility = _eligibility(pk)
    form = RenewForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            eligibility_renew(
                eligibility_id=eligibility.pk, actor=request.user, expires_at=form.cleaned_data["expires_at"]
            )
        except DomainError as error:
            if not add_service_errors(form, error):
                form.add_error(None, error.message)
        else:
            messages.success(request, f"{eligibility} reviewed and renewed.")
            return redirect("jit:break_glass_eligibility_list")
    return _form_page(
        request,
        form=form,
        title=f"Review and renew {eligibility}",
        submit="Renew",
        intro=f"{eligibility.entitlement.system.name} / {eligibility.entitlement.name} for "
        f"{eligibility.identity or 'group ' + eligibility.group}; now eligible until "
        f"{eligibility.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC.",
        eligibility=eligibility,
        status=400 if form.errors else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def eligibility_revoke_view(request, pk: int):
    _require_admin(request.user)
    eligibility = _eligibility(pk)
    form = RevokeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            eligibility_revoke(eligibility_id=eligibility.pk, actor=request.user, reason=form.cleaned_data["reason"])
        except DomainError as error:
            if not add_service_errors(form, error):
                form.add_error(None, error.message)
        else:
            messages.success(request, f"{eligibility} revoked; nobody can break glass with it any more.")
            return redirect("jit:break_glass_eligibility_list")
    return _form_page(
        request,
        form=form,
        title=f"Revoke {eligibility}",
        submit="Revoke",
        intro="Nobody can break glass with it from now on; activations already made run to their end and are reviewed.",
        eligibility=eligibility,
        status=400 if form.errors else 200,
    )
