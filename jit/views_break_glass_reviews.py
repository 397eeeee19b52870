"""Break-glass after the fact: the review of each activation, the reports, and drills.

Reviewers see the activations they may review (others get 404); auditors and admins read every one,
the reports and the drills; only admins schedule or cancel drills. Views parse input, call one
service and render; a refusal is a 403, bad input stays on the page with errors beside the fields.
"""

from datetime import datetime, time, timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, Case, Q, Value, When
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.exports import streaming_csv_response
from audit.kernel import clock
from audit.kernel.htmx import render_list
from audit.kernel.pagination import DeferredJoinPaginator
from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from audit.services import export_recorded
from governance.errors import DomainError, InvalidTransition, PermissionRefused, ValidationFailed
from governance.forms import add_service_errors
from governance.models import Entitlement, System
from governance.views import order_rows

from . import selectors_break_glass_reports as selectors
from .choices import DrillStatus, ReviewOutcome
from .models import BreakGlassActivation, BreakGlassEligibility
from .services.break_glass_reviews import (
    break_glass_review_record,
    drill_cancel,
    drill_schedule,
    review_refusal,
    reviewable_q,
    window_over,
)

PAGE_SIZE = 50
DRILLS_ON_REPORT = 20
DATETIME_LOCAL = "%Y-%m-%dT%H:%M"


def _page(request, rows):
    query = request.GET.copy()
    query.pop("page", None)
    return DeferredJoinPaginator(rows, PAGE_SIZE).get_page(request.GET.get("page")), query.urlencode()


def _require_reader(user) -> None:
    if not selectors.may_read_reports(user):
        raise PermissionDenied("Auditors and admins read the break-glass reports and drills.")


def _require_drill_manager(user) -> None:
    if not selectors.may_manage_drills(user):
        raise PermissionDenied("Only admins schedule and cancel break-glass drills.")


#
# Reviews
#
class ReviewListForm(forms.Form):
    SCOPES = [("mine", "Waiting for me"), ("all", "All activations")]
    scope = forms.ChoiceField(label="Show", choices=SCOPES, required=False)
    state = forms.ChoiceField(
        label="Review", choices=[("", "Not reviewed"), ("reviewed", "Reviewed"), ("any", "Any")], required=False
    )
    drill = forms.ChoiceField(
        label="Drill", choices=[("", "Any"), ("yes", "Drills only"), ("no", "Real incidents only")], required=False
    )

    def __init__(self, *args, reads_all: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if not reads_all:
            del self.fields["scope"]


REVIEW_SORTS = {
    "holder": "identity__name",
    "entitlement": "entitlement__name",
    "activated": "activated_at",
    "due": "review_due_at",
    "outcome": "outcome",
}


@login_required
@require_GET
def review_list(request):
    """Open reviews this person may decide; auditors and admins may also read every activation."""
    user = request.user
    reads_all = selectors.reads_all_break_glass(user)
    form = ReviewListForm(request.GET or None, reads_all=reads_all)
    data = form.cleaned_data if form.is_valid() else {}
    scope = data.get("scope") or "mine"
    if scope == "all" and reads_all:
        rows = selectors.reviews_visible_to(user)
    else:
        rows = BreakGlassActivation.objects.filter(reviewable_q(user))
    state = data.get("state") or ""
    if state == "":
        rows = rows.filter(outcome="")
    elif state == "reviewed":
        rows = rows.exclude(outcome="")
    if data.get("drill") == "yes":
        rows = rows.filter(is_drill=True)
    elif data.get("drill") == "no":
        rows = rows.filter(is_drill=False)
    rows = selectors.review_rows(rows).annotate(
        may_decide=Case(
            When(reviewable_q(user) & Q(outcome=""), then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
    )
    ordered = order_rows(rows, request.GET.get("sort") or "due", REVIEW_SORTS)
    page_obj, querystring = _page(request, ordered if ordered is not rows else rows.order_by("review_due_at", "pk"))
    context = {
        "filter_form": form,
        "page_obj": page_obj,
        "querystring": querystring,
        "reads_all": reads_all,
        "scope": scope,
        "now": clock.now(),
    }
    return render_list(request, "jit/break_glass_review_list.html", "jit/break_glass_review_results.html", context)


class ReviewForm(forms.Form):
    outcome = forms.ChoiceField(label="Outcome", choices=ReviewOutcome.choices, widget=forms.RadioSelect)
    notes = forms.CharField(
        label="Notes",
        required=False,
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Required when it was not justified or needs a follow-up: what happened, what must be done.",
    )


def _visible_activation(user, pk: int) -> BreakGlassActivation:
    activation = (
        selectors.review_rows(selectors.reviews_visible_to(user)).select_related("eligibility").filter(pk=pk).first()
    )
    if activation is None:
        raise Http404("No such break-glass activation.")
    return activation


@login_required
@require_http_methods(["GET", "POST"])
def review_detail(request, pk: int):
    """One activation, every event of its window, and (for its reviewers) the form recording the outcome."""
    activation = _visible_activation(request.user, pk)
    refusal = review_refusal(request.user, activation)
    form = ReviewForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if refusal is not None:
            raise PermissionDenied(refusal)
        if form.is_valid():
            try:
                break_glass_review_record(
                    activation_id=activation.pk,
                    actor=request.user,
                    outcome=form.cleaned_data["outcome"],
                    notes=form.cleaned_data["notes"],
                )
            except PermissionRefused as error:
                raise PermissionDenied(error.message) from None
            except (ValidationFailed, InvalidTransition) as error:
                add_service_errors(form, error)
                status = error.status_code
            else:
                messages.success(
                    request,
                    f"Review recorded: {activation} ({activation.incident_reference}) "
                    f"{ReviewOutcome(form.cleaned_data['outcome']).label.lower()}.",
                )
                return HttpResponseRedirect(reverse("jit:break_glass_review_list"))
        else:
            status = 400
        activation = _visible_activation(request.user, pk)
    context = {
        "activation": activation,
        "drill": getattr(activation, "drill", None) if activation.is_drill else None,
        "events": selectors.window_events(activation),
        "events_limit": selectors.WINDOW_EVENTS_SHOWN,
        "form": form,
        "may_review": refusal is None and not activation.outcome,
        "refusal": refusal if not activation.outcome else None,
        "window_over": window_over(activation),
        "now": clock.now(),
    }
    return render(request, "jit/break_glass_review_detail.html", context, status=status)


#
# Reports
#
def _day_start(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class ReportFilterForm(forms.Form):
    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    reviewed = forms.ChoiceField(
        label="Reviewed", choices=[("", "Any"), ("yes", "Reviewed"), ("no", "Not reviewed")], required=False
    )
    outcome = forms.ChoiceField(label="Outcome", choices=[("", "Any"), *ReviewOutcome.choices], required=False)
    drill = forms.ChoiceField(
        label="Drill", choices=[("", "Any"), ("yes", "Drills only"), ("no", "Real incidents only")], required=False
    )
    system = forms.ModelChoiceField(
        label="System", queryset=System.objects.order_by("name"), required=False, empty_label="Any"
    )
    entitlement = forms.ModelChoiceField(
        label="Entitlement",
        queryset=Entitlement.objects.filter(break_glass_eligible=True)
        .select_related("system")
        .order_by("system__name", "name"),
        required=False,
        empty_label="Any",
    )

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "“To” is before “From”.")
        entitlement, system = data.get("entitlement"), data.get("system")
        if entitlement and system and entitlement.system_id != system.pk:
            self.add_error("entitlement", "This entitlement is not in that system.")
        return data

    def rows(self):
        data = self.cleaned_data
        return selectors.activations_report(
            since=_day_start(data["since"]) if data.get("since") else None,
            until=_day_start(data["until"] + timedelta(days=1)) if data.get("until") else None,
            outcome=data.get("outcome") or "",
            reviewed=data.get("reviewed") or "",
            drill=data.get("drill") or "",
            system_id=data["system"].pk if data.get("system") else None,
            entitlement_id=data["entitlement"].pk if data.get("entitlement") else None,
        )

    def window(self) -> tuple[datetime | None, datetime | None]:
        data = self.cleaned_data
        since = _day_start(data["since"]) if data.get("since") else None
        until = _day_start(data["until"] + timedelta(days=1)) if data.get("until") else None
        return since, until


REPORT_SORTS = {
    "holder": "identity__name",
    "entitlement": "entitlement__name",
    "system": "entitlement__system__name",
    "incident": "incident_reference",
    "activated": "activated_at",
    "duration": "held_for",
    "ended": "ended_at",
    "outcome": "outcome",
    "reviewer": "reviewed_by__username",
    "time_to_review": "time_to_review",
    "drill": "is_drill",
}


@login_required
@require_GET
def report(request):
    _require_reader(request.user)
    form = ReportFilterForm(request.GET or None)
    valid = form.is_valid() if form.is_bound else True
    if form.is_bound and valid:
        rows = form.rows()
        since, until = form.window()
    else:
        rows = selectors.activations_report() if not form.is_bound else selectors.activations_report().none()
        since = until = None
    now = clock.now()
    summary = selectors.report_summary(rows, now=now)
    sort = request.GET.get("sort", "-activated")
    ordered = order_rows(rows, sort, REPORT_SORTS)
    if not ordered.query.order_by:
        ordered = rows.order_by("-activated_at", "-pk")
    page_obj, querystring = _page(request, ordered)
    drills = selectors.drills_listed(since=since, until=until)
    context = {
        "filter_form": form,
        "page_obj": page_obj,
        "querystring": querystring,
        "summary": summary,
        "now": now,
        "drill_counts": selectors.drill_counts(drills),
        "drills": list(drills.order_by("-scheduled_for", "-pk")[:DRILLS_ON_REPORT]),
        "drills_limit": DRILLS_ON_REPORT,
        "csv_query": request.GET.urlencode(),
    }
    return _render_report(request, context, 200 if valid else 400)


def _render_report(request, context: dict, status: int):
    response = render_list(request, "jit/break_glass_report.html", "jit/break_glass_report_results.html", context)
    response.status_code = status
    return response


@login_required
@require_GET
def report_csv(request):
    """The report's rows with the same filters, streamed from a cursor; the export itself is audited."""
    _require_reader(request.user)
    form = ReportFilterForm(request.GET)
    if not form.is_valid():
        return report(request)
    export_recorded(actor=request.user, what="break_glass_activations", filters=request.GET.dict(), file_format="csv")
    rows = form.rows().order_by("activated_at", "pk")
    return streaming_csv_response("break-glass-activations.csv", selectors.CSV_HEADER, selectors.csv_rows(rows))


#
# Drills
#
class DrillForm(forms.Form):
    eligibility = forms.ModelChoiceField(label="Break-glass path", queryset=None, empty_label=None)
    scheduled_for = forms.DateTimeField(
        label="When (UTC)",
        input_formats=[DATETIME_LOCAL, "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
    )
    notes = forms.CharField(
        label="Notes",
        required=False,
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What the drill checks, who runs it.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        eligible = BreakGlassEligibility.objects.filter(is_active=True, expires_at__gt=clock.now())
        self.fields["eligibility"].queryset = eligible.select_related("entitlement__system", "identity").order_by(
            "entitlement__system__name", "entitlement__name", "pk"
        )
        self.fields["eligibility"].label_from_instance = _eligibility_label


def _eligibility_label(eligibility: BreakGlassEligibility) -> str:
    who = eligibility.identity.name if eligibility.identity_id else f"group “{eligibility.group}”"
    return f"{eligibility.entitlement.system.name} / {eligibility.entitlement.name} — {who}"


class DrillFilterForm(forms.Form):
    status = forms.ChoiceField(label="Status", choices=[("", "Any"), *DrillStatus.choices], required=False)


def _drill_page(request, schedule_form: DrillForm | None, status: int = 200):
    filter_form = DrillFilterForm(request.GET or None)
    wanted = filter_form.cleaned_data.get("status", "") if filter_form.is_valid() else ""
    drills = selectors.drills_listed(status=wanted).order_by("-scheduled_for", "-pk")
    page_obj, querystring = _page(request, drills)
    context = {
        "filter_form": filter_form,
        "page_obj": page_obj,
        "querystring": querystring,
        "counts": selectors.drill_counts(selectors.drills_listed()),
        "schedule_form": schedule_form,
        "may_manage": selectors.may_manage_drills(request.user),
        "now": clock.now(),
    }
    response = render_list(request, "jit/break_glass_drill_list.html", "jit/break_glass_drill_results.html", context)
    response.status_code = status
    return response


@login_required
@require_GET
def drill_list(request):
    _require_reader(request.user)
    may_manage = selectors.may_manage_drills(request.user)
    return _drill_page(request, DrillForm() if may_manage else None)


@login_required
@require_POST
def drill_create(request):
    _require_drill_manager(request.user)
    form = DrillForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            drill = drill_schedule(
                actor=request.user,
                eligibility_id=data["eligibility"].pk,
                scheduled_for=data["scheduled_for"],
                notes=data["notes"],
            )
        except PermissionRefused as error:
            raise PermissionDenied(error.message) from None
        except DomainError as error:
            add_service_errors(form, error)
        else:
            messages.success(
                request,
                f"{drill} scheduled for {drill.scheduled_for:%Y-%m-%d %H:%M} UTC; whoever may break glass on "
                "this path has been told.",
            )
            return HttpResponseRedirect(reverse("jit:break_glass_drill_list"))
    return _drill_page(request, form, status=400)


@login_required
@require_POST
def drill_cancel_view(request, pk: int):
    _require_drill_manager(request.user)
    if not selectors.drills_listed().filter(pk=pk).exists():
        raise Http404("No such drill.")
    try:
        drill = drill_cancel(actor=request.user, drill_id=pk, reason=request.POST.get("reason", "")[:500])
    except PermissionRefused as error:
        raise PermissionDenied(error.message) from None
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{drill} cancelled.")
    return HttpResponseRedirect(reverse("jit:break_glass_drill_list"))
