"""Big imports leave the web request: the file is kept as a job and a worker imports it.

A 100,000-row file takes most of a minute to check and write, longer than a web server should
hold a request. The page queues it and follows the job; the import itself is the same
all-or-nothing `import_apply`, run by the worker under the uploader's name.
"""

import hashlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connections, transaction

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import audit_event_record, state_change

from .. import policies
from ..errors import DomainError, PermissionRefused
from ..imports.specs import ENTITIES, FORMATS
from ..models import ImportJob
from .imports import ImportRejected, import_apply

ERRORS_KEPT = 500
logger = logging.getLogger(__name__)
IMPORT_TIME_LIMIT = settings.IMPORT_TASK_TIME_LIMIT  # seconds: a 100,000-row file takes about a minute


@state_change
def import_job_submit(*, actor, entity: str, fmt: str, content: bytes, file_name: str, dry_run: bool) -> ImportJob:
    """Keep the file and queue the import (on commit); only admins import."""
    if not policies.can_import(actor):
        raise PermissionRefused("Only admins may import the inventory.")
    if entity not in ENTITIES or fmt not in FORMATS:
        raise DomainError(f"Choose an entity from {', '.join(ENTITIES)} and a format from {', '.join(FORMATS)}.")
    job = ImportJob.objects.create(
        created_by=actor, entity=entity, format=fmt, file_name=file_name[:255], content=content, dry_run=dry_run
    )
    audit_event_record(
        actor=actor,
        action=AuditAction.IMPORT_QUEUED,
        target=job,
        data={
            "entity": entity,
            "format": fmt,
            "file_name": file_name,
            "sha256": hashlib.sha256(content).hexdigest(),
            "bytes": len(content),
            "dry_run": dry_run,
        },
    )
    from ..tasks import import_job_run_task

    transaction.on_commit(lambda: _wake_worker(import_job_run_task, job.pk))
    return job


def _wake_worker(task, job_id: int) -> None:
    """A broker that does not answer must not fail the upload: the reaper queues the job again."""
    try:
        task.delay(job_id)
    except Exception:  # any broker error: the job waits for the reaper
        logger.warning("import job %s: the broker did not take the task; it will be queued again", job_id)


def import_job_run(*, job_id: int) -> str:
    """Run a queued job once; a redelivered task finds it started or done and leaves it.

    Whatever happens, the job ends (imported, rejected or failed), the file is dropped and the
    outcome is audited; an error nobody foresaw fails the job and is raised again for the logs.
    """
    with transaction.atomic():
        job = ImportJob.objects.select_for_update(skip_locked=True).filter(pk=job_id).first()
        if job is None or job.status != ImportJob.Status.QUEUED:
            return "skipped"
        job.status, job.started_at = ImportJob.Status.RUNNING, clock.database_now()
        job.save(update_fields=["status", "started_at"])
    if not policies.can_import(job.created_by):
        return _finish(job, {"status": ImportJob.Status.FAILED, "message": "The uploader may no longer import."})
    progress = _ProgressWriter(job.pk)
    try:
        result = import_apply(
            actor=job.created_by,
            entity=job.entity,
            fmt=job.format,
            content=bytes(job.content),
            file_name=job.file_name,
            dry_run=job.dry_run,
            progress=progress,
        )
    except ImportRejected as rejected:
        return _finish(
            job,
            {
                "status": ImportJob.Status.REJECTED,
                "message": rejected.message,
                "row_errors": [
                    {"line": e.line, "key": e.key, "message": e.message} for e in rejected.row_errors[:ERRORS_KEPT]
                ],
                "error_count": len(rejected.row_errors),
            },
        )
    except DomainError as error:
        return _finish(job, {"status": ImportJob.Status.FAILED, "message": error.message})
    except BaseException:  # a time limit, a lost database: the job must not look alive for ever
        _finish(job, {"status": ImportJob.Status.FAILED, "message": FAILED_MESSAGE})
        raise
    finally:
        progress.close()
    fields = (
        "entity",
        "file_name",
        "rows",
        "created",
        "updated",
        "unchanged",
        "dry_run",
        "changed",
        "sha256",
        "created_keys",
    )
    outcome = {field: getattr(result, field) for field in fields}
    return _finish(job, {"status": ImportJob.Status.SUCCEEDED, "result": outcome})


class _ProgressWriter:
    """Writes a job's progress on a connection of its own, committed at once, so the page sees it
    while the import's transaction is still open. PostgreSQL only: SQLite's single writer (the
    import holds it) would make every write wait; there the page shows the phase without counts."""

    def __init__(self, job_id: int):
        self.job_id, self.connection = job_id, None
        if connections["default"].vendor == "postgresql":
            self.connection = connections.create_connection("default")

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.connection is None:
            return
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {ImportJob._meta.db_table} SET phase = %s, rows_done = %s, rows_total = %s WHERE id = %s",
                    [phase, done, total, self.job_id],
                )
        except DatabaseError:  # progress is a courtesy: never let it break the import
            logger.warning("import job %s: progress not recorded", self.job_id, exc_info=True)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


FAILED_MESSAGE = "The import stopped before it finished; nothing was written. Upload the file again."


def _finish(job: ImportJob, outcome: dict) -> str:
    with transaction.atomic():
        ImportJob.objects.filter(pk=job.pk).update(finished_at=clock.database_now(), content=b"", **outcome)
        audit_event_record(
            actor=job.created_by,
            action=AuditAction.IMPORT_FINISHED,
            target=job,
            data={
                "status": outcome["status"],
                "message": outcome.get("message", ""),
                "bad_rows": outcome.get("error_count", 0),
                **{k: outcome.get("result", {}).get(k) for k in ("rows", "created", "updated", "unchanged")},
            },
        )
    return outcome["status"]


def import_jobs_reap(*, now=None) -> dict[str, int]:
    """Beat: a run its worker lost is failed; a job whose wake-up never reached a worker is queued again."""
    now = now or clock.database_now()
    lost = ImportJob.objects.filter(
        status=ImportJob.Status.RUNNING, started_at__lt=now - timedelta(seconds=IMPORT_TIME_LIMIT + 60)
    ).defer("content")
    failed = 0
    for job in lost:
        failed += _finish(job, {"status": ImportJob.Status.FAILED, "message": FAILED_MESSAGE}) == "failed"
    from ..tasks import import_job_run_task

    stale = ImportJob.objects.filter(status=ImportJob.Status.QUEUED, created_at__lt=now - timedelta(minutes=5))
    requeued = 0
    for pk in stale.values_list("pk", flat=True):
        import_job_run_task.delay(pk)
        requeued += 1
    return {"failed": failed, "requeued": requeued}
