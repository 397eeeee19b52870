"""Grants a connector gave up on: provisioning or removal failed after its last retry.

Admins see every one and may retry all those shown; a system's owner sees and retries those of
their systems (the people `grant_retry_provision` / `grant_retry_revoke` let act); anyone else sees
none. A failed removal is access that may still exist, and the page says so.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.kernel.htmx import render_list
from audit.kernel.pagination import DeferredJoinPaginator

from . import policies
from .choices import GrantStatus
from .errors import DomainError
from .forms import GrantFailureFilterForm
from .selectors_connectors import grant_failure_list, systems_with_failures
from .services import grants
from .views import order_rows

PAGE_SIZE = 50
OLDEST_FIRST = ("updated_at", "pk")
FAILURE_SORTS = {
    "since": "updated_at",
    "system": "entitlement__system__name",
    "entitlement": "entitlement__name",
    "identity": "identity__name",
    "failure": "status",
}
KEPT_QUERY = ("system", "kind", "sort", "page")
RETRY = {
    GrantStatus.PROVISION_FAILED: grants.grant_retry_provision,
    GrantStatus.REVOKE_FAILED: grants.grant_retry_revoke,
}


@login_required
def grant_failures(request):
    rows = grant_failure_list(user=request.user)
    form = GrantFailureFilterForm(request.GET or None, systems=systems_with_failures(user=request.user))
    if form.is_bound and form.is_valid():
        if form.cleaned_data["system"] is not None:
            rows = rows.filter(entitlement__system=form.cleaned_data["system"])
        if form.cleaned_data["kind"]:
            rows = rows.filter(status=form.cleaned_data["kind"])
    rows = order_rows(rows.order_by(*OLDEST_FIRST), request.GET.get("sort", ""), FAILURE_SORTS, then=OLDEST_FIRST)
    query = request.GET.copy()
    query.pop("page", None)
    page_obj = DeferredJoinPaginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "filter_form": form,
        "page_obj": page_obj,
        "querystring": query.urlencode(),
        "here": request.GET.urlencode(),
        "can_retry_all": policies.is_admin(request.user),
        "sees_all": policies.is_admin(request.user),
    }
    return render_list(request, "governance/grant_failures.html", "governance/_grant_failure_results.html", context)


@login_required
def grant_failures_count(request):
    """The navigation's badge (htmx, loaded after the page): how many failures this user may retry."""
    count = grant_failure_list(user=request.user).count()
    text = f'<span class="badge status-revoke_failed">{count}<span class="visually-hidden"> failed</span></span>'
    return HttpResponse(text if count else "")


@login_required
@require_POST
def grant_failures_retry(request):
    """Retry one failure (`grant`), or, for admins, every one the page showed (`all` with `shown`).

    Each retry is its own service call and transaction; a grant retried or confirmed meanwhile is
    reported, not retried twice.
    """
    back = reverse("governance:grant_failures")
    kept = QueryDict(request.POST.get("query", "")).copy()
    for key in list(kept):
        if key not in KEPT_QUERY:
            del kept[key]
    back = f"{back}?{kept.urlencode()}" if kept else back
    if request.POST.get("all"):
        if not policies.is_admin(request.user):
            raise PermissionDenied("Only admins retry every failure at once.")
        wanted = [int(pk) for pk in request.POST.getlist("shown") if pk.isdigit()][:PAGE_SIZE]
    else:
        pk = request.POST.get("grant", "")
        wanted = [int(pk)] if pk.isdigit() else []
    found = dict(grant_failure_list(user=request.user).filter(pk__in=wanted).values_list("pk", "status"))
    if not found:
        messages.error(request, "Nothing to retry: already retried or confirmed, or not yours to retry.")
        return redirect(back)
    retried, refused = [], []
    for pk in sorted(found):
        try:
            RETRY[found[pk]](grant_id=pk, actor=request.user)
        except DomainError as error:  # refused or changed meanwhile: said, and the others still retried
            refused.append(f"#{pk}: {error.message}")
        else:
            retried.append(pk)
    if retried:
        which = f"grant #{retried[0]}" if len(retried) == 1 else f"{len(retried)} grants"
        messages.success(request, f"Asked the connector again for {which}: waiting for the system.")
    gone = len(wanted) - len(found)
    if refused or gone:
        skipped = [*refused, *([f"{gone} no longer waiting for a retry"] if gone else [])]
        messages.warning(request, "Not retried: " + "; ".join(skipped) + ".")
    return redirect(back)
