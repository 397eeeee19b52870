"""Access requests, their approval stages and the decisions made on them."""

from django.conf import settings
from django.db import models
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from audit.kernel.text import FREE_TEXT_MAX_LENGTH, free_text_field_constraints

from .choices import Decision, RequestStatus, StageStatus


class AccessRequest(models.Model):
    """Someone asks for an entitlement for an identity, for a time, and says why.

    `policy` is the policy engine's decision at submission, kept as a snapshot so an auditor sees
    why the request was routed as it was. Terminal states (everything but pending) are final.
    """

    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="requested by",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="access_requests",
    )
    requester_identity = models.ForeignKey(
        "governance.Identity",
        verbose_name="requested by identity",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="requests_made",
    )
    beneficiary = models.ForeignKey(
        "governance.Identity", verbose_name="for", on_delete=models.PROTECT, related_name="access_requests"
    )
    entitlement = models.ForeignKey(
        "governance.Entitlement", verbose_name="entitlement", on_delete=models.PROTECT, related_name="access_requests"
    )
    duration = models.DurationField("duration")
    justification = models.TextField("justification", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    ticket = models.CharField("ticket", max_length=100, blank=True)
    intent = models.TextField(
        "intent",
        blank=True,
        max_length=FREE_TEXT_MAX_LENGTH,
        help_text="The task an agent declared it needs this for.",
    )
    delegation_chain = models.JSONField("on behalf of", default=list, blank=True)
    start_at = models.DateTimeField("start", null=True, blank=True, help_text="Empty: as soon as approved.")
    activation_deadline = models.DateTimeField("activate by", null=True, blank=True)
    status = models.CharField(
        "status", max_length=16, choices=RequestStatus.choices, default=RequestStatus.PENDING, db_index=True
    )
    policy = models.JSONField("policy decision", default=dict, blank=True)
    renewal_of = models.ForeignKey(
        "governance.Grant",
        verbose_name="extends grant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="renewal_requests",
    )
    grant = models.OneToOneField(
        "governance.Grant",
        verbose_name="resulting grant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="source_request",
    )
    decided_at = models.DateTimeField("decided", null=True, blank=True)
    decision_note = models.TextField("decision note", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    created_at = models.DateTimeField("submitted", auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    class Meta:
        verbose_name = "access request"
        ordering = ["-created_at", "-id"]
        constraints = [
            # One open question per identity and entitlement: a double submit is refused, not queued.
            models.UniqueConstraint(
                fields=["beneficiary", "entitlement"],
                condition=Q(status="pending"),
                name="%(app_label)s_%(class)s_one_pending_per_entitlement",
            ),
            models.CheckConstraint(
                condition=Q(requester__isnull=False) | Q(requester_identity__isnull=False),
                name="%(app_label)s_%(class)s_has_requester",
            ),
            # Free text is bounded (audit.kernel.text): one request cannot make a queue megabytes long.
            *free_text_field_constraints("justification", "intent", "decision_note"),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="jit_request_status_created_idx")]

    def __str__(self) -> str:
        return f"Request #{self.pk}"

    @property
    def is_pending(self) -> bool:
        return self.status == RequestStatus.PENDING


class ApprovalStageQuerySet(models.QuerySet):
    def waiting(self):
        """The stage each pending request waits on: pending, with every earlier stage approved."""
        undecided_earlier = ApprovalStage.objects.filter(
            request=OuterRef("request"), position__lt=OuterRef("position")
        ).exclude(status=StageStatus.APPROVED)
        return self.filter(request__status=RequestStatus.PENDING, status=StageStatus.PENDING).exclude(
            Exists(undecided_earlier)
        )

    def with_started_at(self):
        """Annotate `started_at`: when the stage began waiting.

        Stage 1 starts when the request is submitted; a later stage when the stage before it was
        approved (its `decided_at`), so the time is derived, never stored twice.
        """
        previous = ApprovalStage.objects.filter(request=OuterRef("request"), position__lt=OuterRef("position"))
        return self.annotate(
            started_at=Coalesce(
                Subquery(previous.order_by("-position").values("decided_at")[:1]), F("request__created_at")
            )
        )


class ApprovalStage(models.Model):
    """One ordered stage of a request: who may approve it and how many distinct approvals it needs.

    `reminded_at` and `escalated_at` record the chaser's once-only nudges for this stage, timed
    from when the stage started waiting (see `ApprovalStageQuerySet.with_started_at`).
    """

    request = models.ForeignKey(AccessRequest, verbose_name="request", on_delete=models.CASCADE, related_name="stages")
    position = models.PositiveSmallIntegerField("position")
    approver_source = models.CharField("approver", max_length=32)
    group = models.CharField("group", max_length=150, blank=True)
    quorum = models.PositiveSmallIntegerField("approvals needed", default=1)
    reason = models.CharField("why this stage", max_length=200, blank=True)
    eligible = models.ManyToManyField(
        settings.AUTH_USER_MODEL, verbose_name="eligible approvers", related_name="eligible_stages", blank=True
    )
    status = models.CharField("status", max_length=16, choices=StageStatus.choices, default=StageStatus.PENDING)
    decided_at = models.DateTimeField("decided", null=True, blank=True)
    reminded_at = models.DateTimeField("approvers reminded", null=True, blank=True)
    escalated_at = models.DateTimeField("escalated", null=True, blank=True)

    objects = ApprovalStageQuerySet.as_manager()

    class Meta:
        verbose_name = "approval stage"
        ordering = ["request", "position"]
        constraints = [
            models.UniqueConstraint(fields=["request", "position"], name="%(app_label)s_%(class)s_unique_position"),
        ]

    def __str__(self) -> str:
        return f"Stage {self.position} of request #{self.request_id}"


class Approval(models.Model):
    """One person's decision on one stage."""

    request = models.ForeignKey(
        AccessRequest, verbose_name="request", on_delete=models.CASCADE, related_name="approvals"
    )
    stage = models.ForeignKey(ApprovalStage, verbose_name="stage", on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="approver", on_delete=models.PROTECT, related_name="approvals_given"
    )
    decision = models.CharField("decision", max_length=16, choices=Decision.choices)
    comment = models.TextField("comment", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    decided_at = models.DateTimeField("decided", auto_now_add=True)

    class Meta:
        verbose_name = "approval"
        ordering = ["decided_at", "id"]
        constraints = [
            # One person cannot satisfy two stages (or count twice) on the same request.
            models.UniqueConstraint(fields=["request", "approver"], name="%(app_label)s_%(class)s_one_per_person"),
            *free_text_field_constraints("comment"),
        ]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} by {self.approver_id} on request #{self.request_id}"


class Heartbeat(models.Model):
    """When a periodic job last finished; the health check reads it."""

    name = models.CharField("job", max_length=100, primary_key=True)
    last_run_at = models.DateTimeField("last run")
    last_count = models.PositiveIntegerField("items handled", default=0)

    class Meta:
        verbose_name = "heartbeat"

    def __str__(self) -> str:
        return self.name
