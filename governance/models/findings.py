from django.db import models
from django.db.models import Q

from ..choices import FindingKind, FindingStatus, Severity


class Finding(models.Model):
    """A hygiene problem found by a scan, with the owner who must act on it.

    `key` identifies the same problem across scans (kind and subject), so a rescan updates
    `last_seen_at` instead of opening a duplicate, and a problem no longer seen is resolved.
    """

    key = models.CharField("key", max_length=200)
    kind = models.CharField("kind", max_length=32, choices=FindingKind.choices, db_index=True)
    severity = models.CharField("severity", max_length=16, choices=Severity.choices, default=Severity.MEDIUM)
    status = models.CharField(
        "status", max_length=16, choices=FindingStatus.choices, default=FindingStatus.OPEN, db_index=True
    )
    identity = models.ForeignKey(
        "governance.Identity",
        verbose_name="identity",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="findings",
    )
    entitlement = models.ForeignKey(
        "governance.Entitlement",
        verbose_name="entitlement",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="findings",
    )
    grant = models.ForeignKey(
        "governance.Grant",
        verbose_name="grant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="findings",
    )
    owner_to_act = models.ForeignKey(
        "governance.Identity",
        verbose_name="owner who must act",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="findings_to_act",
    )
    details = models.JSONField("details", default=dict, blank=True)
    first_seen_at = models.DateTimeField("first seen")
    last_seen_at = models.DateTimeField("last seen")
    resolved_at = models.DateTimeField("resolved", null=True, blank=True)

    class Meta:
        verbose_name = "finding"
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=Q(status="open"), name="%(app_label)s_%(class)s_one_open_per_key"
            ),
        ]
        indexes = [models.Index(fields=["owner_to_act", "status"], name="gov_finding_owner_status_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.details.get('subject', self.key)}"
