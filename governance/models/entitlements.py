from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from audit.kernel.text import FREE_TEXT_MAX_LENGTH, clean_names, free_text_field_constraints

from ..choices import IdentityKind, LifecycleStatus, RiskTier, Severity, SodAction


def default_approval_stages() -> list[dict]:
    return [{"approver": "entitlement_owner", "quorum": 1}]


def default_allowed_kinds() -> list[str]:
    return list(IdentityKind.values)


class Entitlement(models.Model):
    """A catalogue entry: one right in one system, with its owner, purpose, risk and approval path.

    `approval_stages` is an ordered list of `{"approver": <ApproverSource>, "group": <name>,
    "quorum": <n>}`; the policy engine (jit) reads it and may add stages (SoD, step-up).
    """

    system = models.ForeignKey(
        "governance.System", verbose_name="system", on_delete=models.PROTECT, related_name="entitlements"
    )
    external_id = models.CharField("external id", max_length=200, unique=True, null=True, blank=True)
    name = models.CharField("name", max_length=200)
    owner = models.ForeignKey(
        "governance.Identity", verbose_name="owner", on_delete=models.PROTECT, related_name="owned_entitlements"
    )
    business_purpose = models.TextField("business purpose", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    risk_tier = models.CharField("risk tier", max_length=16, choices=RiskTier.choices, default=RiskTier.LOW)
    requestable = models.BooleanField("requestable", default=True)
    max_duration = models.DurationField(
        "maximum duration", null=True, blank=True, help_text="Empty: the default for its risk tier."
    )
    approval_stages = models.JSONField("approval stages", default=default_approval_stages, blank=True)
    auto_approve_machines = models.BooleanField("machine identities approved automatically", default=False)
    break_glass_eligible = models.BooleanField("break-glass eligible", default=False)
    justification_required = models.BooleanField("justification required", default=True)
    ticket_required = models.BooleanField("ticket required", default=False)
    allowed_identity_kinds = models.JSONField("identity kinds allowed", default=default_allowed_kinds, blank=True)
    review_cadence_days = models.PositiveIntegerField("review every (days)", default=90)
    status = models.CharField(
        "status", max_length=16, choices=LifecycleStatus.choices, default=LifecycleStatus.ACTIVE, db_index=True
    )
    retired_at = models.DateTimeField("retired", null=True, blank=True)
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = "entitlement"
        ordering = ["system__name", "name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["system", "name"],
                condition=Q(status="active"),
                name="%(app_label)s_%(class)s_unique_live_name",
            ),
            models.CheckConstraint(
                condition=Q(max_duration__isnull=True) | Q(max_duration__gt=timedelta(0)),
                name="%(app_label)s_%(class)s_positive_max_duration",
            ),
            *free_text_field_constraints("business_purpose"),
        ]
        indexes = [models.Index(fields=["risk_tier", "requestable"], name="gov_ent_risk_requestable_idx")]

    def __str__(self) -> str:
        # Names the system only when it is already loaded, so labels never cost a query.
        system = self._state.fields_cache.get("system")
        return f"{system.name} / {self.name}" if system else self.name

    def clean(self) -> None:
        clean_names(self, ("name",))

    @property
    def effective_max_duration(self) -> timedelta:
        """The entitlement's own maximum, or its risk tier's default (settings.MAX_DURATION_BY_RISK)."""
        return self.max_duration or settings.MAX_DURATION_BY_RISK[self.risk_tier]

    @property
    def is_live(self) -> bool:
        return self.status == LifecycleStatus.ACTIVE


class SodRule(models.Model):
    """Entitlements that must not be held together by one identity."""

    name = models.CharField("name", max_length=200, unique=True)
    description = models.TextField("description", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    entitlements = models.ManyToManyField(
        "governance.Entitlement", verbose_name="entitlements", related_name="sod_rules"
    )
    severity = models.CharField("severity", max_length=16, choices=Severity.choices, default=Severity.HIGH)
    action = models.CharField("action", max_length=16, choices=SodAction.choices, default=SodAction.EXTRA_STAGE)
    is_active = models.BooleanField("active", default=True)
    created_at = models.DateTimeField("created", auto_now_add=True)

    history = HistoricalRecords(m2m_fields=[entitlements])

    class Meta:
        verbose_name = "separation-of-duties rule"
        constraints = free_text_field_constraints("description")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        clean_names(self, ("name",))
