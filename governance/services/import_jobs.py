"""Big imports leave the web request: the file is kept as a job and a worker imports it.

A 100,000-row file takes most of a minute to check and write, longer than a web server should
hold a request. The page queues it and follows the job; the import itself is the same
all-or-nothing `import_apply`, run by the worker under the uploader's name.
"""

import hashlib
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from audit.choices import AuditAction
from audit.services import audit_event_record

from .. import policies
from ..errors import DomainError, PermissionRefused
from ..imports.specs import ENTITIES, FORMATS
from ..models import ImportJob
from .imports import ImportRejected, import_apply

ERRORS_KEPT = 500
IMPORT_TIME_LIMIT = 1150  # seconds: a 100,000-row file takes about a minute


@transaction.atomic
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

    transaction.on_commit(lambda: import_job_run_task.delay(job.pk))
    return job


def import_job_run(*, job_id: int) -> str:
    """Run a queued job once; a redelivered task finds it started or done and leaves it."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update(skip_locked=True).filter(pk=job_id).first()
        # A run older than the time limit died with its worker (its transaction rolled back): run again.
        abandoned = job is not None and (
            job.status == ImportJob.Status.RUNNING
            and job.started_at < timezone.now() - timedelta(seconds=IMPORT_TIME_LIMIT)
        )
        if job is None or not (job.status == ImportJob.Status.QUEUED or abandoned):
            return "skipped"
        job.status, job.started_at = ImportJob.Status.RUNNING, timezone.now()
        job.save(update_fields=["status", "started_at"])
    outcome: dict = {}
    try:
        result = import_apply(
            actor=job.created_by,
            entity=job.entity,
            fmt=job.format,
            content=bytes(job.content),
            file_name=job.file_name,
            dry_run=job.dry_run,
        )
    except ImportRejected as rejected:
        outcome = {
            "status": ImportJob.Status.REJECTED,
            "message": rejected.message,
            "row_errors": [
                {"line": e.line, "key": e.key, "message": e.message} for e in rejected.row_errors[:ERRORS_KEPT]
            ],
            "error_count": len(rejected.row_errors),
        }
    except DomainError as error:
        outcome = {"status": ImportJob.Status.FAILED, "message": error.message}
    else:
        outcome = {
            "status": ImportJob.Status.SUCCEEDED,
            "result": {
                "entity": result.entity,
                "file_name": result.file_name,
                "rows": result.rows,
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "dry_run": result.dry_run,
                "changed": result.changed,
                "sha256": result.sha256,
            },
        }
    ImportJob.objects.filter(pk=job.pk).update(finished_at=timezone.now(), content=b"", **outcome)
    return outcome["status"]
