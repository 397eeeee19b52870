"""Workload federation: an identity trusts an OIDC issuer's subject instead of holding a secret."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class WorkloadTrust(models.Model):
    """A machine identity accepts JWTs from `issuer` whose `sub` is exactly `subject`.

    A workload (a Kubernetes service account, a CI job) presents such a JWT and receives a portal
    token with these scopes that lives at most `token_minutes`: it never holds a long-lived secret.
    One live trust per issuer and subject, so a JWT names exactly one identity.
    """

    identity = models.ForeignKey(
        "governance.Identity", verbose_name="identity", on_delete=models.PROTECT, related_name="workload_trusts"
    )
    issuer = models.CharField("issuer", max_length=500)
    subject = models.CharField("subject", max_length=500)
    scopes = models.JSONField("scopes", default=list)
    token_minutes = models.PositiveIntegerField("token lifetime (minutes)", default=60)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="created by",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField("created")  # the database's clock, set by the service
    revoked_at = models.DateTimeField("revoked", null=True, blank=True)

    class Meta:
        verbose_name = "workload trust"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "subject"], condition=Q(revoked_at__isnull=True), name="gov_trust_live_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} @ {self.issuer}"


class WorkloadExchange(models.Model):
    """One exchange: which trust issued which token. Its `jti` (when the JWT has one) refuses the same JWT
    a second time while it is unexpired; revoking the trust revokes the tokens it issued."""

    trust = models.ForeignKey(WorkloadTrust, verbose_name="trust", on_delete=models.PROTECT, related_name="exchanges")
    issuer = models.CharField("issuer", max_length=500)
    jti = models.CharField("JWT id", max_length=255, null=True, blank=True)  # none: replay cannot be told
    jwt_expires_at = models.DateTimeField("JWT expires")
    token = models.ForeignKey("governance.ApiToken", verbose_name="token", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField("exchanged")  # the database's clock, set by the service

    class Meta:
        verbose_name = "workload token exchange"
        constraints = [models.UniqueConstraint(fields=["issuer", "jti"], name="gov_exchange_jti_unique")]

    def __str__(self) -> str:
        return f"{self.jti} @ {self.issuer}"
