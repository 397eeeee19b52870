from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from simple_history.models import HistoricalRecords

from audit.kernel import clock
from audit.kernel.text import FREE_TEXT_MAX_LENGTH, free_text_field_constraints

from ..choices import GrantKind, GrantStatus
from ..querysets import GrantQuerySet

LIVE = GrantStatus.live()


class Grant(models.Model):
    """An identity holds an entitlement: standing, just-in-time, or break-glass.

    Intent and fact are kept apart: a grant is active only once its system's connector confirmed
    it, and revoked or expired only once the target confirmed the removal. A grant past its
    `expires_at` is treated as inactive everywhere even before the sweep reaches it.
    """

    identity = models.ForeignKey(
        "governance.Identity", verbose_name="identity", on_delete=models.PROTECT, related_name="grants"
    )
    entitlement = models.ForeignKey(
        "governance.Entitlement", verbose_name="entitlement", on_delete=models.PROTECT, related_name="grants"
    )
    kind = models.CharField("kind", max_length=16, choices=GrantKind.choices, default=GrantKind.STANDING)
    status = models.CharField(
        "status", max_length=24, choices=GrantStatus.choices, default=GrantStatus.PENDING_PROVISION, db_index=True
    )
    external_id = models.CharField("external id", max_length=200, unique=True, null=True, blank=True)
    granted_at = models.DateTimeField("granted", null=True, blank=True)
    expires_at = models.DateTimeField("expires", null=True, blank=True)
    approved_duration = models.DurationField("approved duration", null=True, blank=True)
    revoked_at = models.DateTimeField("revoked", null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="revoked by",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reason = models.TextField("reason", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    end_reason = models.CharField("why it ended", max_length=200, blank=True)
    renewal_of = models.ForeignKey(
        "self", verbose_name="renews", null=True, blank=True, on_delete=models.PROTECT, related_name="renewals"
    )
    last_used_at = models.DateTimeField("last used", null=True, blank=True)
    no_renew = models.BooleanField("reviewed: do not renew", default=False)
    expiry_warned_at = models.DateTimeField("expiry warning sent", null=True, blank=True)
    connector_reference = models.CharField("connector reference", max_length=200, blank=True)
    last_error = models.TextField("last connector error", blank=True)
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    # The history keeps three indexes, each for a query (pinned by tests/governance/test_history_indexes.py):
    # - its primary key;
    # - `id`, the grant's own rows: every reader filters by it (the connector's job keys count a grant's
    #   asks, governance.handlers a batch's, the held-access report finds when a grant ended);
    # - `history_user_id`: deleting a login (SCIM, the admin) sets it to NULL.
    # simple-history would also copy each index, unique field and foreign key of the grant (with
    # text-pattern twins of the text ones; twelve indexes in all), which no query of the history uses
    # and every history row pays for. `history_date` is not indexed (SIMPLE_HISTORY_DATE_INDEX): dates are read by `id`.
    history = HistoricalRecords(
        no_db_index=["identity", "entitlement", "status", "external_id", "revoked_by", "renewal_of"]
    )
    objects = GrantQuerySet.as_manager()

    class Meta:
        verbose_name = "grant"
        ordering = ["-created_at", "-id"]
        constraints = [
            # Time-boxed access, once granted, has an end (its clock starts when the target confirms).
            models.CheckConstraint(
                condition=Q(kind=GrantKind.STANDING) | Q(expires_at__isnull=False) | Q(granted_at__isnull=True),
                name="%(app_label)s_%(class)s_timeboxed_has_expiry",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(granted_at__isnull=True) | Q(expires_at__gt=F("granted_at")),
                name="%(app_label)s_%(class)s_expires_after_granted",
            ),
            # One identity holds one live grant per entitlement (renewals replace, never stack).
            models.UniqueConstraint(
                fields=["identity", "entitlement"],
                condition=Q(status__in=LIVE),
                name="%(app_label)s_%(class)s_one_live_per_entitlement",
            ),
            *free_text_field_constraints("reason"),
        ]
        indexes = [
            # The expiry sweep's only access path: active grants by expiry (partial on PostgreSQL).
            models.Index(fields=["expires_at", "id"], condition=Q(status="active"), name="gov_grant_active_expiry_idx"),
            models.Index(fields=["identity", "status"], name="gov_grant_ident_status_idx"),
            models.Index(fields=["entitlement", "status"], name="gov_grant_ent_status_idx"),
        ]

    def __str__(self) -> str:
        return f"Grant #{self.pk}"

    def is_in_force(self, now: datetime | None = None) -> bool:
        """This loaded grant is in force (the rule of `querysets.in_force_q`, for one instance)."""
        now = clock.now() if now is None else now
        return self.status == GrantStatus.ACTIVE and (self.expires_at is None or self.expires_at > now)

    def is_past_expiry(self, now: datetime | None = None) -> bool:
        """Still marked active but past its expiry: shown as expired before the sweep reaches it."""
        return self.status == GrantStatus.ACTIVE and not self.is_in_force(now)
