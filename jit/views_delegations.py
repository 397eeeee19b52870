"""The delegations page: those one gave or received (and those of the machines one owns), a form to
let a machine act on one's behalf, and revocation. Views parse input, call one service and render."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from audit.kernel.pagination import CappedCountPaginator
from governance import policies as inventory
from governance.errors import DomainError, InvalidTransition, PermissionRefused

from . import policies
from .forms import ReasonForm, add_service_errors
from .forms_delegations import DelegationForm
from .selectors_delegations import delegations_visible_to
from .services.delegations import delegation_create as delegation_create_service
from .services.delegations import delegation_revoke as delegation_revoke_service

PAGE_SIZE = 25


def _render_list(request, form: DelegationForm | None = None, status: int = 200):
    user = request.user
    query = request.GET.copy()
    query.pop("page", None)
    page_obj = CappedCountPaginator(delegations_visible_to(user=user), PAGE_SIZE).get_page(request.GET.get("page"))
    me = inventory.identity_of(user)
    context = {
        "page_obj": page_obj,
        "querystring": query.urlencode(),
        "form": form or DelegationForm(user=user, initial={"delegator": me}),
        "has_identity": me is not None,
        "read_only": inventory.is_read_only(user),
        "me": me,
    }
    return render(request, "jit/delegation_list.html", context, status=status)


@login_required
def delegation_list(request):
    return _render_list(request)


@login_required
@require_POST
def delegation_create(request):
    form = DelegationForm(request.POST, user=request.user)
    if form.is_valid():
        data = form.cleaned_data
        try:
            delegation = delegation_create_service(
                actor=request.user,
                delegator_id=data["delegator"].pk,
                delegate_id=data["delegate"].pk,
                entitlement_ids=[e.pk for e in data["entitlements"]],
                max_risk_tier=data["max_risk_tier"],
                may_redelegate=data["may_redelegate"],
                purpose=data["purpose"],
                expires_at=data["expires_at"],
            )
        except PermissionRefused as error:
            messages.error(request, error.message)
            return redirect("jit:delegation_list")
        except DomainError as error:
            if not add_service_errors(form, error, renamed={}):
                form.add_error(None, error.message)
        else:
            messages.success(
                request,
                f"{delegation.delegate.name} may now act for {delegation.delegator.name} "
                f"until {delegation.expires_at:%Y-%m-%d %H:%M} UTC.",
            )
            return redirect("jit:delegation_list")
    return _render_list(request, form, status=400)


@login_required
@require_POST
def delegation_revoke(request, pk: int):
    delegation = delegations_visible_to(user=request.user).filter(pk=pk).first()
    if delegation is None:
        raise Http404
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Reason: {' '.join(form.errors['reason'])}")
        return redirect("jit:delegation_list")
    try:
        delegation_revoke_service(actor=request.user, delegation_id=pk, reason=form.cleaned_data["reason"])
    except (PermissionRefused, InvalidTransition) as error:
        messages.error(request, error.message)
        return redirect("jit:delegation_list")
    declined = not policies.may_delegate_for(request.user, delegation.delegator)
    verb = "declined" if declined else "revoked"
    messages.success(
        request,
        f"Delegation from {delegation.delegator.name} to {delegation.delegate.name} {verb}: "
        "no request can name it any more.",
    )
    return redirect("jit:delegation_list")
