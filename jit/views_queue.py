"""The approver's pages: the queue, a decision on one card or a selection, and out of office.

Views parse input, call one service and render. A card answers in place (htmx): the decision's
outcome replaces it, and the queue's empty state appears when nothing is left. Every request
acted on is first checked to be visible to the user (others get 404: no existence leak).
"""

from functools import partial

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from audit.kernel import clock
from audit.kernel.htmx import render_list
from audit.kernel.pagination import DeferredJoinPaginator
from governance import policies as inventory
from governance.errors import DomainError, InvalidTransition, PermissionRefused

from . import policies, selectors, selectors_queue
from .choices import RequestStatus
from .forms import add_service_errors
from .forms_queue import (
    DECISION_SERVICE_FIELDS,
    AbsenceForm,
    BulkDecisionForm,
    QueueDecisionForm,
    QueueFilterForm,
    deputy_label,
)
from .models import AccessRequest
from .services.approvals import access_request_decide, access_requests_decide_many
from .services.deputies import approver_absence_end, approver_absence_set
from .views import _error_response, _next_url, _render_request_detail, _visible_request

# Cards, not table rows: each carries the beneficiary's holdings, conflicts and earlier stages and its
# own decision form (~4 KB of HTML). Twenty fill a long scroll; "select all" decides one page.
QUEUE_PAGE_SIZE = 20


def _filters_of(request) -> QueryDict:
    """The queue's filters an action was taken under: the page's query string, or for a card's own
    form the `query` it carries (its URL stays the card's, so every card posts to the same place)."""
    if request.GET or request.method != "POST":
        return request.GET
    query = request.POST.get("query", "")
    return QueryDict(query if "\n" not in query else "")


def _queue_url(request) -> str:
    """The queue with the filters the action was taken under."""
    query = _filters_of(request).urlencode()
    return reverse("jit:approval_queue") + (f"?{query}" if query else "")


def _filter_form(request) -> QueueFilterForm:
    return QueueFilterForm(_filters_of(request) or None)


def _filtered(request) -> bool:
    filters = _filters_of(request)
    return any(filters.get(name) for name in ("requester", "risk_tier", "system", "waiting"))


def _queue_context(request, *, bulk_form=None, results=None) -> dict:
    user = request.user
    form = _filter_form(request)
    filters = form.filters()
    # Keys first, then the cards' rows by key: one query more, each far cheaper for PostgreSQL to plan.
    # The keys and (unless narrowed) the count come by SQL built once per process: the queryset of
    # the rows is built only where those cannot tell (a risk or system filter, a deep page).
    paginator = DeferredJoinPaginator(
        partial(selectors_queue.queue_rows, user=user, **filters),
        QUEUE_PAGE_SIZE,
        load=selectors_queue.queue_page,
        keys=selectors_queue.queue_keys(user=user, per_page=QUEUE_PAGE_SIZE, **filters),
        counted=selectors_queue.queue_count(user=user, **filters),
    )
    page_obj = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    querystring = query.urlencode()
    away, covering = selectors_queue.queue_absences(user=user)  # the page's banners; covering: the cards' deputy badges
    page_obj.object_list = selectors_queue.queue_cards(list(page_obj.object_list), user=user, covering=covering)
    return {
        "filter_form": form,
        "page_obj": page_obj,
        "querystring": querystring,
        "bulk_form": bulk_form or BulkDecisionForm(),
        "results": results or [],
        "filtered": _filtered(request),
        "may_read_inventory": selectors_queue.may_read_inventory(user),
        "away": away,
        "covering": covering,
        "read_only": inventory.is_read_only(user),
    }


@login_required
def approval_queue(request):
    """Requests waiting for my decision, with what I need to judge each, and the filters to find them."""
    return render_list(request, "jit/approval_queue.html", "jit/_queue_results.html", _queue_context(request))


#
# One card
#
def _decision_outcome(access_request: AccessRequest, stage_position: int | None) -> str:
    if access_request.status == RequestStatus.DENIED:
        return f"Denied {access_request}. The requester has been told."
    if access_request.status == RequestStatus.FAILED:
        return f"Approved, but {access_request} could not be granted: {access_request.decision_note}"
    if access_request.status == RequestStatus.APPROVED:
        if access_request.activation_deadline and access_request.grant_id is None:
            return f"Approved {access_request}. The holder must activate it before its window closes."
        if access_request.grant_id is None and access_request.start_at:
            return f"Approved {access_request}. It starts at {access_request.start_at:%Y-%m-%d %H:%M} UTC."
        return f"Approved {access_request}. The grant goes to the system's owner for provisioning."
    stages = list(access_request.stages.order_by("position"))
    waiting = next((s for s in stages if s.status == "pending"), None)
    if waiting is not None and waiting.position == stage_position:
        return f"Your approval is recorded on {access_request}; stage {waiting.position} needs more approvers."
    return f"Stage {stage_position} of {access_request} approved; it now waits for stage {waiting.position}."


def _queue_left(request) -> bool:
    """Anything left in the queue under the filters the card was decided in (the page's query string)."""
    return selectors_queue.queue_rows(user=request.user, **_filter_form(request).filters()).exists()


@login_required
@require_POST
def approval_decide(request, pk: int):
    """Approve (maybe for less time, or from later) or deny one request; a card answers in place."""
    user = request.user
    if not selectors.requests_visible_to(user).filter(pk=pk).exists():
        raise Http404
    queue_url = _queue_url(request)
    form = QueueDecisionForm(request.POST)
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
            **form.narrowing(),
        )
    except (InvalidTransition, PermissionRefused) as error:
        # A conflict (409) or a refusal (403): in place for htmx, else back where the decision was made
        # (the request's page sends `next`) when that is a local URL, or the queue.
        return _error_response(request, error, fallback_url=_next_url(request, queue_url))
    except DomainError as error:
        if not add_service_errors(form, error, DECISION_SERVICE_FIELDS):
            form.add_error(None, error.message)
        return _row_with_errors(request, pk, form)
    message = _decision_outcome(decided, data["stage_position"])
    level = messages.WARNING if decided.status == RequestStatus.FAILED else messages.SUCCESS
    if request.htmx:
        context = {"message": message, "level": messages.DEFAULT_TAGS[level], "req": decided}
        context["queue_empty"], context["filtered"] = not _queue_left(request), _filtered(request)
        return render(request, "jit/_outcome.html", context)
    messages.add_message(request, level, message)
    return HttpResponseRedirect(_next_url(request, queue_url))


def _card(request, pk: int):
    """One card of my queue with its context, or None when it is no longer in my queue."""
    keys = list(selectors_queue.queue_rows(user=request.user).filter(pk=pk).values_list("pk", flat=True))
    rows = selectors_queue.queue_page(keys)
    return selectors_queue.queue_cards(rows, user=request.user)[0] if rows else None


def _row_with_errors(request, pk: int, form: QueueDecisionForm):
    """The card again, with the form's errors in it (htmx), or a flash on the queue."""
    errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
    if not request.htmx and _next_url(request, "") == reverse("jit:request_detail", args=[pk]):
        # Decided on the request's own page: that page again, the error beside the comment.
        return _render_request_detail(request, _visible_request(request.user, pk), decision_form=form, status=400)
    if not request.htmx:
        messages.error(request, errors or "Check the decision.")
        return HttpResponseRedirect(_next_url(request, _queue_url(request)))
    card = _card(request, pk)
    if card is None:
        return render(request, "jit/_outcome.html", {"message": errors, "level": "error"}, status=400)
    context = {
        "req": card,
        "form": form,
        "querystring": _filters_of(request).urlencode(),
        "may_read_inventory": selectors_queue.may_read_inventory(request.user),
    }
    return render(request, "jit/_queue_row.html", context, status=400)


#
# A selection
#
@login_required
@require_POST
def approval_decide_many(request):
    """Approve or deny the selected cards at once (a denial needs a comment); each is reported.

    Each decision is its own transaction (`access_requests_decide_many` says why): one that lost a
    race is reported beside the others, which stand. A selection naming a request the user may not
    see decides nothing (404), so the page is no oracle for other people's requests.
    """
    user = request.user
    if inventory.is_read_only(user):
        raise PermissionDenied(policies.READ_ONLY)
    form = BulkDecisionForm(request.POST)
    if form.is_valid():
        selection = form.cleaned_data["selected"]
        wanted = {pk for pk, _stage in selection}
        if len(wanted) != selectors.requests_visible_to(user).filter(pk__in=wanted).count():
            raise Http404
        try:
            outcomes = access_requests_decide_many(
                approver=user,
                selection=selection,
                decision=form.cleaned_data["decision"],
                comment=form.cleaned_data["comment"],
            )
        except DomainError as error:
            if not add_service_errors(form, error):
                form.add_error(None, error.message)
        else:
            results = [
                {
                    "ok": outcome.ok,
                    "pk": outcome.request_id,
                    "message": _decision_outcome(outcome.request, stage)
                    if outcome.ok
                    else f"Request #{outcome.request_id}: {outcome.error.message}",
                    "level": "warning"
                    if outcome.ok and outcome.request.status == RequestStatus.FAILED
                    else ("success" if outcome.ok else "error"),
                }
                for outcome, (_pk, stage) in zip(outcomes, selection, strict=True)
            ]
            if not request.htmx:
                for result in results:
                    messages.add_message(
                        request, messages.ERROR if result["level"] == "error" else messages.SUCCESS, result["message"]
                    )
                return HttpResponseRedirect(_queue_url(request))
            return render(request, "jit/_queue_results.html", _queue_context(request, results=results))
    if not request.htmx:
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        messages.error(request, errors or "Check the selection.")
        return HttpResponseRedirect(_queue_url(request))
    context = _queue_context(request, bulk_form=form)
    selected = set(request.POST.getlist("selected"))
    for card in context["page_obj"].object_list:
        card.is_selected = f"{card.pk}:{card.current_position}" in selected  # ticked again beside the error
    return render(request, "jit/_queue_results.html", context, status=400)


#
# Out of office
#
@login_required
@require_http_methods(["GET", "POST"])
def approval_absence(request):
    """Name a deputy for a period away, see who stands in for whom, end an absence early."""
    user = request.user
    read_only = inventory.is_read_only(user)
    if request.method == "POST" and read_only:
        raise PermissionDenied(policies.READ_ONLY)
    here = reverse("jit:approval_absence")
    form = AbsenceForm(
        request.POST if request.method == "POST" and "end" not in request.POST else None,
        deputies=selectors_queue.deputy_choices(user=user),
    )
    if request.method == "POST" and "end" in request.POST:
        end = request.POST.get("end", "")
        if not end.isdigit() or not selectors_queue.my_absences(user=user).filter(pk=int(end)).exists():
            raise Http404
        try:
            approver_absence_end(actor=user, absence_id=int(end))
        except DomainError as error:
            messages.error(request, error.message)
        else:
            messages.success(
                request, "Your absence is ended; requests come to you again. Those already shared stay shared."
            )
        return HttpResponseRedirect(here)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                absence = approver_absence_set(
                    actor=user,
                    deputy_id=data["deputy"].pk,
                    starts_at=data["starts_at"] or clock.now(),  # the service takes the database's "now"
                    ends_at=data["ends_at"],
                    reason=data["reason"],
                )
            except PermissionRefused as error:
                raise PermissionDenied(error.message) from None
            except DomainError as error:
                if not add_service_errors(form, error, {}):
                    form.add_error(None, error.message)
            else:
                messages.success(
                    request,
                    f"Out of office from {absence.starts_at:%Y-%m-%d %H:%M} to {absence.ends_at:%Y-%m-%d %H:%M} UTC: "
                    f"{deputy_label(data['deputy'])} decides for you meanwhile and has been told.",
                )
                return HttpResponseRedirect(here)
        status = 400
    context = {
        "form": form,
        "absences": list(selectors_queue.my_absences(user=user)),
        "covering": list(selectors_queue.absences_i_cover(user=user)),
        "read_only": read_only,
    }
    return render(request, "jit/approval_absence.html", context, status=status)
