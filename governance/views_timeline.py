"""The timeline pages of an identity and an entitlement: their history read as sentences, a page at a time."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.kernel.zones import viewer_zone, zone_name
from audit.sentences import describe
from audit.trail_pages import querystring_without, trail_page

from . import selectors
from .selectors_timeline import can_view_timeline, entitlement_timeline, identity_timeline

ORDERS = {"newest": False, "oldest": True}


def _get(queryset, pk: int):
    try:
        return queryset.get(pk=pk)
    except queryset.model.DoesNotExist:
        raise Http404 from None


def _timeline_page(request, *, subject, kind: str, timeline):
    """One page of a timeline, described (a constant number of queries, whatever it holds), in the viewer's zone."""
    if not can_view_timeline(request.user, subject):
        raise PermissionDenied("Only auditors, admins and those who answer for it read its history.")
    zone = viewer_zone(request)
    order = request.GET.get("order") if request.GET.get("order") in ORDERS else "newest"
    page = trail_page(timeline(oldest_first=ORDERS[order]), request.GET)
    with timezone.override(zone):
        return render(
            request,
            "governance/timeline.html",
            {
                "subject": subject,
                "kind": kind,
                "page_obj": page,
                "events": describe(page.object_list),
                "order": order,
                "querystring": querystring_without(request.GET, "after", "before", "page"),
                "time_zone": zone_name(zone),
            },
        )


@login_required
@require_GET
def identity_timeline_page(request, pk: int):
    identity = _get(selectors.identity_list(user=request.user), pk)
    return _timeline_page(
        request,
        subject=identity,
        kind="identity",
        timeline=lambda oldest_first: identity_timeline(identity=identity, oldest_first=oldest_first),
    )


@login_required
@require_GET
def entitlement_timeline_page(request, pk: int):
    entitlement = _get(selectors.entitlement_list(user=request.user).select_related("system"), pk)
    return _timeline_page(
        request,
        subject=entitlement,
        kind="entitlement",
        timeline=lambda oldest_first: entitlement_timeline(entitlement=entitlement, oldest_first=oldest_first),
    )
