"""Beat tasks of the inventory: thin and idempotent (the service reconciles by key)."""

from celery import shared_task

from .services.findings import findings_scan
from .services.manual_work import chase_manual_work


@shared_task(acks_late=True)
def hygiene_scan_task() -> dict:
    """Recompute hygiene findings: open new ones, refresh the ones still seen, resolve the rest."""
    return findings_scan()


@shared_task(acks_late=True)
def manual_work_chase_task() -> dict:
    """Remind system owners of access waiting to be put in place or removed by hand; escalate the stuck."""
    return chase_manual_work()
