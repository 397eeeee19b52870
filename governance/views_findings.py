"""The findings page: what is wrong in the inventory and on the targets, and who must act.

People who read the whole inventory (owners, approvers, auditors, admins) see every finding and
may narrow to their own; everyone else sees only the findings they must act on (the selector).
Every fix goes through one view, `finding_fix`, that calls one service per fix: hygiene fixes
(assign an owner, mark rotated, revoke, make just-in-time, accept the risk) for the identity's
owners and admins; drift fixes (revoke at the target, adopt, provision again) for the system's
owner or an admin. Accepted risks are listed in the exception register.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpResponseNotAllowed, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_POST

from audit.kernel.links import links_for
from audit.kernel.pagination import DeferredJoinPaginator
from audit.kernel.widgets import QuickSelect

from . import policies, selectors, selectors_findings
from .choices import FindingExceptionStatus, FindingKind, FindingStatus, Severity
from .errors import DomainError, PermissionRefused, ValidationFailed
from .forms import add_service_errors
from .forms_findings import FIX_FORMS, ExceptionFilterForm
from .models import Finding, Identity, System
from .models.findings import SEVERITY_RANK
from .services import finding_fixes, reconciliation
from .views import order_rows

PAGE_SIZE = 25
# The page shows the worst first unless sorted otherwise: severity by rank (low to critical), then the
# latest seen. The open findings' index is this order (`Finding.Meta.indexes`): keep the two alike.
WORST_FIRST = ("-severity_rank", "-last_seen_at", "-id")
FINDING_SORTS = {
    "severity": "severity_rank",
    "kind": "kind",
    "owner": "owner_to_act__name",
    "first_seen": "first_seen_at",
    "last_seen": "last_seen_at",
}


class FindingFilterForm(forms.Form):
    # QuickSelect: options joined in Python, not a template include each.
    kind = forms.ChoiceField(
        label="Kind", choices=[("", "Any"), *FindingKind.choices], required=False, widget=QuickSelect
    )
    status = forms.ChoiceField(
        label="Status",
        choices=[*FindingStatus.choices, ("all", "Any")],
        required=False,
        initial=FindingStatus.OPEN,
        widget=QuickSelect,
    )
    severity = forms.ChoiceField(
        label="Severity", choices=[("", "Any"), *Severity.choices], required=False, widget=QuickSelect
    )
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
    page_obj = DeferredJoinPaginator(queryset, PAGE_SIZE, load=selectors_findings.finding_page_rows).get_page(
        request.GET.get("page")
    )
    _mark_drift_fixes(request.user, page_obj.object_list)
    fixes = finding_fixes.fixes_for_each(request.user, page_obj.object_list)
    return render(
        request,
        "governance/finding_list.html",
        {
            "filter_form": form,
            "page_obj": page_obj,
            "rows": _rows(page_obj.object_list, fixes, me=me, back=request.get_full_path()),
            "querystring": query.urlencode(),
            "sees_all": sees_all,
            "me": me,
            "reconcile_minutes": settings.RECONCILE_INTERVAL_MINUTES,
        },
    )


#
# The page's rows: each cell's text and links made once here, so that the template only places them
# (a `{% url %}` cost ~40 µs, Django's date formatter ~30 µs, a model's get_FOO_display and a per-row
# include more than the values they print; the page has 25 rows of up to 9 of them)
#
KIND_LABELS = dict(FindingKind.choices)
STATUS_LABELS = dict(FindingStatus.choices)
SEVERITY_LABELS = dict(Severity.choices)
FIX_STYLES = {
    finding_fixes.ACCEPT: "secondary outline",
    finding_fixes.REVOKE: "danger outline",
    finding_fixes.REVOKE_ONE: "danger outline",
    finding_fixes.SUSPEND: "danger outline",
}  # any other fix: "secondary"


def _time(moment: datetime) -> SafeString:
    """`<time datetime="{{ moment|date:'c' }}">{{ moment|date:'Y-m-d H:i' }}</time>` in the viewer's zone."""
    local = timezone.localtime(moment)
    shown = f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d}"
    return mark_safe(f'<time datetime="{local.isoformat()}">{shown}</time>')  # digits and signs only


@dataclass(frozen=True, slots=True)
class FixLink:
    """A hygiene fix's button as `_finding_fixes.html` draws it (the identity page still includes that)."""

    url: str
    label: str
    style: str


@dataclass(frozen=True, slots=True)
class FindingRow:
    """A finding as its row in governance/finding_list.html shows it; text is escaped by the template."""

    finding: Finding  # the drift facts (`_finding_drift.html`) read it
    kind_label: str
    status: str
    status_label: str  # "" while open: no badge
    subject: object
    reason: object
    drift: bool
    accepted_url: str  # the exception register searched for it, once its risk is accepted
    fixes: list[FixLink]
    severity: str
    severity_label: str
    owner: str | None  # who must act, by name
    owner_is_me: bool
    first_seen: SafeString
    last_seen: SafeString
    link_url: str  # its identity's page, else its entitlement's
    link_label: str
    link_aria: str


class _RowMaker:
    """Builds a page's rows with the links reversed once for the page."""

    def __init__(self, *, me: Identity | None, back: str) -> None:
        self.me_pk = me.pk if me is not None else None
        self.next = f"?next={quote(back)}" if back else ""
        self.identity_url = links_for("governance:identity_detail")
        self.entitlement_url = links_for("governance:entitlement_detail")
        self.register_url = reverse("governance:finding_exception_list")
        self.fix_urls: dict[str, Callable[[int], str]] = {}

    def fix(self, finding: Finding, fix: finding_fixes.Fix) -> FixLink:
        if fix.slug not in self.fix_urls:
            self.fix_urls[fix.slug] = links_for("governance:finding_fix", fix.slug)
        url = self.fix_urls[fix.slug](finding.pk) + self.next
        return FixLink(url, fix.label, FIX_STYLES.get(fix.slug, "secondary"))

    def row(self, finding: Finding, fixes: list[finding_fixes.Fix]) -> FindingRow:
        details = finding.details if isinstance(finding.details, dict) else {}
        subject = details.get("subject", "")
        status = finding.status
        owner = finding.owner_to_act if finding.owner_to_act_id is not None else None
        last_seen = (
            mark_safe(f"resolved {_time(finding.resolved_at)}") if finding.resolved_at else _time(finding.last_seen_at)
        )
        if finding.identity_id:
            link = (self.identity_url(finding.identity_id), "Identity", f"Open identity {finding.identity.name}")
        elif finding.entitlement_id:
            link = (
                self.entitlement_url(finding.entitlement_id),
                "Entitlement",
                f"Open entitlement {finding.entitlement.name}",
            )
        else:
            link = ("", "", "")
        return FindingRow(
            finding=finding,
            kind_label=KIND_LABELS.get(finding.kind, finding.kind),
            status=status,
            status_label="" if status == FindingStatus.OPEN else STATUS_LABELS.get(status, status),
            subject=subject,
            reason=details.get("reason", ""),
            drift=finding.kind in reconciliation.DRIFT_KINDS,
            accepted_url=f"{self.register_url}?q={quote(str(subject))}" if status == FindingStatus.ACCEPTED else "",
            fixes=[self.fix(finding, fix) for fix in fixes],
            severity=finding.severity,
            severity_label=SEVERITY_LABELS.get(finding.severity, finding.severity),
            owner=owner.name if owner is not None else None,
            owner_is_me=owner is not None and self.me_pk is not None and finding.owner_to_act_id == self.me_pk,
            first_seen=_time(finding.first_seen_at),
            last_seen=last_seen,
            link_url=link[0],
            link_label=link[1],
            link_aria=link[2],
        )


def _rows(
    findings: Sequence[Finding], fixes: Sequence[list[finding_fixes.Fix]], *, me: Identity | None, back: str
) -> list[FindingRow]:
    """Each finding's row; `back` is the page the fixes return to."""
    maker = _RowMaker(me=me, back=back)
    return [maker.row(finding, its_fixes) for finding, its_fixes in zip(findings, fixes, strict=True)]


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
# Fixes: one view for every fix (governance.services.finding_fixes names them), each calling one service
#
def _safe_next(request) -> str:
    """The page a fix came from (`next`), if it is on this site; else nothing."""
    back = request.POST.get("next") or request.GET.get("next", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return back
    return ""


def _back(request):
    """Where a fix returns: the page it came from (`next`, this site only), else the findings page with
    the filters the form came from (only a query string: never another site)."""
    back = _safe_next(request)
    if back:
        return redirect(back)
    query = QueryDict(request.POST.get("query", "")).urlencode()
    url = reverse("governance:finding_list")
    return redirect(f"{url}?{query}" if query else url)


def _drift_service(action: str):
    return {
        finding_fixes.REVOKE_AT_TARGET: (
            reconciliation.finding_revoke_at_target,
            lambda _f: "Removal asked of the target: the finding resolves when it confirms.",
        ),
        finding_fixes.ADOPT: (
            reconciliation.finding_adopt,
            lambda grant: f"Adopted as standing grant #{grant.pk} and sent to its entitlement's owner for review.",
        ),
        finding_fixes.REPROVISION: (
            reconciliation.finding_reprovision,
            lambda grant: f"Grant #{grant.pk} asked of the target again: waiting for the system.",
        ),
    }[action]


FIX_SERVICES = {
    finding_fixes.ASSIGN_OWNER: finding_fixes.finding_fix_assign_owner,
    finding_fixes.MARK_ROTATED: finding_fixes.finding_fix_mark_rotated,
    finding_fixes.REVOKE: finding_fixes.finding_fix_revoke,
    finding_fixes.CONVERT_TO_JIT: finding_fixes.finding_fix_convert_to_jit,
    finding_fixes.ACCEPT: finding_fixes.finding_accept_risk,
    finding_fixes.SUSPEND: finding_fixes.finding_fix_suspend,
    finding_fixes.SECRET_MOVED: finding_fixes.finding_fix_secret_moved,
    finding_fixes.ASSIGN_ENTITLEMENT_OWNER: finding_fixes.finding_fix_assign_entitlement_owner,
    finding_fixes.REVOKE_ONE: finding_fixes.finding_fix_revoke_one,
}


def _fixed_message(action: str, finding: Finding, outcome) -> str:
    subject = finding.details.get("subject", str(finding))
    if action == finding_fixes.ACCEPT:
        return (
            f"Risk accepted until {outcome.expires_at:%Y-%m-%d}: {subject} is in the exception register "
            "and reopens after that date."
        )
    if action == finding_fixes.CONVERT_TO_JIT:
        return f"Grant #{outcome.pk} is now just-in-time and ends {outcome.expires_at:%Y-%m-%d %H:%M}."
    if action in (finding_fixes.REVOKE, finding_fixes.REVOKE_ONE):
        return f"Removal of the grant asked: {subject} is no longer in force."
    if action == finding_fixes.SUSPEND:
        return f"{subject} suspended: its access ended and its tokens stopped working."
    if action == finding_fixes.ASSIGN_ENTITLEMENT_OWNER:
        return f"{subject} has an owner again and can be requested."
    return f"Fixed: {subject}."


def _closed_or_open(finding: Finding) -> str:
    finding.refresh_from_db(fields=["status"])
    if finding.status == FindingStatus.RESOLVED:
        return " The finding is closed."
    if finding.status == FindingStatus.OPEN:  # fixed, but the detector still sees a problem (another reason)
        return " The finding is still open: the check still sees a problem."
    return ""


def _finding_to_fix(user, pk: int) -> Finding:
    """The finding, if this user may see it (the findings page's rule) or fix it (a backup owner who is
    not named to act still answers for the identity); anyone else is told it does not exist."""
    finding = selectors.finding_list(user=user).filter(pk=pk).first()
    if finding is None:
        finding = Finding.objects.select_related("identity", "entitlement", "grant").filter(pk=pk).first()
        if finding is None or finding.kind in reconciliation.DRIFT_KINDS:
            raise Http404
        if not finding_fixes.can_fix_finding(user, finding):
            raise Http404
    return finding


@login_required
def finding_fix(request, pk: int, action: str):
    """Every fix of a finding. A fix that asks for input shows its form (GET) and applies it (POST); the
    fixes of drift ask for nothing and are POST only. Findings this user may not see are 404, fixes they
    may not take 403, a conflict (already fixed, lost race) a message; nothing is half-written."""
    fix = finding_fixes.FIXES.get(action)
    if fix is None:
        raise Http404
    if not fix.asks and request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    finding = _finding_to_fix(request.user, pk)
    if not fix.asks:
        service, said = _drift_service(action)
        try:
            outcome = service(finding_id=pk, actor=request.user)
        except PermissionRefused as error:
            raise PermissionDenied(error.message) from None
        except DomainError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, said(outcome))
        return _back(request)
    if action not in finding_fixes.FIXES_BY_KIND.get(finding.kind, ()):
        raise Http404
    if not finding_fixes.can_fix_finding(request.user, finding):
        raise PermissionDenied("Only the identity's owner, its backup owner or an admin may fix this finding.")
    if finding.status != FindingStatus.OPEN:
        messages.info(request, f"This finding is {finding.get_status_display().lower()} already: nothing to fix.")
        return _back(request)
    form_class = FIX_FORMS[action]
    extra = {"finding": finding} if getattr(form_class, "needs_finding", False) else {}
    form = form_class(request.POST if request.method == "POST" else None, **extra)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                outcome = FIX_SERVICES[action](finding_id=pk, actor=request.user, **form.arguments())
            except PermissionRefused as error:
                raise PermissionDenied(error.message) from None
            except ValidationFailed as error:
                add_service_errors(form, error)
            except DomainError as error:
                messages.error(request, error.message)
                return _back(request)
            else:
                messages.success(request, _fixed_message(action, finding, outcome) + _closed_or_open(finding))
                return _back(request)
        status = 400
    return render(
        request,
        "governance/finding_fix.html",
        {
            "finding": finding,
            "fix": fix,
            "form": form,
            "next": _safe_next(request),
            "max_duration": finding.entitlement.effective_max_duration if finding.entitlement_id else None,
        },
        status=status,
    )


#
# The exception register
#
EXCEPTION_SORTS = {
    "until": "expires_at",
    "accepted": "accepted_at",
    "kind": "finding__kind",
    "by": "accepted_by_name",
}


@login_required
def finding_exception_list(request):
    """Accepted risks: who accepted what, why and until when. Auditors and admins read them all,
    owners those of their own identities (the selector)."""
    data = request.GET.copy()
    data.setdefault("status", FindingExceptionStatus.ACTIVE)
    form = ExceptionFilterForm(data)
    queryset = selectors_findings.finding_exception_list(user=request.user)
    if form.is_valid():
        filters = form.cleaned_data
        if filters["status"] in FindingExceptionStatus.values:
            queryset = queryset.filter(status=filters["status"])
        if filters["kind"]:
            queryset = queryset.filter(finding__kind=filters["kind"])
        if filters["q"]:
            queryset = queryset.filter(
                Q(finding__details__subject__icontains=filters["q"]) | Q(reason__icontains=filters["q"])
            )
        if filters["accepted_by"]:
            queryset = queryset.filter(accepted_by_name__icontains=filters["accepted_by"])
    queryset = order_rows(
        queryset.order_by("expires_at", "pk"), request.GET.get("sort", ""), EXCEPTION_SORTS, then=("pk",)
    )
    query = request.GET.copy()
    query.pop("page", None)
    page_obj = DeferredJoinPaginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "governance/finding_exceptions.html",
        {
            "filter_form": form,
            "page_obj": page_obj,
            "querystring": query.urlencode(),
            "sees_all": policies.is_admin(request.user) or policies.is_auditor(request.user),
            "now": timezone.now(),
        },
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
