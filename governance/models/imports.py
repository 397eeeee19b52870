from django.conf import settings
from django.db import models


class ImportJob(models.Model):
    """A file too big to import inside a web request, imported by a worker; the page follows it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Checking and importing"
        SUCCEEDED = "succeeded", "Imported"
        REJECTED = "rejected", "Nothing imported: bad rows"
        FAILED = "failed", "Failed"

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="uploaded by", on_delete=models.PROTECT, related_name="+"
    )
    entity = models.CharField("entity", max_length=16)
    format = models.CharField("format", max_length=8)
    file_name = models.CharField("file name", max_length=255, blank=True)
    content = models.BinaryField("content")
    dry_run = models.BooleanField("check only", default=False)
    status = models.CharField("status", max_length=16, choices=Status.choices, default=Status.QUEUED)
    result = models.JSONField("result", default=dict, blank=True)
    row_errors = models.JSONField("bad rows", default=list, blank=True)
    error_count = models.PositiveIntegerField("bad rows in all", default=0)
    message = models.TextField("message", blank=True)
    # How far the worker got ("validated" or "written", rows done of all), written beside the import's
    # own transaction so the page can show it while that transaction is still open.
    phase = models.CharField("phase", max_length=16, blank=True)
    rows_done = models.PositiveIntegerField("rows done", default=0)
    rows_total = models.PositiveIntegerField("rows in all", default=0)
    created_at = models.DateTimeField("uploaded", auto_now_add=True)
    started_at = models.DateTimeField("started", null=True, blank=True)
    finished_at = models.DateTimeField("finished", null=True, blank=True)

    class Meta:
        verbose_name = "import job"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Import #{self.pk} ({self.entity}, {self.file_name})"

    @property
    def done(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.REJECTED, self.Status.FAILED)

    @property
    def percent(self) -> int:
        """Checking is the first half of the work, writing the second."""
        if not self.rows_total:
            return 0
        half = 50 * self.rows_done // self.rows_total
        return half + (50 if self.phase == "written" else 0)
