from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin, PermissionRequiredMixin
from django.views.generic import ListView, View

from .checkpoints import checkpoint_status
from .exports import streaming_csv_response
from .filters import AuditEventFilter
from .models import AuditEvent
from .services import data_json, export_recorded

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


class AuditEventListView(AuditorOnlyMixin, ListView):
    """The audit trail, newest first, filtered; paginated by page number over the filtered set."""

    template_name = "audit/auditevent_list.html"
    paginate_by = 50

    def get_queryset(self):
        self.filterset = AuditEventFilter(self.request.GET or None, queryset=AuditEvent.objects.order_by("-seq"))
        if not self.filterset.is_bound:
            return self.filterset.queryset
        # A filter that does not parse shows its error beside the field and no rows, never the whole trail.
        return self.filterset.qs if self.filterset.is_valid() else self.filterset.queryset.none()

    def paginate_queryset(self, queryset, page_size):
        # A page past the end shows the last page, as every other list does, not a 404.
        paginator = self.get_paginator(queryset, page_size)
        page = paginator.get_page(self.request.GET.get("page"))
        return paginator, page, page.object_list, page.has_other_pages()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        query = self.request.GET.copy()
        query.pop("page", None)
        # The newest signed checkpoint, checked cheaply: its signature and the event it recorded.
        context.update(filter=self.filterset, querystring=query.urlencode(), checkpoint=checkpoint_status())
        return context


class AuditEventExportView(AuditorOnlyMixin, View):
    """The filtered trail as CSV, streamed so a million rows never sit in memory."""

    def get(self, request):
        filterset = AuditEventFilter(request.GET or None, queryset=AuditEvent.objects.order_by("seq"))
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
