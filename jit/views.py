"""Browser pages for access requests, approvals, JIT grants and notifications.

Views parse input, call one service and render; every page restricts to what the user may see
(others get 404), and a DomainError is shown as a message (a 4xx for htmx requests).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from audit.kernel.htmx import render_list
from audit.models import AuditEvent
from governance import policies as inventory
from governance import selectors as inventory_selectors
from governance.errors import DomainError, InvalidTransition, PermissionRefused
from governance.models import Grant
from governance.services.notifications import notifications_mark_read

from . import policies, selectors
from .choices import RequestStatus
from .forms import (
    AccessRequestForm,
    CatalogueFilterForm,
    DecisionForm,
    ExtendForm,
    NoRenewForm,
    QueueFilterForm,
    ReasonForm,
    RequestFilterForm,
    add_service_errors,
    duration_of,
)
from .models import AccessRequest
from .services.approvals import access_request_decide
from .services.lifecycle import grant_mark_no_renew
from .services.lifecycle import grant_release as grant_release_service
from .services.requests import (
    access_request_activate,
    access_request_cancel,
    access_request_preview,
    access_request_submit,
)

PAGE_SIZE = 25
NO_IDENTITY = (
    "Your login is not linked to an identity in the inventory, so you cannot request access yet. "
    "Ask an admin to link your login to your identity."
)


#
# Helpers
#
def _page(request, queryset, per_page: int = PAGE_SIZE):
    query = request.GET.copy()
    query.pop("page", None)
    return Paginator(queryset, per_page).get_page(request.GET.get("page")), query.urlencode()


def _next_url(request, default: str) -> str:
    candidate = request.POST.get("next") or request.GET.get("next")
    if candidate and url_has_allowed_host_and_scheme(candidate, {request.get_host()}, request.is_secure()):
        return candidate
    return default


def _error_response(request, error: DomainError, *, fallback_url: str):
    """htmx: the message in place with the error's status (409 for a conflict); else a flash and redirect."""
    if request.htmx:
        return render(
            request, "jit/_outcome.html", {"message": error.message, "level": "error"}, status=error.status_code
        )
    messages.error(request, error.message)
    return HttpResponseRedirect(fallback_url)


def _visible_request(user, pk: int) -> AccessRequest:
    """The request with its stages, if this user may see it; 404 otherwise (no existence leak)."""
    try:
        return selectors.request_get(user=user, pk=pk)
    except AccessRequest.DoesNotExist:
        raise Http404 from None


def _preview_context(user, entitlement, beneficiary, facts: dict, renewal_of=None) -> dict:
    if beneficiary is None:
        return {"entitlement": entitlement, "decision": None}
    decision, approvers = access_request_preview(
        actor=user, beneficiary=beneficiary, entitlement=entitlement, renewal_of=renewal_of, **facts
    )
    # What the person has yet to type (justification, ticket) is a reminder, not a refusal.
    to_complete = [m for name in ("justification", "ticket") for m in decision.field_errors.get(name, [])]
    return {
        "entitlement": entitlement,
        "beneficiary": beneficiary,
        "decision": decision,
        "to_complete": to_complete,
        "refusals": [reason for reason in decision.reasons if reason not in to_complete],
        "stages": [
            {"spec": spec, "approvers": people} for spec, people in zip(decision.stages, approvers, strict=True)
        ],
    }


#
# Requesting
#
@login_required
def request_catalogue(request):
    form = CatalogueFilterForm(request.GET or None)
    queryset = inventory_selectors.requestable_entitlements(user=request.user)
    if form.is_valid():
        data = form.cleaned_data
        if data["q"]:
            queryset = inventory_selectors.entitlements_matching(queryset, data["q"])
        if data["system"]:
            queryset = queryset.filter(system=data["system"])
        if data["risk_tier"]:
            queryset = queryset.filter(risk_tier=data["risk_tier"])
    queryset = selectors.with_my_standing(queryset, me=inventory.identity_of(request.user))
    page_obj, querystring = _page(request, queryset.order_by("system__name", "name", "pk"))
    return render_list(
        request,
        "jit/request_catalogue.html",
        "jit/_catalogue_results.html",
        {
            "filter_form": form,
            "page_obj": page_obj,
            "querystring": querystring,
            "has_identity": inventory.identity_of(request.user) is not None,
            "may_request": policies.may_request(request.user),
            "not_a_requester": policies.NOT_A_REQUESTER,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def request_create(request, entitlement_id: int):
    entitlement = get_object_or_404(inventory_selectors.requestable_entitlements(user=request.user), pk=entitlement_id)
    me = inventory.identity_of(request.user)
    if me is None:
        return render(request, "jit/request_create.html", {"entitlement": entitlement, "no_identity": NO_IDENTITY})
    if not policies.may_request(request.user):
        context = {"entitlement": entitlement, "no_identity": policies.NOT_A_REQUESTER}
        return render(request, "jit/request_create.html", context, status=403)
    beneficiaries = selectors.beneficiaries_for(user=request.user)
    if request.method == "POST":
        form = AccessRequestForm(request.POST, entitlement=entitlement, beneficiaries=beneficiaries)
        if form.is_valid():
            data = form.cleaned_data
            try:
                access_request = access_request_submit(
                    actor=request.user,
                    beneficiary_id=data["beneficiary"].pk,
                    entitlement_id=entitlement.pk,
                    duration=duration_of(data["duration_hours"]),
                    justification=data["justification"],
                    ticket=data["ticket"],
                    start_at=data["start_at"],
                    **form.intent_data(),
                )
            except DomainError as error:
                if not add_service_errors(form, error):
                    form.add_error(None, error.message)
            else:
                if access_request.status == RequestStatus.APPROVED:
                    messages.success(request, f"{access_request} was approved automatically.")
                else:
                    messages.success(request, f"{access_request} submitted; its approvers have been notified.")
                return redirect("jit:request_detail", pk=access_request.pk)
    else:
        form = AccessRequestForm(initial={"beneficiary": me}, entitlement=entitlement, beneficiaries=beneficiaries)
    if form.is_bound:
        beneficiary, facts = form.preview_facts()
    else:
        beneficiary, facts = me, {"duration": duration_of(form.default_hours)}
    context = {
        "entitlement": entitlement,
        "form": form,
        **_preview_context(request.user, entitlement, beneficiary, facts),
    }
    return render(request, "jit/request_create.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def request_preview(request, entitlement_id: int):
    """The policy preview panel (htmx): who would approve, for how long at most, any SoD conflict."""
    entitlement = get_object_or_404(inventory_selectors.requestable_entitlements(user=request.user), pk=entitlement_id)
    if inventory.identity_of(request.user) is None:
        return render(request, "jit/_outcome.html", {"message": NO_IDENTITY, "level": "warning"})
    if not policies.may_request(request.user):
        return render(
            request, "jit/_outcome.html", {"message": policies.NOT_A_REQUESTER, "level": "warning"}, status=403
        )
    form = AccessRequestForm(
        request.POST or request.GET,
        entitlement=entitlement,
        beneficiaries=selectors.beneficiaries_for(user=request.user),
    )
    beneficiary, facts = form.preview_facts()
    return render(request, "jit/_policy_preview.html", _preview_context(request.user, entitlement, beneficiary, facts))


@login_required
def request_list(request):
    form = RequestFilterForm(request.GET or None)
    status, order = "", "-created_at"
    if form.is_valid():
        status, order = form.cleaned_data["status"], form.cleaned_data["order"] or order
    page_obj, querystring = _page(request, selectors.request_list(user=request.user, status=status, order=order))
    return render_list(
        request,
        "jit/request_list.html",
        "jit/_request_results.html",
        {"filter_form": form, "page_obj": page_obj, "querystring": querystring},
    )


@login_required
def request_detail(request, pk: int):
    return _render_request_detail(request, _visible_request(request.user, pk))


def _render_request_detail(
    request, access_request: AccessRequest, decision_form=None, cancel_form=None, status: int = 200
):
    user, now = request.user, timezone.now()
    stages = list(access_request.stages.all())
    current = next((s for s in stages if s.status == "pending"), None) if access_request.is_pending else None
    may_decide = (
        current is not None
        and any(u.pk == user.pk for u in current.eligible.all())
        and policies.conflict_of_interest(user, access_request) is None
        and not any(a.approver_id == user.pk for s in stages for a in s.approvals.all())
    )
    holder = policies.is_beneficiary(user, access_request) or policies.owns_identity(user, access_request.beneficiary)
    context = {
        "req": access_request,
        "stages": stages,
        "current_stage": current,
        "may_decide": may_decide,
        "decision_form": decision_form
        or DecisionForm(initial={"stage_position": current.position if current else None}),
        "cancel_form": cancel_form or ReasonForm(),
        "may_cancel": (
            access_request.is_pending
            or (access_request.status == RequestStatus.APPROVED and access_request.grant_id is None)
        )
        and policies.can_cancel(user, access_request),
        "may_activate": (
            holder
            and access_request.status == RequestStatus.APPROVED
            and access_request.grant_id is None
            and access_request.activation_deadline is not None
            and access_request.activation_deadline > now
        ),
        "events": AuditEvent.objects.for_target(access_request).order_by("seq"),
    }
    return render(request, "jit/request_detail.html", context, status=status)


@login_required
@require_POST
def request_cancel(request, pk: int):
    access_request = _visible_request(request.user, pk)
    detail = reverse("jit:request_detail", args=[access_request.pk])
    form = ReasonForm(request.POST)
    if not form.is_valid():
        # A reason that cannot be kept is refused beside the field; nothing is cancelled (issue 11).
        return _render_request_detail(request, access_request, cancel_form=form, status=400)
    try:
        access_request_cancel(request_id=access_request.pk, actor=request.user, reason=form.cleaned_data["reason"])
    except DomainError as error:
        return _error_response(request, error, fallback_url=detail)
    messages.success(request, f"{access_request} cancelled.")
    return HttpResponseRedirect(detail)


@login_required
@require_POST
def request_activate(request, pk: int):
    access_request = _visible_request(request.user, pk)
    detail = reverse("jit:request_detail", args=[access_request.pk])
    try:
        access_request_activate(request_id=access_request.pk, actor=request.user)
    except DomainError as error:
        return _error_response(request, error, fallback_url=detail)
    messages.success(request, "Access activated; the system's owner has been asked to provision it.")
    return HttpResponseRedirect(detail)


#
# Approving
#
@login_required
def approval_queue(request):
    form = QueueFilterForm(request.GET or None)
    risk_tier, system_id = "", None
    if form.is_valid():
        risk_tier = form.cleaned_data["risk_tier"]
        system_id = form.cleaned_data["system"].pk if form.cleaned_data["system"] else None
    queryset = selectors.approval_queue(user=request.user, risk_tier=risk_tier, system_id=system_id)
    page_obj, querystring = _page(request, queryset)
    return render_list(
        request,
        "jit/approval_queue.html",
        "jit/_queue_results.html",
        {"filter_form": form, "page_obj": page_obj, "querystring": querystring},
    )


def _decision_outcome(access_request: AccessRequest, stage_position: int | None) -> str:
    if access_request.status == RequestStatus.DENIED:
        return f"Denied {access_request}. The requester has been told."
    if access_request.status == RequestStatus.FAILED:
        return f"Approved, but {access_request} could not be granted: {access_request.decision_note}"
    if access_request.status == RequestStatus.APPROVED:
        if access_request.activation_deadline and access_request.grant_id is None:
            return f"Approved {access_request}. The holder must activate it before its window closes."
        return f"Approved {access_request}. The grant goes to the system's owner for provisioning."
    stages = list(access_request.stages.order_by("position"))
    waiting = next((s for s in stages if s.status == "pending"), None)
    if waiting is not None and waiting.position == stage_position:
        return f"Your approval is recorded on {access_request}; stage {waiting.position} needs more approvers."
    return f"Stage {stage_position} of {access_request} approved; it now waits for stage {waiting.position}."


@login_required
@require_POST
def approval_decide(request, pk: int):
    user = request.user
    if not selectors.requests_visible_to(user).filter(pk=pk).exists():
        raise Http404
    queue_url = reverse("jit:approval_queue")
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _row_with_errors(request, pk, form)
    data = form.cleaned_data
    try:
        decided = access_request_decide(
            request_id=pk,
            approver=user,
            decision=data["decision"],
            comment=data["comment"],
            stage_position=data["stage_position"],
        )
    except (InvalidTransition, PermissionRefused) as error:
        # A conflict (409) or a refusal (403): in place for htmx, else back where the decision was made
        # (the request's page sends `next`) when that is a local URL, or the queue.
        return _error_response(request, error, fallback_url=_next_url(request, queue_url))
    except DomainError as error:
        if not add_service_errors(form, error):
            form.add_error(None, error.message)
        return _row_with_errors(request, pk, form)
    message = _decision_outcome(decided, data["stage_position"])
    level = messages.WARNING if decided.status == RequestStatus.FAILED else messages.SUCCESS
    if request.htmx:
        tag = messages.DEFAULT_TAGS[level]
        return render(request, "jit/_outcome.html", {"message": message, "level": tag, "req": decided})
    messages.add_message(request, level, message)
    return HttpResponseRedirect(_next_url(request, queue_url))


def _row_with_errors(request, pk: int, form: DecisionForm):
    """The queue row again, with the form's errors in it (htmx), or a flash on the queue."""
    errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
    if not request.htmx and _next_url(request, "") == reverse("jit:request_detail", args=[pk]):
        # Decided on the request's own page: that page again, the error beside the comment.
        return _render_request_detail(request, _visible_request(request.user, pk), decision_form=form, status=400)
    if not request.htmx:
        messages.error(request, errors or "Check the decision.")
        return HttpResponseRedirect(_next_url(request, reverse("jit:approval_queue")))
    row = selectors.approval_queue(user=request.user).filter(pk=pk).first()
    if row is None:
        return render(request, "jit/_outcome.html", {"message": errors, "level": "error"}, status=400)
    return render(request, "jit/_queue_row.html", {"req": row, "form": form}, status=400)


#
# Grants
#
@login_required
def my_grants(request):
    return render(request, "jit/my_grants.html", {"groups": selectors.my_grants(user=request.user)})


def _held_grant(user, pk: int) -> Grant:
    grant = selectors.holder_grants(user=user).filter(pk=pk).first()
    if grant is None:
        raise Http404
    return grant


@login_required
@require_http_methods(["GET", "POST"])
def grant_extend(request, pk: int):
    """Ask for more time: a renewal request, routed and possibly stepped up by the policy."""
    grant = _held_grant(request.user, pk)
    if not policies.may_request(request.user):
        raise PermissionDenied(policies.NOT_A_REQUESTER)  # an extension is a request
    form = ExtendForm(request.POST or None, grant=grant)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            access_request = access_request_submit(
                actor=request.user,
                beneficiary_id=grant.identity_id,
                entitlement_id=grant.entitlement_id,
                duration=duration_of(data["duration_hours"]),
                justification=data["justification"],
                ticket=data["ticket"],
                renewal_of_id=grant.pk,
            )
        except DomainError as error:
            if not add_service_errors(form, error):
                form.add_error(None, error.message)
        else:
            messages.success(request, f"Extension requested: {access_request}.")
            return redirect("jit:request_detail", pk=access_request.pk)
    hours = form.asked_hours() or form.default_hours
    facts = {"duration": duration_of(hours) if hours else None}
    context = {
        "grant": grant,
        "form": form,
        **_preview_context(request.user, grant.entitlement, grant.identity, facts, renewal_of=grant),
    }
    return render(request, "jit/grant_extend.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def grant_release(request, pk: int):
    """Give access back early: a confirmation page, then the release."""
    grant = _held_grant(request.user, pk)
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            grant_release_service(grant_id=grant.pk, actor=request.user, reason=form.cleaned_data["reason"])
        except DomainError as error:
            return _error_response(request, error, fallback_url=reverse("jit:my_grants"))
        messages.success(request, f"{grant.entitlement.name} released; the system's owner has been asked to remove it.")
        return redirect("jit:my_grants")
    return render(request, "jit/grant_release.html", {"grant": grant, "form": form})


@login_required
@require_POST
def grant_no_renew(request, pk: int):
    grant = inventory_selectors.grant_list(user=request.user).filter(pk=pk).first()
    if grant is None:
        grant = selectors.holder_grants(user=request.user).filter(pk=pk).first()
    if grant is None:
        raise Http404
    back = _next_url(request, reverse("jit:my_grants"))
    form = NoRenewForm(request.POST)
    if not form.is_valid():
        # Refused, never cut short: the note is kept whole or not at all.
        messages.error(request, f"Note: {' '.join(form.errors['note'])}")
        return HttpResponseRedirect(back)
    try:
        grant_mark_no_renew(grant_id=grant.pk, actor=request.user, note=form.cleaned_data["note"])
    except DomainError as error:
        return _error_response(request, error, fallback_url=back)
    messages.success(request, f"{grant.entitlement.name} for {grant.identity.name} will not be renewed.")
    return HttpResponseRedirect(back)


#
# Notifications
#
@login_required
def notification_list(request):
    page_obj, querystring = _page(request, selectors.notification_list(user=request.user), per_page=30)
    return render_list(
        request,
        "jit/notification_list.html",
        "jit/_notification_results.html",
        {"page_obj": page_obj, "querystring": querystring},
    )


@login_required
@require_POST
def notifications_read(request):
    count = notifications_mark_read(user=request.user)
    messages.success(request, f"{count} notification{'s' if count != 1 else ''} marked read.")
    return HttpResponseRedirect(_next_url(request, reverse("jit:notification_list")))
