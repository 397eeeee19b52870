from django.conf import settings
from django.db import models


class Notification(models.Model):
    """Something a person should know or do, shown in the portal and (through the outbox) emailed."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="recipient", on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField("kind", max_length=64)
    subject = models.CharField("subject", max_length=200)
    body = models.TextField("body", blank=True)
    link = models.CharField("link", max_length=300, blank=True)
    created_at = models.DateTimeField("created", auto_now_add=True)
    read_at = models.DateTimeField("read", null=True, blank=True)
    key = models.CharField("key", max_length=200, blank=True, help_text="The same key never notifies a person twice.")

    class Meta:
        verbose_name = "notification"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["recipient", "read_at"], name="gov_notif_recipient_read_idx"),
            # Unread notifications by key prefix ("request:42:..."): withdrawing asks nobody can answer.
            models.Index(
                fields=["key"],
                name="gov_notif_unread_key_idx",
                opclasses=["varchar_pattern_ops"],
                condition=models.Q(read_at__isnull=True),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "key"], condition=~models.Q(key=""), name="gov_notification_once_per_key"
            )
        ]

    def __str__(self) -> str:
        return self.subject
