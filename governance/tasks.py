"""Beat tasks of the inventory: thin and idempotent (the service reconciles by key)."""

from celery import shared_task

from .services.findings import findings_scan
from .services.import_jobs import IMPORT_TIME_LIMIT
from .services.manual_work import chase_manual_work


@shared_task(acks_late=True)
def hygiene_scan_task() -> dict:
    """Recompute hygiene findings: open new ones, refresh the ones still seen, resolve the rest."""
    return findings_scan()


@shared_task(acks_late=True)
def revocations_retry_task() -> dict:
    """Ask targets again to remove access whose removal failed: never left as failed for good."""
    from .services.grants import grants_retry_failed_revocations

    return {"retried": grants_retry_failed_revocations()}


@shared_task(acks_late=True)
def systems_reconcile_task() -> dict:
    """Compare what each target grants with the grants in force, for systems not reconciled lately."""
    from .services.reconciliation import systems_reconcile_due

    return systems_reconcile_due()


@shared_task(acks_late=True)
def manual_work_chase_task() -> dict:
    """Remind system owners of access waiting to be put in place or removed by hand; escalate the stuck."""
    return chase_manual_work()


# Under the broker's visibility timeout (the longest hard limit plus a margin), so it is not handed out twice.
@shared_task(acks_late=True, soft_time_limit=IMPORT_TIME_LIMIT - 30, time_limit=IMPORT_TIME_LIMIT)
def import_job_run_task(job_id: int) -> str:
    """Import an uploaded file too big for a web request (all rows or none)."""
    from .services.import_jobs import import_job_run

    return import_job_run(job_id=job_id)


@shared_task(acks_late=True)
def import_jobs_reap_task() -> dict:
    """Fail imports whose worker was lost; queue again those whose wake-up never reached a worker."""
    from .services.import_jobs import import_jobs_reap

    return import_jobs_reap()


@shared_task(acks_late=True)
def notifications_purge_task() -> dict:
    """Delete notifications read longer ago than NOTIFICATION_RETENTION_DAYS, in batches."""
    from .services.notifications import notifications_purge_read

    return {"deleted": notifications_purge_read()}


@shared_task(acks_late=True)
def workload_exchanges_purge_task() -> dict:
    """Forget workload exchanges whose JWT can no longer be replayed."""
    from .services.federation import workload_exchanges_purge

    return {"deleted": workload_exchanges_purge()}
