from django.contrib import admin, messages

from .models import AuditEvent, OutboxMessage, OutboxStatus
from .outbox import outbox_retry


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["seq", "occurred_at", "actor_label", "channel", "action", "target_label"]
    list_filter = ["action", "channel"]
    search_fields = ["actor_label", "target_label", "correlation_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """Where an admin sees side effects that gave up, and sends them again."""

    list_display = ["id", "kind", "status", "attempts", "next_attempt_at", "last_error", "created_at"]
    list_filter = ["status", "kind"]
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]
    actions = ["retry"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Retry the selected dead messages")
    def retry(self, request, queryset):
        dead = list(queryset.filter(status=OutboxStatus.DEAD).values_list("pk", flat=True))
        for pk in dead:
            outbox_retry(message_id=pk, actor=request.user)
        self.message_user(request, f"{len(dead)} message(s) queued again.", messages.SUCCESS)
