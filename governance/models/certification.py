"""Certification: campaigns in which reviewers attest or revoke each grant in scope."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from audit.kernel.text import FREE_TEXT_MAX_LENGTH


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    LAUNCHING = "launching", "Launching"
    ACTIVE = "active", "Active"
    CLOSED = "closed", "Closed"
    CANCELLED = "cancelled", "Cancelled"


class CampaignKind(models.TextChoices):
    MANUAL = "manual", "Defined by an admin"
    CADENCE = "cadence", "Review cadence passed"
    EVENT = "event", "Triggered by a change"


class ReviewerSource(models.TextChoices):
    IDENTITY_OWNER = "identity_owner", "The identity's owner (a person: their manager)"
    ENTITLEMENT_OWNER = "entitlement_owner", "The entitlement's owner"
    SYSTEM_OWNER = "system_owner", "The system's owner"
    MANAGER = "manager", "The person's manager (a machine: its owner's)"
    GROUP = "group", "A named group"


class UndecidedRule(models.TextChoices):
    KEEP = "keep", "Keep the access"
    REVOKE = "revoke", "Revoke the access"
    RECOMMENDATION = "recommendation", "Follow the recommendation"


class RemediationTiming(models.TextChoices):
    AT_DECISION = "decision", "When the reviewer decides"
    AT_CLOSE = "close", "When the campaign closes"


class Decision(models.TextChoices):
    CERTIFY = "certify", "Certify"
    REVOKE = "revoke", "Revoke"


class RemediationStatus(models.TextChoices):
    NONE = "", "Nothing to do"
    WAITING = "waiting", "Waits for the campaign to close"
    REVOKING = "revoking", "Being revoked"
    DONE = "done", "Revoked"
    FAILED = "failed", "Revocation failed"


def default_undecided_by_tier() -> dict[str, str]:
    """A lapsed review of high or critical access never silently keeps it."""
    return {"low": "keep", "medium": "recommendation", "high": "revoke", "critical": "revoke"}


def default_scope() -> dict:
    return {}


class Campaign(models.Model):
    """One review of the grants in a scope, by a due date.

    `scope` holds lists of ids or values; an empty or missing list means "any":
    `systems`, `entitlements`, `risk_tiers`, `identity_kinds`, `owners` (identity owners), `teams`,
    `grant_kinds`.

    `review_grants`: one item per grant in scope. `review_identities`: also one item per non-human
    identity in scope (only `identity_kinds`, `owners` and `teams` narrow those), in which its owner
    attests the identity itself is still needed.
    """

    name = models.CharField("name", max_length=200)
    description = models.TextField("description", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    kind = models.CharField("kind", max_length=16, choices=CampaignKind.choices, default=CampaignKind.MANUAL)
    scope = models.JSONField("scope", default=default_scope, blank=True)
    review_grants = models.BooleanField("review the access granted", default=True)
    review_identities = models.BooleanField(
        "review the non-human identities themselves",
        default=False,
        help_text="Their owners attest each service account, API key, workload and agent is still needed.",
    )
    reviewer = models.CharField(
        "reviewer", max_length=32, choices=ReviewerSource.choices, default=ReviewerSource.ENTITLEMENT_OWNER
    )
    reviewer_group = models.CharField("reviewer group", max_length=150, blank=True)
    fallback_group = models.CharField(
        "fallback group", max_length=150, default="admin", help_text="Reviews when the first reviewer is missing."
    )
    second_stage = models.BooleanField("second stage for high and critical items", default=False)
    second_stage_reviewer = models.CharField(
        "second-stage reviewer", max_length=32, choices=ReviewerSource.choices, default=ReviewerSource.SYSTEM_OWNER
    )
    second_stage_group = models.CharField("second-stage group", max_length=150, blank=True)
    starts_at = models.DateTimeField("starts", null=True, blank=True)
    due_at = models.DateTimeField("due")
    undecided = models.JSONField("when nobody decides, per risk tier", default=default_undecided_by_tier)
    remediation = models.CharField(
        "carry out revocations", max_length=16, choices=RemediationTiming.choices, default=RemediationTiming.AT_DECISION
    )
    recurrence_days = models.PositiveIntegerField("repeat every (days)", null=True, blank=True)
    previous = models.OneToOneField(
        "self", verbose_name="repeats", null=True, blank=True, on_delete=models.SET_NULL, related_name="next"
    )
    status = models.CharField(
        "status", max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT, db_index=True
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="created by",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    launched_at = models.DateTimeField("launched", null=True, blank=True)
    closed_at = models.DateTimeField("closed", null=True, blank=True)
    items_total = models.PositiveIntegerField("items", default=0)
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    class Meta:
        verbose_name = "campaign"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class ReviewItem(models.Model):
    """One grant (one stage of it) to certify or revoke, with its reviewer and recommendation; or, with
    no grant, one non-human identity whose owner attests it is still needed (an identity item).

    Foreign keys without a database constraint (`db_constraint=False`): `identity` and `entitlement`
    are copies of the grant's own, whose constraints already hold them (an identity item's identity
    is the one its row was selected from, in the same INSERT ... SELECT); `reviewer` is copied from
    an identity's login (`Identity.user` holds it) or set by a service to a user it just read. A
    launch writes up to 100,000 rows in one statement and PostgreSQL checks each constraint row by
    row at COMMIT: these three cost most of a launch (bench/README.md) and prove nothing the other
    constraints do not. Django still refuses to delete what they point at (`on_delete=PROTECT`), and
    nothing deletes identities, entitlements or logins with raw SQL.

    Indexes: every index is written for each of those rows too, so a foreign key gets none of its
    own (`db_index=False`) where a composite index leads with it (campaign: the unique constraint;
    grant, reviewer: their `*_idx` below) or nothing looks items up by it but a deletion Django
    refuses anyway (entitlement, decided_by). `identity` keeps its own: identity items are found by it.
    """

    campaign = models.ForeignKey(
        Campaign, verbose_name="campaign", on_delete=models.CASCADE, related_name="items", db_index=False
    )
    grant = models.ForeignKey(
        "governance.Grant",
        verbose_name="grant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="review_items",
        db_index=False,
    )
    # Denormalised from the grant at launch: the queue filters and groups on them without joins.
    identity = models.ForeignKey(
        "governance.Identity", verbose_name="identity", on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    entitlement = models.ForeignKey(
        "governance.Entitlement",
        verbose_name="entitlement",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    risk_tier = models.CharField("risk tier", max_length=16)
    stage = models.PositiveSmallIntegerField("stage", default=1)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="reviewer",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="review_items",
        db_constraint=False,
        db_index=False,
    )
    reviewer_group = models.CharField(
        "reviewer group", max_length=150, blank=True, help_text="Any active member may decide (a group or fallback)."
    )
    recommendation = models.CharField("recommendation", max_length=16, choices=Decision.choices)
    # Why: bits of `governance.certification_reasons.REASONS`, computed in SQL at launch, named in Python.
    reason_flags = models.PositiveIntegerField("reasons", default=0)
    decision = models.CharField("decision", max_length=16, choices=Decision.choices, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="decided by",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    decided_at = models.DateTimeField("decided", null=True, blank=True)
    decided_by_rule = models.BooleanField("decided by the non-response rule", default=False)
    comment = models.TextField("comment", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    remediation = models.CharField(
        "remediation", max_length=16, choices=RemediationStatus.choices, default=RemediationStatus.NONE, blank=True
    )
    remediation_error = models.TextField("remediation error", blank=True)
    reassign_reason = models.TextField("why it was reassigned", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    reminded_at = models.DateTimeField("last reminded", null=True, blank=True)
    escalation_level = models.PositiveSmallIntegerField("escalated", default=0)
    created_at = models.DateTimeField("created", auto_now_add=True)

    class Meta:
        verbose_name = "review item"
        ordering = ["campaign_id", "identity_id", "entitlement_id", "stage", "id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "grant", "stage"], name="governance_one_item_per_grant_stage"),
            models.UniqueConstraint(
                fields=["campaign", "identity", "stage"],
                condition=Q(grant__isnull=True),
                name="governance_one_item_per_identity_stage",
            ),
            # An identity item has neither grant nor entitlement; a grant item has both.
            models.CheckConstraint(
                condition=Q(grant__isnull=True, entitlement__isnull=True)
                | Q(grant__isnull=False, entitlement__isnull=False),
                name="governance_item_grant_or_identity",
            ),
            models.CheckConstraint(
                condition=Q(decision="") | Q(decided_at__isnull=False), name="governance_decided_item_has_time"
            ),
        ]
        indexes = [
            models.Index(fields=["reviewer", "decision"], name="gov_review_reviewer_open_idx"),
            models.Index(fields=["grant", "decision"], name="gov_review_grant_idx"),
        ]

    def __str__(self) -> str:
        return f"Review #{self.pk}"

    @property
    def is_identity_item(self) -> bool:
        """The identity itself is attested (no grant): "is it still needed?"."""
        return self.grant_id is None

    @property
    def subject(self) -> str:
        """What is reviewed, in words: "holder — System / entitlement" or "holder — Identity: still needed?"."""
        if self.is_identity_item:
            return f"{self.identity.name} — Identity: still needed?"
        return f"{self.identity.name} — {self.entitlement.system.name} / {self.entitlement.name}"
