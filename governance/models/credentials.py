"""Credentials an identity presents to the API (people for scripts; service accounts, workloads, agents)."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class ApiToken(models.Model):
    """A bearer token: shown once at creation, kept only as a keyed hash; its public prefix finds the row.

    A token is usable while it is not revoked, not past `expires_at`, its identity is active, and the
    caller comes from one of `allowed_networks` (any, when empty). Rotation makes a new token and
    shortens the old one's life to an overlap window, so a deployment can switch without an outage.
    """

    identity = models.ForeignKey(
        "governance.Identity", verbose_name="identity", on_delete=models.PROTECT, related_name="api_tokens"
    )
    name = models.CharField("name", max_length=100)
    prefix = models.CharField("prefix", max_length=16, unique=True)
    digest = models.CharField("keyed hash", max_length=64)
    scopes = models.JSONField("scopes", default=list)
    allowed_networks = models.JSONField("allowed networks", default=list, blank=True)
    expires_at = models.DateTimeField("expires")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="created by",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField("created", auto_now_add=True)
    last_used_at = models.DateTimeField("last used", null=True, blank=True)
    last_used_from = models.CharField("last used from", max_length=45, blank=True)
    revoked_at = models.DateTimeField("revoked", null=True, blank=True)
    revoked_reason = models.CharField("why it was revoked", max_length=200, blank=True)
    rotated_from = models.OneToOneField(
        "self",
        verbose_name="replaces",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rotated_to",
    )

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at", "-id"]
        indexes = [
            # Killing an identity's tokens on suspension, and its page's list of live tokens.
            models.Index(fields=["identity"], condition=Q(revoked_at__isnull=True), name="gov_token_live_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"
