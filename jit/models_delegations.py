"""Delegations: an identity's recorded consent that a machine may ask for access on its behalf."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from audit.kernel.text import FREE_TEXT_MAX_LENGTH, free_text_field_constraints
from governance.choices import RiskTier

from .choices import DelegationStatus


class DelegationQuerySet(models.QuerySet):
    def live(self, now):
        """Delegations that still speak for their delegator: not revoked, not expired."""
        return self.filter(revoked_at__isnull=True, expires_at__gt=now)


class Delegation(models.Model):
    """One hop of a delegation chain: the delegator lets the delegate (a machine) act for it.

    An agent that asks for access on someone's behalf names the chain of delegations it acts
    under, from the initiator's to the one naming itself (`jit.services.delegations`). Each hop has
    its own expiry and scope (entitlements, a risk ceiling), and passes on further only when
    `may_redelegate` says so. Never edited: a change is a revocation and a new delegation.
    """

    delegator = models.ForeignKey(
        "governance.Identity",
        verbose_name="on behalf of",
        on_delete=models.PROTECT,
        related_name="delegations_given",
    )
    delegate = models.ForeignKey(
        "governance.Identity",
        verbose_name="delegate",
        on_delete=models.PROTECT,
        related_name="delegations_received",
        help_text="A service account, workload or agent.",
    )
    entitlements = models.ManyToManyField(
        "governance.Entitlement",
        verbose_name="entitlements",
        blank=True,
        related_name="+",
        help_text="Empty: any entitlement up to the risk ceiling.",
    )
    max_risk_tier = models.CharField(
        "up to risk tier", max_length=16, choices=RiskTier.choices, default=RiskTier.MEDIUM
    )
    may_redelegate = models.BooleanField(
        "may delegate further", default=False, help_text="The delegate may hand this on to another machine."
    )
    purpose = models.TextField("purpose", max_length=FREE_TEXT_MAX_LENGTH)
    expires_at = models.DateTimeField("expires")
    revoked_at = models.DateTimeField("revoked", null=True, blank=True)
    created_at = models.DateTimeField("created")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="created by",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_by_identity = models.ForeignKey(
        "governance.Identity",
        verbose_name="created by identity",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="A machine that delegated through its own token.",
    )

    objects = DelegationQuerySet.as_manager()

    class Meta:
        verbose_name = "delegation"
        ordering = ["-created_at", "-id"]
        constraints = [
            # Acting for oneself needs no delegation; a loop of one would make a chain say nothing.
            models.CheckConstraint(condition=~Q(delegator=F("delegate")), name="%(app_label)s_%(class)s_not_to_self"),
            # Every delegation ends by itself: there is no standing one.
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("created_at")), name="%(app_label)s_%(class)s_expires_after_created"
            ),
            *free_text_field_constraints("purpose"),
        ]
        indexes = [
            # Chains are checked and pages list by the live ones of an identity.
            models.Index(
                fields=["delegate", "expires_at"],
                condition=Q(revoked_at__isnull=True),
                name="jit_delegation_live_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Delegation #{self.pk}"

    def status_at(self, now) -> str:
        if self.revoked_at is not None:
            return DelegationStatus.REVOKED
        return DelegationStatus.EXPIRED if self.expires_at <= now else DelegationStatus.ACTIVE
