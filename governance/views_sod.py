"""Separation-of-duties rules: a list everyone who reads the catalogue may see, and admin-only pages
to define, change, deactivate and reactivate a rule (each calls one catalogue service)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, QuerySet
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.kernel.htmx import render_list
from audit.models import AuditEvent

from . import policies
from .errors import DomainError, PermissionRefused
from .forms import ReasonForm, add_service_errors
from .forms_sod import SodRuleFilter, SodRuleForm
from .models import Entitlement, SodRule
from .services import catalogue
from .views import _attempt, _get, _listing
from .views_findings import SEVERITY_RANK

SOD_RULE_SORTS = {
    "name": "name",
    "severity": "severity_rank",
    "action": "action",
    "status": "is_active",
    "created": "created_at",
}


def sod_rule_list_qs() -> QuerySet[SodRule]:
    """Every rule with its entitlements (and their systems) in one prefetch, worst severity sortable.

    The catalogue is readable by everyone who signs in, and so are the rules over it.
    """
    members = Entitlement.objects.select_related("system").order_by("system__name", "name", "pk")
    return (
        SodRule.objects.prefetch_related(Prefetch("entitlements", queryset=members))
        .alias(severity_rank=SEVERITY_RANK)
        .order_by("name", "pk")
    )


def _require_admin(request) -> None:
    if not policies.is_admin(request.user):
        raise PermissionDenied("Only admins define and change separation-of-duties rules.")


@login_required
def sod_rule_list(request):
    context = _listing(request, sod_rule_list_qs(), SodRuleFilter, SOD_RULE_SORTS, "name")
    context["can_manage"] = policies.is_admin(request.user)
    return render_list(request, "governance/sod_rule_list.html", "governance/sod_rule_results.html", context)


def _form_page(request, form: SodRuleForm, *, title: str, submit: str, rule: SodRule | None = None):
    """The rule form, errors beside their fields (400 when refused); an existing rule shows its status and trail."""
    context = {
        "form": form,
        "title": title,
        "submit": submit,
        "rule": rule,
        "back": reverse("governance:sod_rule_list"),
        "reason_form": ReasonForm(),
        "events": AuditEvent.objects.for_target(rule).order_by("-seq")[:20] if rule else [],
    }
    return render(request, "governance/sod_rule_form.html", context, status=400 if form.errors else 200)


def _save(request, form: SodRuleForm, service, success: str) -> bool:
    """Call the create or update service with the form's values; its refusals go beside the fields."""
    data = form.cleaned_data
    try:
        rule = service(
            actor=request.user,
            name=data["name"],
            entitlements=list(data["entitlements"]),
            severity=data["severity"],
            action=data["action"],
            description=data["description"],
        )
    except PermissionRefused as error:
        raise PermissionDenied(error.message) from None
    except DomainError as error:
        add_service_errors(form, error)
        return False
    messages.success(request, success.format(rule=rule))
    return True


@login_required
def sod_rule_create(request):
    _require_admin(request)
    form = SodRuleForm(request.POST or None)
    if (
        request.method == "POST"
        and form.is_valid()
        and _save(request, form, catalogue.sod_rule_create, "{rule} added.")
    ):
        return redirect("governance:sod_rule_list")
    return _form_page(request, form, title="Add a separation-of-duties rule", submit="Add")


@login_required
def sod_rule_edit(request, pk: int):
    _require_admin(request)
    rule = _get(SodRule.objects.prefetch_related("entitlements"), pk)
    form = SodRuleForm(request.POST or None, rule=rule)

    def update(**values):
        return catalogue.sod_rule_update(rule_id=rule.pk, **values)

    if request.method == "POST" and form.is_valid() and _save(request, form, update, "{rule} updated."):
        return redirect("governance:sod_rule_list")
    return _form_page(request, form, title=f"Edit {rule}", submit="Save", rule=rule)


def _status_action(request, pk: int, service, success: str):
    _require_admin(request)
    rule = _get(SodRule.objects.all(), pk)
    form = ReasonForm(request.POST)
    if form.is_valid():
        _attempt(
            request,
            lambda: service(rule_id=rule.pk, actor=request.user, reason=form.cleaned_data["reason"]),
            success.format(rule=rule),
        )
    else:
        messages.error(request, "Give a reason.")
    return redirect("governance:sod_rule_edit", rule.pk)


@login_required
@require_POST
def sod_rule_deactivate(request, pk: int):
    return _status_action(
        request, pk, catalogue.sod_rule_deactivate, "{rule} deactivated: new requests no longer check it."
    )


@login_required
@require_POST
def sod_rule_reactivate(request, pk: int):
    return _status_action(request, pk, catalogue.sod_rule_reactivate, "{rule} is active again.")
