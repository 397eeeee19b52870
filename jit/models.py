"""Access requests, their approval stages and the decisions made on them; break-glass."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from simple_history.models import HistoricalRecords

from audit.kernel.text import FREE_TEXT_MAX_LENGTH, free_text_field_constraints

from .choices import Decision, DrillStatus, RequestStatus, ReviewOutcome, StageStatus
from .models_callbacks import RequestCallback  # noqa: F401  (own modules; Django finds them through this one)
from .models_delegations import Delegation  # noqa: F401
from .models_deputies import ApproverAbsence  # noqa: F401


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
    # The declared intent, in parts a policy can test and an auditor can search: which task, doing what, to what.
    intent_task = models.CharField("task id", max_length=200, blank=True)
    intent_action = models.CharField("action", max_length=100, blank=True)
    intent_resource = models.CharField("resource", max_length=300, blank=True)
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
    # Set only when this approver approved less than was asked: a shorter time, or a later start.
    duration = models.DurationField("approved for", null=True, blank=True)
    start_at = models.DateTimeField("approved to start", null=True, blank=True)
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


class BreakGlassEligibility(models.Model):
    """Who may break glass into which entitlement, for how long at most, and who reviews each use.

    Modelled in advance so that an emergency never becomes an ad-hoc exception. Either one identity (a
    person, or a machine for automated incident response) or the members of a group are eligible.
    Eligibility is access too: it ends at `expires_at` unless an admin reviews and renews it.
    """

    entitlement = models.ForeignKey(
        "governance.Entitlement",
        verbose_name="entitlement",
        on_delete=models.PROTECT,
        related_name="break_glass_eligibilities",
    )
    identity = models.ForeignKey(
        "governance.Identity",
        verbose_name="identity",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="break_glass_eligibilities",
    )
    group = models.CharField("group", max_length=150, blank=True, help_text="Every active member may break glass.")
    max_duration = models.DurationField("emergency duration (hard cap)")
    reviewer_group = models.CharField(
        "reviewers", max_length=150, blank=True, help_text="Empty: the entitlement's owner reviews each activation."
    )
    reason = models.TextField("why", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    expires_at = models.DateTimeField("eligible until")
    is_active = models.BooleanField("active", default=True)
    reviewed_at = models.DateTimeField("last reviewed", null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="reviewed by",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    expiry_warned_at = models.DateTimeField("expiry warning sent", null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="created by",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    # The history keeps its primary key, `id` (`eligibility.history`) and `history_user_id` (deleting a
    # login): no copies of the eligibility's indexes (see governance.models.Grant).
    history = HistoricalRecords(no_db_index=["entitlement", "identity", "reviewed_by", "created_by"])

    class Meta:
        verbose_name = "break-glass eligibility"
        verbose_name_plural = "break-glass eligibilities"
        ordering = ["entitlement_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(identity__isnull=False) & Q(group="")) | (Q(identity__isnull=True) & ~Q(group="")),
                name="%(app_label)s_%(class)s_one_holder",
            ),
            models.CheckConstraint(condition=Q(max_duration__gt=timedelta(0)), name="%(app_label)s_%(class)s_positive"),
            *free_text_field_constraints("reason"),
        ]

    def __str__(self) -> str:
        return f"Break-glass eligibility #{self.pk}"


class BreakGlassActivation(models.Model):
    """One use of break-glass: the grant it issued at once, why, until when, and the review after it.

    `ends_at` is the hard cap fixed at activation (the grant's own expiry); it never moves: more time
    is a new activation with a new review. The review is due by `review_due_at`, and the holder never
    reviews their own activation.
    """

    eligibility = models.ForeignKey(
        BreakGlassEligibility, verbose_name="eligibility", on_delete=models.PROTECT, related_name="activations"
    )
    grant = models.OneToOneField(
        "governance.Grant", verbose_name="grant", on_delete=models.PROTECT, related_name="break_glass_activation"
    )
    identity = models.ForeignKey(
        "governance.Identity", verbose_name="holder", on_delete=models.PROTECT, related_name="break_glass_activations"
    )
    entitlement = models.ForeignKey(
        "governance.Entitlement", verbose_name="entitlement", on_delete=models.PROTECT, related_name="+"
    )
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="activated by",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="break_glass_activations",
    )
    incident_reference = models.CharField("incident reference", max_length=200)
    reason = models.TextField("reason", max_length=FREE_TEXT_MAX_LENGTH)
    step_up = models.CharField("re-authenticated with", max_length=32)
    is_drill = models.BooleanField("drill", default=False)
    activated_at = models.DateTimeField("activated")
    ends_at = models.DateTimeField("ends (hard cap)")
    review_due_at = models.DateTimeField("review due")
    reviewer_group = models.CharField("reviewer group", max_length=150, blank=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="reviewer",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The entitlement's owner at activation, when no group reviews.",
    )
    outcome = models.CharField("review outcome", max_length=16, choices=ReviewOutcome.choices, blank=True)
    outcome_notes = models.TextField("review notes", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="reviewed by",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    reviewed_at = models.DateTimeField("reviewed", null=True, blank=True)
    reminded_at = models.DateTimeField("reviewers last reminded", null=True, blank=True)
    escalation_level = models.PositiveSmallIntegerField("escalated", default=0)

    class Meta:
        verbose_name = "break-glass activation"
        ordering = ["-activated_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=F("activated_at")), name="%(app_label)s_%(class)s_ends"),
            models.CheckConstraint(
                condition=Q(outcome="") | Q(reviewed_at__isnull=False), name="%(app_label)s_%(class)s_reviewed_has_time"
            ),
            *free_text_field_constraints("reason", "outcome_notes"),
        ]
        indexes = [
            models.Index(fields=["outcome", "review_due_at"], name="jit_bg_open_review_idx"),
            models.Index(fields=["activated_at"], name="jit_bg_activated_idx"),
        ]

    def __str__(self) -> str:
        return f"Break-glass #{self.pk}"


class BreakGlassDrill(models.Model):
    """A scheduled test of a break-glass path: its activation is marked a drill and reported as one."""

    eligibility = models.ForeignKey(
        BreakGlassEligibility, verbose_name="eligibility", on_delete=models.PROTECT, related_name="drills"
    )
    scheduled_for = models.DateTimeField("scheduled for")
    notes = models.TextField("notes", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    status = models.CharField("status", max_length=16, choices=DrillStatus.choices, default=DrillStatus.SCHEDULED)
    activation = models.OneToOneField(
        BreakGlassActivation,
        verbose_name="activation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="drill",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="scheduled by",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField("created", auto_now_add=True)

    class Meta:
        verbose_name = "break-glass drill"
        ordering = ["-scheduled_for", "-id"]
        constraints = [*free_text_field_constraints("notes")]

    def __str__(self) -> str:
        return f"Drill #{self.pk}"
