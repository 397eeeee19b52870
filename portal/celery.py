"""The Celery app and the one beat schedule.

Tasks are thin and idempotent: they find work in the database and call services, so running a
schedule twice, late, or from two beats at once changes nothing.
"""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.base")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(related_name="tasks_certification")

BEAT_SCHEDULE = {
    "audit.tasks.outbox_dispatch_task": {"task": "audit.tasks.outbox_dispatch_task", "schedule": 5.0},
    "jit.tasks.grants_expire_due_task": {"task": "jit.tasks.grants_expire_due_task", "schedule": 60.0},
    "jit.tasks.grants_warn_expiry_task": {"task": "jit.tasks.grants_warn_expiry_task", "schedule": 300.0},
    "jit.tasks.access_requests_chase_task": {"task": "jit.tasks.access_requests_chase_task", "schedule": 300.0},
    "jit.tasks.access_requests_start_scheduled_task": {
        "task": "jit.tasks.access_requests_start_scheduled_task",
        "schedule": 60.0,
    },
    # Break-glass: chase open reviews (each reminder or escalation every BREAK_GLASS_REMIND_EVERY at most)
    # and mark drills missed a day after their time.
    "jit.tasks.break_glass_chase_task": {"task": "jit.tasks.break_glass_chase_task", "schedule": 300.0},
    # Out of office: an absence that began since the last run shares what waits with the deputy.
    "jit.tasks.approver_absences_hand_over_task": {
        "task": "jit.tasks.approver_absences_hand_over_task",
        "schedule": 300.0,
    },
    "governance.tasks.hygiene_scan_task": {"task": "governance.tasks.hygiene_scan_task", "schedule": 900.0},
    "governance.tasks.manual_work_chase_task": {"task": "governance.tasks.manual_work_chase_task", "schedule": 900.0},
    "governance.tasks.revocations_retry_task": {"task": "governance.tasks.revocations_retry_task", "schedule": 300.0},
    # Reconciliation: every 5 minutes, the systems whose last one is RECONCILE_INTERVAL_MINUTES old.
    "governance.tasks.systems_reconcile_task": {"task": "governance.tasks.systems_reconcile_task", "schedule": 300.0},
    "governance.tasks.import_jobs_reap_task": {"task": "governance.tasks.import_jobs_reap_task", "schedule": 300.0},
    # Every AUDIT_CHECKPOINT_INTERVAL (from settings once they are loaded, below).
    "audit.tasks.audit_checkpoint_task": {"task": "audit.tasks.audit_checkpoint_task", "schedule": 300.0},
    # Retention: hourly; each run deletes in batches until nothing is due.
    "audit.tasks.outbox_purge_task": {"task": "audit.tasks.outbox_purge_task", "schedule": 3600.0},
    "governance.tasks.notifications_purge_task": {
        "task": "governance.tasks.notifications_purge_task",
        "schedule": 3600.0,
    },
    "governance.tasks.workload_exchanges_purge_task": {
        "task": "governance.tasks.workload_exchanges_purge_task",
        "schedule": 3600.0,
    },
    # Certification: close at the due date (and start the next round) each minute; chase reviewers every
    # 15 minutes (each person hears once a day at most); the cadence review daily; revocation results.
    "governance.tasks_certification.certification_close_due_task": {
        "task": "governance.tasks_certification.certification_close_due_task",
        "schedule": 60.0,
    },
    "governance.tasks_certification.certification_chase_task": {
        "task": "governance.tasks_certification.certification_chase_task",
        "schedule": 900.0,
    },
    "governance.tasks_certification.certification_cadence_task": {
        "task": "governance.tasks_certification.certification_cadence_task",
        "schedule": 86400.0,
    },
    "governance.tasks_certification.certification_remediation_sync_task": {
        "task": "governance.tasks_certification.certification_remediation_sync_task",
        "schedule": 60.0,
    },
}
app.conf.beat_schedule = BEAT_SCHEDULE


@app.on_after_configure.connect
def _schedule_from_settings(sender=None, **_kwargs) -> None:
    """Intervals that are settings: read once Django's settings are, never while they load (this module
    is imported by the settings' own package)."""
    from django.conf import settings

    interval = settings.AUDIT_CHECKPOINT_INTERVAL.total_seconds()
    BEAT_SCHEDULE["audit.tasks.audit_checkpoint_task"]["schedule"] = interval


@signals.task_prerun.connect
def _audit_context_for_task(task_id=None, **_kwargs) -> None:
    """Events written by a task carry channel 'task' and the task id as correlation id."""
    from audit.context import set_context

    set_context(channel="task", correlation_id=task_id or "")


@signals.task_postrun.connect
def _clear_audit_context(**_kwargs) -> None:
    from audit.context import clear_context

    clear_context()
