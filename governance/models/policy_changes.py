from django.conf import settings
from django.db import models
from django.db.models import Q


class PolicyChangeStatus(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    APPLIED = "applied", "Approved and applied"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"


class PolicyChange(models.Model):
    """A change that loosens a high or critical entitlement's policy, held until a second admin approves it.

    `before` and `after` hold only the fields the change loosens, as the audit trail records them
    (durations in ISO 8601); the rest of the same edit applied at once.
    """

    entitlement = models.ForeignKey(
        "governance.Entitlement", verbose_name="entitlement", on_delete=models.PROTECT, related_name="policy_changes"
    )
    before = models.JSONField("before")
    after = models.JSONField("after")
    loosens = models.JSONField("what it loosens", default=list)
    reason = models.CharField("reason", max_length=1000, blank=True)
    status = models.CharField(
        "status", max_length=16, choices=PolicyChangeStatus.choices, default=PolicyChangeStatus.PENDING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="asked by", on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField("asked")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="decided by",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_at = models.DateTimeField("decided", null=True, blank=True)
    comment = models.CharField("comment", max_length=1000, blank=True)

    class Meta:
        verbose_name = "policy change"
        ordering = ["-requested_at", "-id"]
        constraints = [
            # One change waits per entitlement: a second one would be decided against a policy that may move.
            models.UniqueConstraint(
                fields=["entitlement"], condition=Q(status="pending"), name="governance_one_pending_policy_change"
            ),
        ]

    def __str__(self) -> str:
        return f"Policy change #{self.pk} of {self.entitlement}"
