from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin, PermissionRequiredMixin
from django.utils import timezone
from django.views.generic import TemplateView, View

from .checkpoints import checkpoint_status
from .exports import streaming_csv_response
from .filters import AuditEventFilter
from .kernel.zones import PARAMETER, known_zone, viewer_zone, zone_name
from .models import AuditEvent
from .sentences import describe
from .services import data_json, export_recorded
from .trail_pages import ordered_slice, querystring_without, trail_page

EXPORT_HEADER = [
    "seq",
    "occurred_at",
    "actor_type",
    "actor",
    "channel",
    "action",
    "target_type",
    "target_id",
    "target",
    "data",
    "correlation_id",
    "client_ip",
    "prev_hash",
    "hash",
]


class AuditorOnlyMixin(LoginRequiredMixin, PermissionRequiredMixin):
    # Signed-in users without the permission get 403; anonymous users go to the login page.
    permission_required = "audit.view_auditevent"


class InViewersZone:
    """Show and read the page's times in the viewer's time zone (`audit.kernel.zones`).

    The response is rendered inside the zone: a TemplateResponse would otherwise render after the
    view returned, in the portal's zone.
    """

    def dispatch(self, request, *args, **kwargs):
        self.zone = viewer_zone(request)
        with timezone.override(self.zone):
            response = super().dispatch(request, *args, **kwargs)
            if hasattr(response, "render") and not response.is_rendered:
                response.render()
        return response

    def zone_context(self) -> dict:
        return {
            "time_zone": zone_name(self.zone),
            # A zone named in the link is the one its author meant: the browser does not redraw it in its own.
            "time_zone_fixed": known_zone(self.request.GET.get(PARAMETER)) is not None,
        }


class AuditEventListView(AuditorOnlyMixin, InViewersZone, TemplateView):
    """The audit trail, newest first, filtered; each event read as a sentence with names and links.

    Pages follow the chain (`audit.trail_pages`: after or before an event, never an OFFSET, the total
    counted up to a cap) and names come in one query per kind of object on the page
    (`audit.sentences`): a page costs the same at a million events as at a hundred, for 50 rows as for 1.
    """

    template_name = "audit/auditevent_list.html"

    def filtered(self):
        self.filterset = AuditEventFilter(self.request.GET or None, queryset=AuditEvent.objects.all(), zone=self.zone)
        if not self.filterset.is_bound:
            return self.filterset.queryset
        # A filter that does not parse shows its error beside the field and no rows, never the whole trail.
        return self.filterset.qs if self.filterset.is_valid() else self.filterset.queryset.none()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        page = trail_page(ordered_slice(self.filtered()), self.request.GET)
        context.update(
            filter=self.filterset,
            page_obj=page,
            querystring=querystring_without(self.request.GET, "after", "before", "page"),
            # The newest signed checkpoint, checked cheaply: its signature and the event it recorded.
            checkpoint=checkpoint_status(),
            events=describe(page.object_list),
            **self.zone_context(),
        )
        return context


class AuditEventExportView(AuditorOnlyMixin, View):
    """The filtered trail as CSV, streamed so a million rows never sit in memory."""

    def get(self, request):
        filterset = AuditEventFilter(
            request.GET or None, queryset=AuditEvent.objects.order_by("seq"), zone=viewer_zone(request)
        )
        if filterset.is_bound and not filterset.is_valid():
            # The trail page again, with each error beside its filter: an auditor fixes it in place.
            messages.error(request, "Nothing exported: fix the filters marked below.")
            response = AuditEventListView.as_view()(request)
            response.status_code = 400
            return response
        export_recorded(actor=request.user, what="audit_trail", filters=request.GET.dict(), file_format="csv")
        queryset = filterset.qs if filterset.is_bound else filterset.queryset
        rows = (
            [
                e.seq,
                e.occurred_at.isoformat(),
                e.actor_type,
                e.actor_label,
                e.channel,
                e.action,
                e.target_type,
                e.target_id,
                e.target_label,
                data_json(e.data),  # the JSON text the event's hash covers
                e.correlation_id,
                e.client_ip,
                e.prev_hash,
                e.hash,
            ]
            for e in queryset.iterator(chunk_size=2000)
        )
        return streaming_csv_response("audit-trail.csv", EXPORT_HEADER, rows)
