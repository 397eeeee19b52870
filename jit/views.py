"""Browser pages for access requests, approvals, JIT grants and notifications.

Views parse input, call one service and render; every page restricts to what the user may see
(others get 404), and a DomainError is shown as a message (a 4xx for htmx requests).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from audit.kernel.htmx import render_list
from audit.kernel.pagination import CappedCountPaginator
from governance import policies as inventory
from governance import selectors as inventory_selectors
from governance.choices import GrantStatus
from governance.errors import DomainError
from governance.forms_campaigns import TIME_ZONE_SESSION_KEY
from governance.models import Grant
from governance.services.notifications import notifications_mark_read

from . import policies, selectors, selectors_catalogue
from .choices import RequestStatus
from .forms import (
    MAX_TOGETHER,
    SERVICE_FIELDS,
    AccessRequestForm,
    CatalogueFilterForm,
    DecisionForm,
    ExtendForm,
    NoRenewForm,
    ReasonForm,
    RequestFilterForm,
    add_service_errors,
    duration_of,
    duration_words,
)
from .models import AccessRequest
from .services.lifecycle import grant_mark_no_renew
from .services.lifecycle import grant_release as grant_release_service
from .services.requests import (
    access_request_activate,
    access_request_cancel,
    access_request_preview,
    access_request_submit,
    access_request_submit_many,
)

PAGE_SIZE = 25
SUBMIT_LABEL = "Submit request"
EXTEND_LABEL = "Request the extension"
# The policy's words for a duration over the limit (jit.policy.evaluate), which the pages say in their own.
POLICY_TOO_LONG = ("The maximum duration for this entitlement is", "This grant still has")
# Refusals the person can put right on the form; any other refusal means the request cannot go in.
FIXABLE_FIELDS = ("duration", "start_at", "justification", "ticket", "beneficiary")
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
    return CappedCountPaginator(queryset, per_page).get_page(request.GET.get("page")), query.urlencode()


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


def _preview_context(
    user,
    entitlements: list,
    beneficiary,
    facts: dict,
    renewal_of=None,
    form=None,
    submit_label: str = "",
    too_long: str = "",
) -> dict:
    """The policy preview of what the form would submit: one decision per entitlement.

    Each is judged with the others counted as held (they are in flight once submitted), for the
    duration asked cut to its own maximum. A refusal the form already shows beside a field is not
    said again here; a refusal no field can fix (a separation-of-duties block, an entitlement that
    cannot be requested, nobody to approve) blocks submitting, and a conflict names the other
    entitlement and what to do about it. `too_long`: the page's own words for a duration over the
    limit, said instead of the policy's (the extend page says it in plain units).
    """
    entitlement = entitlements[0]
    base = {"entitlement": entitlement, "entitlements": entitlements, "submit_label": submit_label}
    if beneficiary is None:
        return {**base, "decision": None, "items": [], "blocked": False}
    beside = {name for name in (form.errors if form is not None and form.is_bound else {})}
    together = frozenset(e.pk for e in entitlements) if len(entitlements) > 1 else frozenset()
    asked = facts.get("duration")
    items = []
    for each in entitlements:
        own = dict(facts)
        cap = each.effective_max_duration
        capped = bool(together) and asked is not None and asked > cap
        if capped:
            own["duration"] = cap
        decision, approvers = access_request_preview(
            actor=user, beneficiary=beneficiary, entitlement=each, renewal_of=renewal_of, asked_with=together, **own
        )
        # What the person has yet to type (justification, ticket) is a reminder, not a refusal.
        to_complete = [m for name in ("justification", "ticket") for m in decision.field_errors.get(name, [])]
        shown = {
            m for name, msgs in decision.field_errors.items() if SERVICE_FIELDS.get(name, name) in beside for m in msgs
        }
        fixable = {m for name in FIXABLE_FIELDS for m in decision.field_errors.get(name, [])}
        refusals = [r for r in decision.reasons if r not in to_complete and r not in shown]
        if too_long:
            refusals = [too_long if r.startswith(POLICY_TOO_LONG) else r for r in refusals]
        items.append(
            {
                "entitlement": each,
                "decision": decision,
                "capped": capped,
                "to_complete": to_complete,
                "refusals": refusals,
                "beside_fields": bool(shown) and not refusals,
                "blocking": [r for r in decision.reasons if r not in fixable and r not in to_complete],
                "stages": [
                    {"spec": spec, "approvers": people} for spec, people in zip(decision.stages, approvers, strict=True)
                ],
            }
        )
    selectors.name_conflicts(items, beneficiary=beneficiary, together=together)
    first = items[0]
    return {
        **base,
        "beneficiary": beneficiary,
        "items": items,
        "decision": first["decision"],
        "to_complete": first["to_complete"],
        "refusals": first["refusals"],
        "stages": first["stages"],
        "blocked": any(item["blocking"] for item in items),
    }


#
# Requesting
#
@login_required
def request_catalogue(request):
    if request.GET.get("go"):
        return _request_together(request)
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
    queryset = selectors.catalogue_order(queryset, request.GET.get("sort", ""))
    page_obj = _CataloguePages(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render_list(
        request,
        "jit/request_catalogue.html",
        "jit/_catalogue_results.html",
        {
            "filter_form": form,
            "page_obj": page_obj,
            "querystring": query.urlencode(),
            "has_identity": inventory.identity_of(request.user) is not None,
            "may_request": policies.may_request(request.user),
            "not_a_requester": policies.NOT_A_REQUESTER,
            "max_together": MAX_TOGETHER,
        },
    )


class _CataloguePages(CappedCountPaginator):
    """The catalogue's pages, each read as the rows it shows (`catalogue_rows`: values and links, in
    one query as the page's model instances were)."""

    def rows(self, bottom: int, top: int):
        return selectors_catalogue.catalogue_rows(super().rows(bottom, top))


def _request_together(request):
    """The catalogue's "request the selected": the form of the first, with the others added to it."""
    wanted = [int(v) for v in request.GET.getlist("together") if v.isdigit()]
    found = list(
        inventory_selectors.requestable_entitlements(user=request.user)
        .filter(pk__in=wanted)
        .order_by("system__name", "name", "pk")
        .values_list("pk", flat=True)[:MAX_TOGETHER]
    )
    if not found:
        messages.error(request, "Tick at least one entitlement to request.")
        return redirect("jit:request_catalogue")
    url = reverse("jit:request_create", args=[found[0]])
    rest = "&".join(f"also={pk}" for pk in found[1:])
    return HttpResponseRedirect(f"{url}?{rest}" if rest else url)


def _request_form(request, entitlement, data=None) -> AccessRequestForm:
    requestable = inventory_selectors.requestable_entitlements(user=request.user)
    return AccessRequestForm(
        data,
        initial=None if data is not None else {"beneficiary": inventory.identity_of(request.user)},
        entitlement=entitlement,
        beneficiaries=selectors.beneficiaries_for(user=request.user),
        requestable=requestable,
        also=request.GET.getlist("also"),
        time_zone=request.session.get(TIME_ZONE_SESSION_KEY),
    )


def _submitted_message(made: list[AccessRequest]) -> str:
    def said(access_request: AccessRequest) -> str:
        name = access_request.entitlement.name
        if access_request.status == RequestStatus.APPROVED:
            if access_request.activation_deadline and access_request.grant_id is None:
                return f"{access_request} ({name}) approved automatically by policy, ready to activate"
            return f"{access_request} ({name}) approved automatically by policy"
        return f"{access_request} ({name}) waits for its approvers"

    if len(made) == 1:
        access_request = made[0]
        if access_request.status == RequestStatus.APPROVED:
            return f"{access_request} was approved automatically by policy."
        return f"{access_request} submitted; its approvers have been notified."
    return f"{len(made)} requests submitted, one decision each: " + "; ".join(said(r) for r in made) + "."


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
    form = _request_form(request, entitlement, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        request.session[TIME_ZONE_SESSION_KEY] = data["time_zone"]
        asked = {
            "actor": request.user,
            "beneficiary_id": data["beneficiary"].pk,
            "duration": duration_of(data["duration_hours"]),
            "justification": data["justification"],
            "ticket": data["ticket"],
            "start_at": data["start_at"],
            **form.intent_data(),
        }
        try:
            if len(form.together) > 1:
                made = access_request_submit_many(entitlement_ids=[e.pk for e in form.together], **asked)
            else:
                made = [access_request_submit(entitlement_id=entitlement.pk, **asked)]
        except DomainError as error:
            placed = add_service_errors(form, error)
            for line in (error.field_errors or {}).get("entitlements", []):
                form.add_error(None, line)
            if not placed and not (error.field_errors or {}).get("entitlements"):
                form.add_error(None, error.message)
        else:
            messages.success(request, _submitted_message(made))
            if len(made) == 1:
                return redirect("jit:request_detail", pk=made[0].pk)
            return redirect("jit:request_list")
    if form.is_bound:
        beneficiary, facts = form.preview_facts()
    else:
        beneficiary, facts = me, {"duration": duration_of(form.default_hours)}
    context = {
        "form": form,
        **_preview_context(
            request.user,
            form.together,
            beneficiary,
            facts,
            form=form,
            submit_label=SUBMIT_LABEL,
            too_long=form.too_long,
        ),
        "entitlement": entitlement,
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
    form = _request_form(request, entitlement, request.POST or request.GET)
    beneficiary, facts = form.preview_facts()
    context = _preview_context(
        request.user, form.together, beneficiary, facts, submit_label=SUBMIT_LABEL, too_long=form.too_long
    )
    return render(request, "jit/_policy_preview.html", {**context, "swap_actions": True})


# What the list shows beside each request (jit/_request_results.html): of the ten joins a request's own page
# needs (`selectors.REQUEST_JOINS`), these two; the other eight cost more to plan than the page's rows.
REQUEST_LIST_JOINS = ("beneficiary", "entitlement__system")


@login_required
def request_list(request):
    form = RequestFilterForm(request.GET or None)
    status, order = "", "-created_at"
    if form.is_valid():
        status, order = form.cleaned_data["status"], form.cleaned_data["order"] or order
    rows = selectors.request_list(user=request.user, status=status, order=order)
    page_obj, querystring = _page(request, rows.select_related(None).select_related(*REQUEST_LIST_JOINS))
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
    # Approved and waiting for its holder, within the window: once activated, the window is history.
    awaiting_activation = (
        access_request.status == RequestStatus.APPROVED
        and access_request.grant_id is None
        and access_request.activation_deadline is not None
        and access_request.activation_deadline > now
    )
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
        "awaiting_activation": awaiting_activation,
        "may_activate": holder and awaiting_activation and policies.can_activate(user, access_request),
        "history": selectors.request_history(access_request),
        "asked_together": selectors.asked_together(access_request),
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
    back = _next_url(request, reverse("jit:request_detail", args=[access_request.pk]))
    try:
        activated = access_request_activate(request_id=access_request.pk, actor=request.user)
    except DomainError as error:
        return _error_response(request, error, fallback_url=back)
    name = activated.entitlement.name
    if activated.grant is not None and activated.grant.status == GrantStatus.ACTIVE:
        messages.success(request, f"{name} activated: the access is in force.")
    else:
        messages.success(request, f"{name} activated; the system's owner has been asked to provision it.")
    return HttpResponseRedirect(back)


#
# Grants
#
@login_required
def my_grants(request):
    context = {
        "groups": selectors.my_grants(user=request.user),
        "ready_to_activate": list(selectors.ready_to_activate(user=request.user)),
    }
    return render(request, "jit/my_grants.html", context)


def _held_grant(user, pk: int) -> Grant:
    grant = selectors.holder_grants(user=user).filter(pk=pk).first()
    if grant is None:
        raise Http404
    return grant


@login_required
@require_http_methods(["GET", "POST"])
def grant_extend(request, pk: int):
    """Ask for more time: a renewal request, routed and possibly stepped up by the policy.

    The page's preview follows the duration as it changes (htmx posts `_preview`: nothing is
    submitted, the panel comes back)."""
    grant = _held_grant(request.user, pk)
    if not policies.may_request(request.user):
        raise PermissionDenied(policies.NOT_A_REQUESTER)  # an extension is a request
    form = ExtendForm(request.POST or None, grant=grant)
    previewing = request.method == "POST" and request.POST.get("_preview") == "1"
    if request.method == "POST" and not previewing and form.is_valid():
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
    preview = _preview_context(
        request.user,
        [grant.entitlement],
        grant.identity,
        facts,
        renewal_of=grant,
        # The preview follows what is typed; the errors beside the fields come with a real submit.
        form=None if previewing else form,
        submit_label=EXTEND_LABEL,
        too_long=form.too_long,
    )
    preview["room"] = duration_words(duration_of(form.max_hours))
    if previewing:
        return render(request, "jit/_policy_preview.html", {**preview, "swap_actions": True})
    return render(request, "jit/grant_extend.html", {"grant": grant, "form": form, **preview})


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
    """My notifications, newest first; `?open=<id>` marks one read and goes where its action is."""
    opened = request.GET.get("open", "")
    if opened.isdigit():
        note = selectors.notification_list(user=request.user).filter(pk=int(opened)).first()
        if note is None:
            raise Http404
        notifications_mark_read(user=request.user, ids=[note.pk])
        local = note.link and url_has_allowed_host_and_scheme(note.link, {request.get_host()}, request.is_secure())
        return HttpResponseRedirect(note.link if local else reverse("jit:notification_list"))
    page_obj, querystring = _page(request, selectors.notification_list(user=request.user), per_page=30)
    selectors.notifications_about(page_obj.object_list)
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
