from django.conf import settings
from django.db import models
from django.db.models import F, Q

from audit.kernel.text import FREE_TEXT_MAX_LENGTH, free_text_field_constraints

from ..choices import FindingExceptionStatus, FindingKind, FindingStatus, Severity
from ..querysets import tier_rank

# The findings page's order, worst first: its severity as a rank (low 0 to critical 3), then the latest seen.
# One expression for the page's ORDER BY and its index, so PostgreSQL matches the two.
SEVERITY_RANK = tier_rank("severity")


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
        indexes = [
            models.Index(fields=["owner_to_act", "status"], name="gov_finding_owner_status_idx"),
            # The identity lists' finding filter: the identities with an open finding of a kind, read off
            # the index alone (`selectors.identities_with_open_finding`).
            models.Index(
                fields=["kind", "identity"], condition=Q(status=FindingStatus.OPEN), name="gov_finding_open_kind_idx"
            ),
            # The findings page, worst first (the default): its first page read in order off this index
            # rather than every open finding ranked and sorted (16-24 ms at 26,000 open findings).
            models.Index(
                SEVERITY_RANK.desc(),
                F("last_seen_at").desc(),
                F("id").desc(),
                condition=Q(status=FindingStatus.OPEN),
                name="gov_finding_open_worst_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.details.get('subject', self.key)}"


class FindingException(models.Model):
    """An accepted risk: someone who answers for a finding chose to live with it until a date, for a reason.

    The register of these is what an auditor reads ("who accepted what, why, until when"). While one is
    active its finding is `accepted`; at `expires_at` the scan reopens the finding and the exception is
    `expired`; if the problem goes away first the exception is `closed`. Rows are never deleted.
    """

    finding = models.ForeignKey(Finding, verbose_name="finding", on_delete=models.CASCADE, related_name="exceptions")
    reason = models.TextField("reason", max_length=FREE_TEXT_MAX_LENGTH)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="accepted by",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    accepted_by_name = models.CharField("accepted by (name)", max_length=200, blank=True)
    accepted_at = models.DateTimeField("accepted")
    expires_at = models.DateTimeField("accepted until")
    status = models.CharField(
        "status",
        max_length=16,
        choices=FindingExceptionStatus.choices,
        default=FindingExceptionStatus.ACTIVE,
        db_index=True,
    )
    ended_at = models.DateTimeField("ended", null=True, blank=True)

    class Meta:
        verbose_name = "finding exception"
        ordering = ["-accepted_at", "-id"]
        constraints = [
            # One accepted risk at a time per finding: a second accept would hide who decided last.
            models.UniqueConstraint(
                fields=["finding"],
                condition=Q(status="active"),
                name="%(app_label)s_%(class)s_one_active_per_finding",
            ),
            # An exception is for a while, never open-ended or already over.
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("accepted_at")), name="%(app_label)s_%(class)s_expires_after_accepted"
            ),
            *free_text_field_constraints("reason"),
        ]
        indexes = [
            # The scan's expiry pass: active exceptions by end date.
            models.Index(fields=["status", "expires_at"], name="gov_findexc_status_expires_idx"),
        ]

    def __str__(self) -> str:
        return f"Exception #{self.pk} for {self.finding_id} until {self.expires_at:%Y-%m-%d}"
