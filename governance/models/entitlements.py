from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from audit.kernel.text import FREE_TEXT_MAX_LENGTH, clean_names, free_text_field_constraints

from ..auto_approval import FindingTolerance, IntentPart, default_auto_approve_kinds
from ..choices import IdentityKind, LifecycleStatus, RiskTier, Severity, SodAction


def default_approval_stages() -> list[dict]:
    return [{"approver": "entitlement_owner", "quorum": 1}]


def default_allowed_kinds() -> list[str]:
    return list(IdentityKind.values)


class Entitlement(models.Model):
    """A catalogue entry: one right in one system, with its owner, purpose, risk and approval path.

    `approval_stages` is an ordered list of `{"approver": <ApproverSource>, "group": <name>,
    "quorum": <n>}`; the policy engine (jit) reads it and may add stages (SoD, step-up).

    `auto_approve_machines` switches automatic approval on; the `auto_approve_*` fields are the
    conditions a request must meet for it (governance.auto_approval). Their defaults are what
    automatic approval always required: a machine beneficiary and a low risk tier.
    """

    system = models.ForeignKey(
        "governance.System", verbose_name="system", on_delete=models.PROTECT, related_name="entitlements"
    )
    external_id = models.CharField("external id", max_length=200, unique=True, null=True, blank=True)
    name = models.CharField("name", max_length=200)
    target_name = models.CharField(
        "name on the target",
        max_length=200,
        blank=True,
        db_default="",
        help_text="What the system's connector grants: a database role, a group. Blank: the entitlement's name.",
    )
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
    # The field keeps its historical name; it is the switch for the conditions below, whatever kinds they allow.
    auto_approve_machines = models.BooleanField(
        "approved automatically when its conditions hold",
        default=False,
        help_text="Nobody is asked when every condition holds; otherwise the request goes to its approvers.",
    )
    auto_approve_kinds = models.JSONField(
        "automatic approval: identity kinds",
        default=default_auto_approve_kinds,
        blank=True,
        help_text="Only requests for identities of these kinds are approved automatically.",
    )
    auto_approve_max_risk = models.CharField(
        "automatic approval: risk tier at most",
        max_length=16,
        choices=RiskTier.choices,
        default=RiskTier.LOW,
        help_text="Raising this entitlement's tier above it turns automatic approval off rather than keeping it.",
    )
    auto_approve_max_finding_severity = models.CharField(
        "automatic approval: open findings tolerated",
        max_length=16,
        choices=FindingTolerance.choices,
        default=FindingTolerance.MEDIUM,
        help_text="The most severe open hygiene finding the identity may have; a more severe one sends the "
        "request to people. None: any open finding does. Critical: findings never do.",
    )
    auto_approve_max_minutes = models.PositiveIntegerField(
        "automatic approval: duration at most (minutes)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Empty: up to the entitlement's maximum duration.",
    )
    auto_approve_intent_fields = models.JSONField(
        "automatic approval: intent required",
        default=list,
        blank=True,
        help_text="The parts of the declared intent a request must give (task id, action, resource, free text).",
    )
    auto_approve_max_per_hour = models.PositiveIntegerField(
        "automatic approval: at most per hour and identity",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Automatic approvals of this entitlement for one identity within an hour; empty: no limit.",
    )
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

    # The history keeps its primary key, `id` (`entitlement.history`) and `history_user_id` (deleting a
    # login): no copies of the entitlement's indexes (see governance.models.Grant).
    history = HistoricalRecords(no_db_index=["system", "external_id", "owner", "status"])

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
            # A limit of zero would be "never" in disguise: switching automatic approval off says that.
            models.CheckConstraint(
                condition=Q(auto_approve_max_minutes__isnull=True) | Q(auto_approve_max_minutes__gt=0),
                name="%(app_label)s_%(class)s_positive_auto_approve_minutes",
            ),
            models.CheckConstraint(
                condition=Q(auto_approve_max_per_hour__isnull=True) | Q(auto_approve_max_per_hour__gt=0),
                name="%(app_label)s_%(class)s_positive_auto_approve_rate",
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
        self._clean_auto_approval()

    def _clean_auto_approval(self) -> None:
        """The conditions are lists of known values, and a duration limit within the entitlement's maximum."""
        errors: dict[str, str] = {}
        kinds = self.auto_approve_kinds
        if not isinstance(kinds, list) or set(kinds) - set(IdentityKind.values):
            errors["auto_approve_kinds"] = f"Choose from {', '.join(IdentityKind.values)}."
        elif self.auto_approve_machines and not kinds:
            errors["auto_approve_kinds"] = "Choose at least one kind, or turn automatic approval off."
        parts = self.auto_approve_intent_fields
        if not isinstance(parts, list) or set(parts) - set(IntentPart.values):
            errors["auto_approve_intent_fields"] = f"Choose from {', '.join(IntentPart.values)}."
        minutes = self.auto_approve_max_minutes
        if isinstance(minutes, int) and self.risk_tier in settings.MAX_DURATION_BY_RISK:
            cap = self.effective_max_duration
            if timedelta(minutes=minutes) > cap:
                errors["auto_approve_max_minutes"] = (
                    f"At most the entitlement's maximum duration ({int(cap.total_seconds() // 60)} minutes)."
                )
        if errors:
            raise ValidationError(errors)
        # Stored in one order, so an edit that only reorders them is no change.
        self.auto_approve_kinds = [kind for kind in IdentityKind.values if kind in kinds]
        self.auto_approve_intent_fields = [part for part in IntentPart.values if part in parts]

    @property
    def effective_max_duration(self) -> timedelta:
        """The entitlement's own maximum, or its risk tier's default (settings.MAX_DURATION_BY_RISK)."""
        return effective_max_duration(self.max_duration, self.risk_tier)

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

    # As the entitlement's; the m2m history also keeps `history_id`, its link to the rule's row (reading a
    # past rule's entitlements), and `id` on both tables (one list serves both).
    history = HistoricalRecords(m2m_fields=[entitlements], no_db_index=["name", "sodrule", "entitlement"])

    class Meta:
        verbose_name = "separation-of-duties rule"
        constraints = free_text_field_constraints("description")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        clean_names(self, ("name",))


def effective_max_duration(max_duration: timedelta | None, risk_tier: str) -> timedelta:
    """`Entitlement.effective_max_duration` from the two values (lists that read rows as values)."""
    return max_duration or settings.MAX_DURATION_BY_RISK[risk_tier]
