"""Certification reports: one campaign's evidence (a printable page, a streamed CSV, a PDF), grants not
certified within their cadence, and who held an entitlement at a time.

Auditors and admins read them all; an owner reads the reports of the campaigns they may see; nobody
else. Every report made is recorded as an export first, and its footer names the audit chain's head
read just after, so the head covers the export's own event.
"""

from datetime import datetime, time, timedelta
from itertools import chain

from django import forms
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.exports import streaming_csv_response
from audit.kernel import clock
from audit.kernel.pagination import DeferredJoinPaginator
from audit.services import export_recorded

from . import certification_reports as reports
from .choices import IdentityKind, RiskTier
from .models import Campaign, Entitlement, System
from .selectors_certification import campaigns_visible_to

PAGE_SIZE = 50
REPORT_CSS = "css/certification-report.css"


def _campaign_for_report(request, pk: int) -> Campaign:
    """The campaign if the user may read its report: 404 when they may not see it at all, 403 when
    they see it (a reviewer) but its evidence is not theirs to read."""
    campaign = Campaign.objects.select_related("created_by").filter(pk=pk).first()
    if campaign is None:
        raise Http404("No such campaign.")
    if not reports.may_read_campaign_report(request.user, campaign):
        if campaigns_visible_to(request.user).filter(pk=campaign.pk).exists():
            raise PermissionDenied("Only auditors, admins and the owners concerned read this report.")
        raise Http404("No such campaign.")
    return campaign


def _record_and_read_head(request, campaign: Campaign, file_format: str) -> reports.ChainHead:
    export_recorded(
        actor=request.user, what="certification_report", filters={"campaign": campaign.pk}, file_format=file_format
    )
    return reports.chain_head()


def _campaign_context(request, campaign: Campaign, head: reports.ChainHead, row_limit: int) -> dict:
    summary = reports.campaign_summary(campaign)
    now = clock.now()
    break_glass = reports.break_glass_rows(campaign, now=now, limit=row_limit + 1)
    return {
        "break_glass": break_glass[:row_limit],
        "break_glass_truncated": len(break_glass) > row_limit,
        "break_glass_until": campaign.closed_at or now,
        "campaign": campaign,
        "scope": reports.campaign_scope(campaign),
        "reviewers": reports.campaign_reviewers(campaign),
        "summary": summary,
        "items": reports.item_rows_for_page(campaign, row_limit),
        "row_limit": row_limit,
        "truncated": summary.total > row_limit,
        "undecided_rules": sorted((campaign.undecided or {}).items(), key=lambda kv: RiskTier.rank(kv[0])),
        "head": head,
        "made_at": clock.now(),
        "made_by": request.user.get_username(),
    }


@login_required
@require_GET
def report_campaign(request, pk: int):
    campaign = _campaign_for_report(request, pk)
    head = _record_and_read_head(request, campaign, "html")
    context = _campaign_context(request, campaign, head, reports.REPORT_ROW_LIMIT)
    return render(request, "governance/report_campaign.html", context)


@login_required
@require_GET
def report_campaign_csv(request, pk: int):
    """Every item, streamed: rows leave as the cursor reads them, never all in memory."""
    campaign = _campaign_for_report(request, pk)
    head = _record_and_read_head(request, campaign, "csv")
    now = clock.now()
    footer = reports.csv_footer(head, now, request.user.get_username())
    rows = chain(reports.item_csv_rows(campaign), reports.break_glass_csv_rows(campaign, now=now), footer)
    return streaming_csv_response(f"certification-{campaign.pk}.csv", reports.CSV_HEADER, rows)


def _no_fetching(url: str, *args, **kwargs):
    """The PDF embeds nothing from outside: WeasyPrint fetches no URL (a comment cannot make it)."""
    raise ValueError(f"The report fetches nothing: {url}")


@login_required
@require_GET
def report_campaign_pdf(request, pk: int):
    campaign = _campaign_for_report(request, pk)
    head = _record_and_read_head(request, campaign, "pdf")
    context = _campaign_context(request, campaign, head, reports.PDF_ROW_LIMIT)
    html = render_to_string("governance/report_campaign_pdf.html", context)
    # Imported here: WeasyPrint loads Pango when imported, and no other page needs it.
    from weasyprint import CSS, HTML

    stylesheet = CSS(filename=finders.find(REPORT_CSS), url_fetcher=_no_fetching)
    pdf = HTML(string=html, url_fetcher=_no_fetching).write_pdf(stylesheets=[stylesheet])
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="certification-{campaign.pk}.pdf"'
    return response


#
# Across campaigns
#
def _require_all_reports(request) -> None:
    if not reports.may_read_all_reports(request.user):
        raise PermissionDenied("Auditors and admins read the reports across campaigns.")


class NotCertifiedFilterForm(forms.Form):
    system = forms.ModelChoiceField(
        label="System", queryset=System.objects.order_by("name"), required=False, empty_label="Any"
    )
    entitlement = forms.ModelChoiceField(
        label="Entitlement",
        queryset=Entitlement.objects.select_related("system").order_by("system__name", "name"),
        required=False,
        empty_label="Any",
    )
    risk_tier = forms.ChoiceField(label="Risk tier", choices=[("", "Any"), *RiskTier.choices], required=False)
    identity_kind = forms.ChoiceField(
        label="Identity kind", choices=[("", "Any"), *IdentityKind.choices], required=False
    )
    q = forms.CharField(label="Identity", required=False, widget=forms.TextInput(attrs={"type": "search"}))
    never = forms.BooleanField(label="Only grants never certified", required=False)

    def filter(self, grants):
        if not self.is_valid():
            return grants.none()
        data = self.cleaned_data
        if data["system"]:
            grants = grants.filter(entitlement__system=data["system"])
        if data["entitlement"]:
            grants = grants.filter(entitlement=data["entitlement"])
        if data["risk_tier"]:
            grants = grants.filter(entitlement__risk_tier=data["risk_tier"])
        if data["identity_kind"]:
            grants = grants.filter(identity__kind=data["identity_kind"])
        if data["q"]:
            grants = grants.filter(identity__name__icontains=data["q"])
        if data["never"]:
            grants = grants.filter(last_certified_at__isnull=True)
        return grants


def _not_certified(request) -> tuple[NotCertifiedFilterForm, object]:
    form = NotCertifiedFilterForm(request.GET)
    return form, form.filter(reports.grants_not_certified(now=clock.now()))


@login_required
@require_GET
def report_not_certified(request):
    _require_all_reports(request)
    form, grants = _not_certified(request)
    query = request.GET.copy()
    query.pop("page", None)
    ordered = grants.order_by("entitlement__system__name", "entitlement__name", "identity__name", "pk")
    page_obj = DeferredJoinPaginator(ordered, PAGE_SIZE).get_page(request.GET.get("page"))
    for grant in page_obj.object_list:
        grant.certification_due_at = reports.certification_due_at(
            grant.last_certified_at, grant.entitlement.review_cadence_days
        )
    return render(
        request,
        "governance/report_not_certified.html",
        {"filter_form": form, "page_obj": page_obj, "querystring": query.urlencode()},
    )


@login_required
@require_GET
def report_not_certified_csv(request):
    _require_all_reports(request)
    form, grants = _not_certified(request)
    if not form.is_valid():
        response = report_not_certified(request)
        response.status_code = 400
        return response
    export_recorded(actor=request.user, what="grants_not_certified", filters=request.GET.dict(), file_format="csv")
    return streaming_csv_response(
        "grants-not-certified.csv", reports.NOT_CERTIFIED_HEADER, reports.not_certified_csv_rows(grants)
    )


class HeldAccessForm(forms.Form):
    entitlement = forms.ModelChoiceField(
        label="Entitlement",
        queryset=Entitlement.objects.select_related("system").order_by("system__name", "name"),
        required=False,
        empty_label="Any in the system",
    )
    system = forms.ModelChoiceField(
        label="System", queryset=System.objects.order_by("name"), required=False, empty_label="Any"
    )
    on = forms.DateField(label="On", widget=forms.DateInput(attrs={"type": "date"}))
    at = forms.TimeField(
        label="At",
        required=False,
        widget=forms.TimeInput(attrs={"type": "time", "step": "1"}),
        help_text="Leave empty for the whole day.",
    )

    def clean(self):
        data = super().clean()
        entitlement, system = data.get("entitlement"), data.get("system")
        if not entitlement and not system:
            raise forms.ValidationError("Choose an entitlement or a system.")
        if entitlement and system and entitlement.system_id != system.pk:
            self.add_error("entitlement", "This entitlement is not in that system.")
        return data

    def window(self) -> tuple[datetime, datetime]:
        """[since, until] in the portal's time zone: an instant, or the whole day when no time is given."""
        data = self.cleaned_data
        if data.get("at") is not None:
            moment = timezone.make_aware(datetime.combine(data["on"], data["at"]))
            return moment, moment
        start = timezone.make_aware(datetime.combine(data["on"], time.min))
        return start, start + timedelta(days=1) - timedelta(microseconds=1)

    def grants(self):
        since, until = self.window()
        grants = reports.grants_held(since=since, until=until)
        if self.cleaned_data.get("entitlement"):
            grants = grants.filter(entitlement=self.cleaned_data["entitlement"])
        if self.cleaned_data.get("system"):
            grants = grants.filter(entitlement__system=self.cleaned_data["system"])
        return grants


@login_required
@require_GET
def report_held_access(request):
    _require_all_reports(request)
    form = HeldAccessForm(request.GET or None)
    context = {"form": form, "page_obj": None}
    if form.is_valid():
        query = request.GET.copy()
        query.pop("page", None)
        grants = form.grants().order_by("identity__name", "entitlement__name", "granted_at", "pk")
        page_obj = DeferredJoinPaginator(grants, PAGE_SIZE).get_page(request.GET.get("page"))
        for grant in page_obj.object_list:
            grant.ended_at = reports.ended_at(grant.expires_at, grant.removed_at)
        context.update(page_obj=page_obj, querystring=query.urlencode(), window=form.window())
    return render(request, "governance/report_held_access.html", context)


@login_required
@require_GET
def report_held_access_csv(request):
    _require_all_reports(request)
    form = HeldAccessForm(request.GET)
    if not form.is_valid():
        response = report_held_access(request)
        response.status_code = 400
        return response
    export_recorded(actor=request.user, what="access_held_at", filters=request.GET.dict(), file_format="csv")
    return streaming_csv_response("access-held.csv", reports.HELD_HEADER, reports.held_csv_rows(form.grants()))
