"""Retention: delivered outbox rows and read notifications go after their age; nothing else ever does."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent, OutboxMessage, OutboxStatus
from audit.retention import outbox_purge_delivered
from audit.services import audit_event_record
from audit.tasks import outbox_purge_task
from governance.models import Notification
from governance.services.notifications import notifications_purge_read
from governance.tasks import notifications_purge_task

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def _message(key: str, status: str = OutboxStatus.DELIVERED) -> OutboxMessage:
    delivered = timezone.now() if status == OutboxStatus.DELIVERED else None
    return OutboxMessage.objects.create(
        kind="email", payload={}, idempotency_key=key, status=status, delivered_at=delivered
    )


def _keys(queryset) -> set[str]:
    return set(queryset.values_list("idempotency_key" if queryset.model is OutboxMessage else "key", flat=True))


def test_delivered_outbox_rows_go_after_the_retention_age_and_nothing_else(settings):
    settings.OUTBOX_RETENTION_DAYS = 30
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _message("old-delivered")
        _message("old-pending", OutboxStatus.PENDING)
        _message("old-dead", OutboxStatus.DEAD)
        audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD, data={})
    with time_machine.travel(start + 2 * DAY, tick=False):
        _message("young-delivered")
    events = AuditEvent.objects.count()

    with time_machine.travel(start + 29 * DAY, tick=False):
        assert outbox_purge_task() == {"deleted": 0}
    with time_machine.travel(start + 31 * DAY, tick=False):
        assert outbox_purge_task() == {"deleted": 1}

    assert _keys(OutboxMessage.objects.all()) == {"old-pending", "old-dead", "young-delivered"}
    assert AuditEvent.objects.count() == events  # the audit trail is never purged


def test_outbox_purge_deletes_a_backlog_in_batches():
    with time_machine.travel(timezone.now() - 60 * DAY, tick=False):
        for n in range(5):
            _message(f"m{n}")
    with CaptureQueriesContext(connection) as queries:
        assert outbox_purge_delivered(batch_size=2) == 5
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # 2 + 2 + 1, each its own short statement
    assert not OutboxMessage.objects.exists()


def test_a_retention_of_zero_days_keeps_everything(settings, make_user):
    settings.OUTBOX_RETENTION_DAYS = 0
    settings.NOTIFICATION_RETENTION_DAYS = 0
    user = make_user("reader")
    with time_machine.travel(timezone.now() - 3650 * DAY, tick=False):
        _message("ancient")
        Notification.objects.create(recipient=user, kind="k", subject="s", key="n", read_at=timezone.now())
    assert outbox_purge_delivered() == 0 and notifications_purge_read() == 0
    assert OutboxMessage.objects.exists() and Notification.objects.exists()


def test_read_notifications_go_after_the_retention_age_unread_ones_never(settings, make_user):
    settings.NOTIFICATION_RETENTION_DAYS = 90
    user = make_user("reader")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for key in ("read-early", "read-late", "unread"):
            Notification.objects.create(recipient=user, kind="k", subject=key, key=key)
        Notification.objects.filter(key="read-early").update(read_at=timezone.now())
    with time_machine.travel(start + 5 * DAY, tick=False):
        Notification.objects.filter(key="read-late").update(read_at=timezone.now())

    with time_machine.travel(start + 91 * DAY, tick=False):
        assert notifications_purge_task() == {"deleted": 1}
    assert _keys(Notification.objects.all()) == {"read-late", "unread"}

    with time_machine.travel(start + 400 * DAY, tick=False):
        assert notifications_purge_read(batch_size=1) == 1
    assert _keys(Notification.objects.all()) == {"unread"}  # someone still has to see it


def test_the_beat_runs_both_purges():
    from portal.celery import BEAT_SCHEDULE

    assert {"audit.tasks.outbox_purge_task", "governance.tasks.notifications_purge_task"} <= set(BEAT_SCHEDULE)
    for name in ("audit.tasks.outbox_purge_task", "governance.tasks.notifications_purge_task"):
        assert BEAT_SCHEDULE[name]["task"] == name
