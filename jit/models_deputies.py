"""Out of office: an approver names a deputy who decides for them for a while."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from audit.kernel.text import FREE_TEXT_MAX_LENGTH, free_text_field_constraints


class ApproverAbsenceQuerySet(models.QuerySet):
    def in_force(self, now):
        """Absences running at `now`: started, not over, not ended early."""
        return self.filter(starts_at__lte=now, ends_at__gt=now, ended_at__isnull=True)

    def not_over(self, now):
        """Absences still to come or running (what an approver may still change)."""
        return self.filter(ends_at__gt=now, ended_at__isnull=True)


class ApproverAbsence(models.Model):
    """A period an approver is away, and the deputy who decides in their place meanwhile.

    Requests submitted in the period are routed to the deputy instead of the absent approver; the
    stages already waiting for the approver when the period starts are shared with the deputy
    (`handed_over_at` records that this was done, once). Self-approval stays impossible: a deputy is
    never routed a request they may not decide (theirs, for them, for a machine they own).
    Never edited: ending early sets `ended_at`; another period is another row.
    """

    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="away", on_delete=models.PROTECT, related_name="absences"
    )
    deputy = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="deputy", on_delete=models.PROTECT, related_name="deputising"
    )
    starts_at = models.DateTimeField("from")
    ends_at = models.DateTimeField("until")
    reason = models.TextField("note", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    ended_at = models.DateTimeField("ended early", null=True, blank=True)
    handed_over_at = models.DateTimeField("waiting requests shared with the deputy", null=True, blank=True)
    created_at = models.DateTimeField("created", auto_now_add=True)

    objects = ApproverAbsenceQuerySet.as_manager()

    class Meta:
        verbose_name = "approver absence"
        verbose_name_plural = "approver absences"
        ordering = ["starts_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="%(app_label)s_%(class)s_ends"),
            # Naming oneself would route nothing anywhere new.
            models.CheckConstraint(condition=~Q(deputy=F("approver")), name="%(app_label)s_%(class)s_not_self"),
            *free_text_field_constraints("reason"),
        ]
        indexes = [
            # Routing asks "who is away now" for a handful of approvers at each submission.
            models.Index(fields=["approver", "ends_at"], name="jit_absence_approver_idx"),
            models.Index(fields=["deputy", "ends_at"], name="jit_absence_deputy_idx"),
        ]

    def __str__(self) -> str:
        return f"Absence #{self.pk}"
