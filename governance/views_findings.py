"""The findings page: what is wrong in the inventory and on the targets, and who must act.

People who read the whole inventory (owners, approvers, auditors, admins) see every finding and
may narrow to their own; everyone else sees only the findings they must act on (the selector).
Drift found by reconciliation carries its fixes here (revoke at the target, adopt, provision
again): POST forms that call one service each, for the system's owner or an admin.
"""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from audit.kernel.pagination import DeferredJoinPaginator

from . import policies, selectors
from .choices import FindingKind, FindingStatus, Severity
from .errors import DomainError, PermissionRefused
from .models import System
from .services import reconciliation
from .views import order_rows

PAGE_SIZE = 25
# Severities by rank, low to critical (the page shows the worst first unless sorted otherwise).
SEVERITY_RANK = selectors.tier_rank("severity")
WORST_FIRST = ("-severity_rank", "-last_seen_at", "-id")
FINDING_SORTS = {
    "severity": "severity_rank",
    "kind": "kind",
    "owner": "owner_to_act__name",
    "first_seen": "first_seen_at",
    "last_seen": "last_seen_at",
}


class FindingFilterForm(forms.Form):
    kind = forms.ChoiceField(label="Kind", choices=[("", "Any"), *FindingKind.choices], required=False)
    status = forms.ChoiceField(
        label="Status", choices=[*FindingStatus.choices, ("all", "Any")], required=False, initial=FindingStatus.OPEN
    )
    severity = forms.ChoiceField(label="Severity", choices=[("", "Any"), *Severity.choices], required=False)
    q = forms.CharField(label="Subject", required=False, widget=forms.TextInput(attrs={"type": "search"}))
    mine = forms.BooleanField(label="Only findings I must act on", required=False)


@login_required
def finding_list(request):
    sees_all = policies.can_view_inventory(request.user)
    me = policies.identity_of(request.user)
    data = request.GET.copy()
    data.setdefault("status", FindingStatus.OPEN)
    form = FindingFilterForm(data)
    if not sees_all:
        del form.fields["mine"]  # they only ever see their own
    queryset = selectors.finding_list(user=request.user)
    if form.is_valid():
        filters = form.cleaned_data
        if filters["kind"]:
            queryset = queryset.filter(kind=filters["kind"])
        if filters["status"] in FindingStatus.values:
            queryset = queryset.filter(status=filters["status"])
        if filters["severity"]:
            queryset = queryset.filter(severity=filters["severity"])
        if filters["q"]:
            queryset = queryset.filter(
                Q(identity__name__icontains=filters["q"])
                | Q(entitlement__name__icontains=filters["q"])
                | Q(entitlement__system__name__icontains=filters["q"])
                | Q(details__account__icontains=filters["q"])
                | Q(details__system_name__icontains=filters["q"])
            )
        if filters.get("mine"):
            queryset = queryset.filter(owner_to_act=me) if me is not None else queryset.none()
    queryset = order_rows(
        queryset.alias(severity_rank=SEVERITY_RANK).order_by(*WORST_FIRST),
        request.GET.get("sort", ""),
        FINDING_SORTS,
        then=WORST_FIRST,
    )
    query = request.GET.copy()
    query.pop("page", None)
    page_obj = DeferredJoinPaginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    _mark_drift_fixes(request.user, page_obj.object_list)
    return render(
        request,
        "governance/finding_list.html",
        {
            "filter_form": form,
            "page_obj": page_obj,
            "querystring": query.urlencode(),
            "sees_all": sees_all,
            "me": me,
            "reconcile_minutes": settings.RECONCILE_INTERVAL_MINUTES,
        },
    )


def _mark_drift_fixes(user, findings) -> None:
    """Which fixes each drift finding on the page offers this user: one query for the page's systems."""
    drift = [f for f in findings if f.kind in reconciliation.DRIFT_KINDS and f.status == FindingStatus.OPEN]
    systems = System.objects.only("pk", "owner_id", "connector", "name").in_bulk(
        {f.details.get("system") for f in drift if isinstance(f.details.get("system"), int)}
    )
    for finding in drift:
        system = systems.get(finding.details.get("system"))
        finding.can_fix = system is not None and reconciliation.can_fix_drift(user, system)
        finding.can_remove = finding.can_fix and reconciliation.can_remove(system.connector)


#
# Fixes (POST only); each answers with a message on the findings page it came from
#
def _back_to_list(request):
    """The findings page with the filters the form came from (only a query string: never another site)."""
    query = QueryDict(request.POST.get("query", "")).urlencode()
    url = reverse("governance:finding_list")
    return redirect(f"{url}?{query}" if query else url)


def _finding_action(request, pk: int, action, success: str):
    """One fix on a finding this user may see (others get 404); a refusal is a 403, a conflict a message."""
    if not selectors.finding_list(user=request.user).filter(pk=pk).exists():
        raise Http404
    try:
        outcome = action()
    except PermissionRefused as error:
        raise PermissionDenied(error.message) from None
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, success(outcome) if callable(success) else success)
    return _back_to_list(request)


@login_required
@require_POST
def finding_revoke_at_target(request, pk: int):
    return _finding_action(
        request,
        pk,
        lambda: reconciliation.finding_revoke_at_target(finding_id=pk, actor=request.user),
        "Removal asked of the target: the finding resolves when it confirms.",
    )


@login_required
@require_POST
def finding_adopt(request, pk: int):
    return _finding_action(
        request,
        pk,
        lambda: reconciliation.finding_adopt(finding_id=pk, actor=request.user),
        lambda grant: f"Adopted as standing grant #{grant.pk} and sent to its entitlement's owner for review.",
    )


@login_required
@require_POST
def finding_reprovision(request, pk: int):
    return _finding_action(
        request,
        pk,
        lambda: reconciliation.finding_reprovision(finding_id=pk, actor=request.user),
        lambda grant: f"Grant #{grant.pk} asked of the target again: waiting for the system.",
    )


@login_required
@require_POST
def system_reconcile(request, system_id: int):
    """Reconcile now (a worker reads the target: the page never waits on it); back to where it was asked."""
    system = get_object_or_404(System, pk=system_id)
    try:
        asked = reconciliation.system_reconcile_request(system_id=system.pk, actor=request.user)
    except PermissionRefused as error:
        raise PermissionDenied(error.message) from None
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request,
            f"Reconciliation of {system.name} asked: its findings update in a moment."
            if asked
            else f"Reconciliation of {system.name} is already on its way.",
        )
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect("governance:system_detail", system.pk)
