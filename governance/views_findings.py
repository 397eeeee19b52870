"""The hygiene findings page: what is wrong in the inventory and who must act.

People who read the whole inventory (owners, approvers, auditors, admins) see every finding and
may narrow to their own; everyone else sees only the findings they must act on (the selector).
"""

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.shortcuts import render

from audit.kernel.pagination import DeferredJoinPaginator

from . import policies, selectors
from .choices import FindingKind, FindingStatus, Severity
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
    return render(
        request,
        "governance/finding_list.html",
        {
            "filter_form": form,
            "page_obj": page_obj,
            "querystring": query.urlencode(),
            "sees_all": sees_all,
            "me": me,
        },
    )
