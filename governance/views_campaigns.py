"""Certification pages: campaigns (admins define and launch, auditors and owners read) and the
reviewer's queue ("My reviews"). Views parse input, call one service and render; what each person
sees comes from `selectors_certification` (others get 404), and changes the policies refuse are 403.
"""

import django_filters
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, F, IntegerField, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST

from audit.kernel.htmx import render_list
from audit.kernel.pagination import DeferredJoinPaginator

from . import policies, selectors
from .certification_reasons import reasons_of
from .certification_reports import may_read_all_reports, may_read_campaign_report
from .choices import GrantKind, IdentityKind, RiskTier
from .errors import DomainError, InvalidTransition, PermissionRefused
from .forms import add_service_errors
from .forms_campaigns import (
    TIME_ZONE_SESSION_KEY,
    BulkDecisionForm,
    CampaignForm,
    CancelForm,
    DecisionForm,
    ItemFilterForm,
    QueueFilterForm,
    ReassignForm,
    default_due,
)
from .models import Campaign, CampaignStatus, Entitlement, Grant, Identity, ReviewItem, System
from .models.certification import CampaignKind, Decision, RemediationStatus, UndecidedRule
from .querysets import in_force_q
from .selectors_certification import (
    campaign_items_visible_to,
    campaign_preview,
    campaign_progress,
    campaigns_visible_to,
    review_queue,
)
from .services import certification as service
from .views import _attempt, _get, _listing

PAGE_SIZE = 50

# What a review row shows, loaded with the page's rows whatever their number: the grant's evidence,
# the request that produced it (jit's AccessRequest, followed by its related name: governance does
# not import jit) and who approved that request.
ROW_JOINS = (
    "campaign",
    "identity__owner",
    "identity__backup_owner",
    "identity__user",
    "entitlement__system",
    "grant__source_request__requester__identity",
    "reviewer__identity",
    "decided_by__identity",
)
ROW_PREFETCH = ("grant__source_request__approvals__approver__identity",)


def _with_grants_held(items):
    """Each row with `grants_held`: how many grants in force its identity holds (an identity item's
    evidence), as a subquery of the page's one statement."""
    held = (
        Grant.objects.filter(identity_id=OuterRef("identity_id"))
        .filter(in_force_q())
        .order_by()
        .values("identity_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return items.annotate(grants_held=Coalesce(Subquery(held, output_field=IntegerField()), Value(0)))


def _may_decide_anything(user) -> None:
    if policies.is_read_only(user):
        raise PermissionDenied("Auditors read campaigns; they decide nothing.")


def _require_manager(user) -> None:
    if not policies.can_manage_campaigns(user):
        raise PermissionDenied("Only admins define, launch and close campaigns.")


def _refusal_as_403(call):
    try:
        return call()
    except PermissionRefused as error:
        raise PermissionDenied(error.message) from None


def _with_reasons(items) -> list:
    for item in items:
        item.reasons = reasons_of(item.reason_flags)
    return items


#
# Campaigns
#
class CampaignFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Search")
    status = django_filters.ChoiceFilter(choices=CampaignStatus.choices, label="Status")
    kind = django_filters.ChoiceFilter(choices=CampaignKind.choices, label="Kind")

    class Meta:
        model = Campaign
        fields = ["q", "status", "kind"]


CAMPAIGN_SORTS = {
    "name": "name",
    "status": "status",
    "kind": "kind",
    "due": "due_at",
    "items": "items_total",
    "created": "created_at",
}


@login_required
def campaign_list(request):
    """Every campaign the person may read: admins and auditors all, owners those on what they own,
    reviewers those they have items in (the selector decides)."""
    campaigns = campaigns_visible_to(request.user).annotate(decided=Count("items", filter=~Q(items__decision="")))
    context = _listing(request, campaigns, CampaignFilter, CAMPAIGN_SORTS, "-created")
    context.update(
        can_manage=policies.can_manage_campaigns(request.user),
        may_read_reports=may_read_all_reports(request.user),
    )
    return render_list(request, "governance/campaign_list.html", "governance/campaign_list_results.html", context)


def _zone(request) -> str | None:
    """The time zone this person last read campaign dates in, if any."""
    return request.session.get(TIME_ZONE_SESSION_KEY)


def _campaign_form_page(request, form, *, title: str, campaign=None):
    return render(
        request,
        "governance/campaign_form.html",
        {"form": form, "title": title, "campaign": campaign},
        status=400 if form.errors else 200,
    )


@login_required
def campaign_create(request):
    _require_manager(request.user)
    if request.method != "POST":
        form = CampaignForm(initial={"due_at": default_due()}, time_zone=_zone(request))
        return _campaign_form_page(request, form, title="New campaign")
    form = CampaignForm(request.POST, time_zone=_zone(request))
    if form.is_valid():
        request.session[TIME_ZONE_SESSION_KEY] = form.cleaned_data["time_zone"]
        fields = form.campaign_fields()
        try:
            campaign = _refusal_as_403(
                lambda: service.campaign_create(
                    actor=request.user, name=fields.pop("name"), due_at=fields.pop("due_at"), **fields
                )
            )
        except DomainError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Draft “{campaign.name}” saved. Check the preview, then launch it.")
            return HttpResponseRedirect(_detail_url(campaign))
    return _campaign_form_page(request, form, title="New campaign")


def _detail_url(campaign) -> str:
    return reverse("governance:campaign_detail", args=[campaign.pk])


def _managed_campaign(request, pk: int) -> Campaign:
    _require_manager(request.user)
    return _get(Campaign.objects.all(), pk)


@login_required
def campaign_edit(request, pk: int):
    campaign = _managed_campaign(request, pk)
    if campaign.status != CampaignStatus.DRAFT:
        messages.error(request, f"{campaign} is {campaign.get_status_display().lower()}: only a draft is edited.")
        return HttpResponseRedirect(_detail_url(campaign))
    title = f"Edit {campaign.name}"
    if request.method != "POST":
        return _campaign_form_page(
            request, CampaignForm(campaign=campaign, time_zone=_zone(request)), title=title, campaign=campaign
        )
    form = CampaignForm(request.POST, campaign=campaign, time_zone=_zone(request))
    if form.is_valid():
        request.session[TIME_ZONE_SESSION_KEY] = form.cleaned_data["time_zone"]
        try:
            _refusal_as_403(
                lambda: service.campaign_update(
                    campaign_id=campaign.pk, actor=request.user, changes=form.campaign_fields()
                )
            )
        except DomainError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Draft “{form.cleaned_data['name']}” saved.")
            return HttpResponseRedirect(_detail_url(campaign))
    return _campaign_form_page(request, form, title=title, campaign=campaign)


@login_required
def campaign_cancel(request, pk: int):
    campaign = _managed_campaign(request, pk)
    form = CancelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        reason = form.cleaned_data["reason"]
        if _attempt(
            request,
            lambda: service.campaign_cancel(campaign_id=campaign.pk, actor=request.user, reason=reason),
            f"Cancelled {campaign}: nothing more is asked of its reviewers.",
        ):
            return HttpResponseRedirect(_detail_url(campaign))
    return render(
        request,
        "governance/form_page.html",
        {
            "form": form,
            "title": f"Cancel {campaign.name}",
            "intro": "What was decided stays decided; the open items close undecided. Reviewers and auditors "
            "read the reason.",
            "back": _detail_url(campaign),
            "submit": "Cancel the campaign",
        },
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def campaign_launch(request, pk: int):
    """Launch a draft: at once for a scope up to CERTIFICATION_LAUNCH_INLINE_MAX grants, else by a worker."""
    campaign = _managed_campaign(request, pk)
    big = (
        campaign.status == CampaignStatus.DRAFT
        and service.items_in_scope_count(campaign) > settings.CERTIFICATION_LAUNCH_INLINE_MAX
    )
    if big:
        _attempt(
            request,
            lambda: service.campaign_launch_in_background(campaign_id=campaign.pk, actor=request.user),
            f"Launching {campaign}: a big scope is launched in the background; this page follows it.",
        )
    else:
        try:
            launched = _refusal_as_403(lambda: service.campaign_launch(campaign_id=campaign.pk, actor=request.user))
        except DomainError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"Launched {launched}: {launched.items_total} items; reviewers were told.")
    return HttpResponseRedirect(_detail_url(campaign))


@login_required
@require_POST
def campaign_close(request, pk: int):
    campaign = _managed_campaign(request, pk)
    _attempt(
        request,
        lambda: service.campaign_close(campaign_id=campaign.pk, actor=request.user),
        f"Closed {campaign}: undecided items got the campaign's rule for their risk tier.",
    )
    return HttpResponseRedirect(_detail_url(campaign))


@login_required
@require_POST
def campaign_retry(request, pk: int):
    """Retry failed revocations: the items chosen, or every failed item of the campaign."""
    campaign = _managed_campaign(request, pk)
    failed = ReviewItem.objects.filter(campaign=campaign, remediation=RemediationStatus.FAILED)
    chosen = [int(v) for v in request.POST.getlist("items") if v.isdigit()]
    if chosen:
        failed = failed.filter(pk__in=chosen)
    ids = list(failed.values_list("pk", flat=True))
    if not ids:
        messages.info(request, "No failed revocation to retry.")
    else:
        _attempt(
            request,
            lambda: service.remediation_retry(item_ids=ids, actor=request.user),
            f"Asked the connectors again for {len(ids)} revocation(s).",
        )
    return HttpResponseRedirect(_detail_url(campaign) + "#remediation")


def _filtered_items(request, items):
    form = ItemFilterForm(request.GET or None)
    if form.is_valid():
        data = form.cleaned_data
        if data["reviewer"]:
            items = items.filter(
                Q(reviewer__username__iexact=data["reviewer"].strip())
                | Q(reviewer__isnull=True, reviewer_group__iexact=data["reviewer"].strip())
            )
        if data["decision"] == "open":
            items = items.filter(decision="")
        elif data["decision"]:
            items = items.filter(decision=data["decision"])
        if data["recommendation"]:
            items = items.filter(recommendation=data["recommendation"])
        if data["risk_tier"]:
            items = items.filter(risk_tier=data["risk_tier"])
    return form, items


@login_required
def campaign_detail(request, pk: int):
    user = request.user
    campaign = _get(campaigns_visible_to(user).select_related("created_by__identity", "previous"), pk)
    can_manage = policies.can_manage_campaigns(user)
    filter_form, items = _filtered_items(request, campaign_items_visible_to(user, campaign))
    items = items.select_related("identity", "entitlement__system", "reviewer__identity", "decided_by__identity")
    query = request.GET.copy()
    query.pop("page", None)
    page_obj = DeferredJoinPaginator(items.order_by("identity__name", "entitlement__name", "stage", "pk"), PAGE_SIZE)
    page_obj = page_obj.get_page(request.GET.get("page"))
    _with_reasons(page_obj.object_list)
    context = {
        "campaign": campaign,
        "can_manage": can_manage,
        "filter_form": filter_form,
        "page_obj": page_obj,
        "querystring": query.urlencode(),
    }
    if request.htmx and request.htmx.target == "results":
        return render_list(request, "governance/campaign_detail.html", "governance/campaign_items.html", context)
    scope = campaign.scope or {}
    context.update(
        progress=(progress := campaign_progress(campaign)),
        percent=round(100 * progress["decided"] / progress["total"]) if progress["total"] else 0,
        scope_names=_scope_names(scope),
        undecided=[(RiskTier(t).label, _rule_label(campaign.undecided.get(t))) for t in RiskTier.values],
        preview=campaign_preview(campaign)
        if campaign.status == CampaignStatus.DRAFT and policies.can_read_all_campaigns(user)
        else None,
        failures=list(
            ReviewItem.objects.filter(campaign=campaign, remediation=RemediationStatus.FAILED)
            .select_related("identity", "entitlement__system", "grant")
            .order_by("pk")[:100]
        )
        if policies.can_read_all_campaigns(user)
        else [],
        inline_max=settings.CERTIFICATION_LAUNCH_INLINE_MAX,
        may_report=campaign.status != CampaignStatus.DRAFT and may_read_campaign_report(user, campaign),
    )
    # The whole page, also for htmx's poll while a big campaign launches (it selects #campaign-body).
    response = render(request, "governance/campaign_detail.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _rule_label(rule: str | None) -> str:
    try:
        return UndecidedRule(rule).label
    except ValueError:
        return "—"


def _scope_names(scope: dict) -> list[tuple[str, str]]:
    """The scope in words: each part that narrows it, with the names it holds."""
    parts = []
    if scope.get("systems"):
        names = System.objects.filter(pk__in=scope["systems"]).order_by("name").values_list("name", flat=True)
        parts.append(("Systems", ", ".join(names)))
    if scope.get("entitlements"):
        rows = Entitlement.objects.filter(pk__in=scope["entitlements"]).order_by("system__name", "name")
        parts.append(("Entitlements", ", ".join(f"{s} / {n}" for s, n in rows.values_list("system__name", "name"))))
    labels = {
        "risk_tiers": ("Risk tiers", dict(RiskTier.choices)),
        "identity_kinds": ("Identity kinds", dict(IdentityKind.choices)),
        "grant_kinds": ("Grant kinds", dict(GrantKind.choices)),
    }
    for key, (label, words) in labels.items():
        if scope.get(key):
            parts.append((label, ", ".join(str(words.get(v, v)) for v in scope[key])))
    if scope.get("owners"):
        names = Identity.objects.filter(pk__in=scope["owners"]).order_by("name").values_list("name", flat=True)
        parts.append(("Owners", ", ".join(names)))
    if scope.get("teams"):
        parts.append(("Teams", ", ".join(scope["teams"])))
    return parts


#
# The reviewer's queue
#
RECOMMENDATION_RANK = Case(When(recommendation=Decision.REVOKE, then=Value(0)), default=Value(1))
QUEUE_ORDER = {
    "risk": ("-tier_rank", "campaign__due_at"),
    "recommendation": ("recommendation_rank", "-tier_rank"),
    "due": ("campaign__due_at", "-tier_rank"),
    # An identity item's "last used" is its identity's.
    "last_used": (Coalesce("grant__last_used_at", "identity__last_used_at").asc(nulls_first=True), "-tier_rank"),
    "name": (),
}
GROUP_ORDER = {
    "identity": ("identity__name", "identity_id"),
    "entitlement": ("entitlement__system__name", "entitlement__name", "entitlement_id"),
}
NAME_ORDER = {
    # Under an identity, the identity itself ("still needed?", no entitlement) comes first.
    "identity": (F("entitlement__system__name").asc(nulls_first=True), "entitlement__name"),
    "entitlement": ("identity__name",),
}


def _queue_context(request, *, bulk_form=None) -> dict:
    user = request.user
    queue = review_queue(user)
    campaigns = list(Campaign.objects.filter(pk__in=queue.values("campaign_id")).order_by("due_at", "pk"))
    form = QueueFilterForm(request.GET or None, campaigns=campaigns)
    data = form.cleaned_data if form.is_valid() else {}
    rows = queue
    if data.get("campaign"):
        rows = rows.filter(campaign_id=data["campaign"])
    if data.get("recommendation"):
        rows = rows.filter(recommendation=data["recommendation"])
    if data.get("risk_tier"):
        rows = rows.filter(risk_tier=data["risk_tier"])
    group = data.get("group") or "identity"
    order = data.get("order") or "risk"
    rows = rows.alias(tier_rank=selectors.tier_rank("risk_tier"), recommendation_rank=RECOMMENDATION_RANK).order_by(
        *GROUP_ORDER[group], *QUEUE_ORDER[order], *NAME_ORDER[group], "stage", "pk"
    )
    rows = _with_grants_held(rows.select_related(*ROW_JOINS).prefetch_related(*ROW_PREFETCH))
    query = request.GET.copy()
    query.pop("page", None)
    page_obj = DeferredJoinPaginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    _with_reasons(page_obj.object_list)
    return {
        "filter_form": form,
        "group": group,
        "page_obj": page_obj,
        "querystring": query.urlencode(),
        "progress": _progress_by_campaign(queue, campaigns),
        "bulk_form": bulk_form or BulkDecisionForm(),
        "read_only": policies.is_read_only(user),
        "here": f"{reverse('governance:review_queue')}?{request.GET.urlencode()}",
    }


def _progress_by_campaign(queue, campaigns: list[Campaign]) -> list[dict]:
    """Per campaign in the queue: how many wait for me, and how far the whole campaign is (two queries)."""
    if not campaigns:
        return []
    mine = dict(queue.order_by().values_list("campaign_id").annotate(n=Count("pk")))
    overall = {
        row["campaign_id"]: row
        for row in ReviewItem.objects.filter(campaign__in=campaigns)
        .order_by()
        .values("campaign_id")
        .annotate(total=Count("pk"), decided=Count("pk", filter=~Q(decision="")))
    }
    rows = []
    for campaign in campaigns:
        totals = overall.get(campaign.pk, {"total": 0, "decided": 0})
        rows.append(
            {
                "campaign": campaign,
                "mine": mine.get(campaign.pk, 0),
                "total": totals["total"],
                "decided": totals["decided"],
                "percent": round(100 * totals["decided"] / totals["total"]) if totals["total"] else 0,
            }
        )
    return rows


@login_required
def review_queue_page(request):
    """My reviews: the open items I may decide across campaigns (an auditor's is always empty)."""
    context = _queue_context(request)
    return render_list(request, "governance/review_queue.html", "governance/_review_results.html", context)


def _row(pk: int):
    return _with_grants_held(ReviewItem.objects.select_related(*ROW_JOINS).prefetch_related(*ROW_PREFETCH)).get(pk=pk)


def _outcome(request, message: str, *, level: str, status: int, item=None):
    if request.htmx:
        return render(
            request,
            "governance/_review_outcome.html",
            {"message": message, "level": level, "item": item},
            status=status,
        )
    messages.add_message(request, messages.ERROR if level == "error" else messages.SUCCESS, message)
    return HttpResponseRedirect(_back_to_queue(request))


def _back_to_queue(request) -> str:
    query = request.POST.get("query", "")
    return reverse("governance:review_queue") + (f"?{query}" if query and "\n" not in query else "")


def _decided_row(request, pk: int, message: str, *, status: int = 200):
    item = _row(pk)
    _with_reasons([item])
    return render(
        request,
        "governance/_review_row.html",
        {"item": item, "done": message, "query": request.POST.get("query", "")},
        status=status,
    )


@login_required
@require_POST
def review_decide(request, pk: int):
    """Certify or revoke one item; with htmx the row answers in place."""
    user = request.user
    _may_decide_anything(user)
    if not review_queue(user).filter(pk=pk).exists():
        decided = ReviewItem.objects.filter(pk=pk, decided_by=user).exclude(decision="").exists()
        if decided:
            return _outcome(request, f"Review #{pk} was already decided.", level="error", status=409)
        raise Http404
    form = DecisionForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            service.review_decide(item_ids=[pk], actor=user, decision=data["decision"], comment=data["comment"])
        except PermissionRefused as error:
            return _outcome(request, error.message, level="error", status=403)
        except InvalidTransition as error:
            return _outcome(request, error.message, level="error", status=409)
        except DomainError as error:
            add_service_errors(form, error)
        else:
            word = "Certified" if data["decision"] == Decision.CERTIFY else "Revoked"
            item = _row(pk)
            message = f"{word}: {item.subject}."
            if request.htmx:
                return _decided_row(request, pk, message)
            messages.success(request, message)
            return HttpResponseRedirect(_back_to_queue(request))
    if not request.htmx:
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        messages.error(request, errors or "Check the decision.")
        return HttpResponseRedirect(_back_to_queue(request))
    item = _row(pk)
    _with_reasons([item])
    context = {"item": item, "form": form, "query": request.POST.get("query", "")}
    return render(request, "governance/_review_row.html", context, status=400)


@login_required
@require_POST
def review_decide_many(request):
    """Certify or revoke a selection at once (revoking a selection needs a comment)."""
    user = request.user
    _may_decide_anything(user)
    posted = request.POST.getlist("items")
    if not all(value.isdigit() for value in posted):
        raise Http404
    wanted = {int(value) for value in posted}
    mine = set(review_queue(user).filter(pk__in=wanted).values_list("pk", flat=True))
    if wanted - mine:
        raise Http404  # someone else's item, or one no longer open: nothing is decided
    form = BulkDecisionForm(request.POST, item_ids=sorted(mine))
    if form.is_valid():
        data = form.cleaned_data
        try:
            decided = service.review_decide(
                item_ids=data["items"], actor=user, decision=data["decision"], comment=data["comment"]
            )
        except PermissionRefused as error:
            raise PermissionDenied(error.message) from None
        except InvalidTransition as error:
            messages.error(request, error.message)
            return HttpResponseRedirect(_back_to_queue(request))
        except DomainError as error:
            add_service_errors(form, error)
        else:
            word = "Certified" if data["decision"] == Decision.CERTIFY else "Revoked"
            messages.success(request, f"{word} {len(decided)} item(s).")
            return HttpResponseRedirect(_back_to_queue(request))
    context = _queue_context(request, bulk_form=form)
    context["selected"] = set(form.cleaned_data.get("items") or []) if hasattr(form, "cleaned_data") else set()
    return render(request, "governance/review_queue.html", context, status=400)


@login_required
def review_reassign(request, pk: int):
    """Hand an open item to another reviewer, with the reason (its reviewer, or an admin)."""
    user = request.user
    _may_decide_anything(user)
    mine = review_queue(user).filter(pk=pk).exists()
    if not mine and not (
        policies.is_admin(user)
        and ReviewItem.objects.filter(pk=pk, decision="", campaign__status=CampaignStatus.ACTIVE).exists()
    ):
        raise Http404
    item = _row(pk)
    form = ReassignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            service.review_reassign(item_id=pk, actor=user, reviewer=data["reviewer"], reason=data["reason"])
        except PermissionRefused as error:
            raise PermissionDenied(error.message) from None
        except InvalidTransition as error:
            return _outcome(request, error.message, level="error", status=409)
        except DomainError as error:
            add_service_errors(form, error)
        else:
            message = f"Review #{pk} handed over to {data['reviewer'].get_username()}."
            if request.htmx:
                return _outcome(request, message, level="success", status=200, item=item)
            messages.success(request, message)
            if mine:
                return HttpResponseRedirect(_back_to_queue(request))
            return HttpResponseRedirect(_detail_url(item.campaign))
    if request.htmx and request.method == "POST":
        _with_reasons([item])
        context = {"item": item, "reassign_form": form, "query": request.POST.get("query", "")}
        return render(request, "governance/_review_row.html", context, status=400)
    return render(
        request,
        "governance/form_page.html",
        {
            "form": form,
            "title": f"Hand over review #{item.pk}",
            "intro": f"{item.subject}, in "
            f"{item.campaign.name}. The new reviewer is told; the reason is kept with the item.",
            "back": reverse("governance:review_queue") if mine else _detail_url(item.campaign),
            "submit": "Hand over",
        },
        status=400 if form.errors else 200,
    )
