"""Retention of the outbox: delivered messages are dropped after OUTBOX_RETENTION_DAYS.

Only delivered rows go: pending ones are still to be sent and dead ones wait for an admin. The
audit trail is never purged. Rows go in batches, each its own short transaction, so a large
backlog never holds locks for long and an interrupted run loses nothing (the next one goes on).
"""

from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import OutboxMessage, OutboxStatus


def outbox_purge_delivered(*, older_than: timedelta | None = None, batch_size: int | None = None) -> int:
    """Delete messages delivered longer ago than `older_than` (OUTBOX_RETENTION_DAYS; 0 keeps them)."""
    older_than = retention_cutoff(older_than, settings.OUTBOX_RETENTION_DAYS)
    if older_than is None:
        return 0
    cutoff = timezone.now() - older_than
    # A delivered row always has its delivery time; one without (written by hand) ages from its creation.
    due = OutboxMessage.objects.filter(
        Q(delivered_at__lt=cutoff) | Q(delivered_at__isnull=True, created_at__lt=cutoff),
        status=OutboxStatus.DELIVERED,
    )
    return delete_in_batches(due, batch_size)


def retention_cutoff(older_than: timedelta | None, days_setting: int) -> timedelta | None:
    """How old a row must be to go: `older_than`, else the setting's days; None keeps everything."""
    if older_than is not None:
        return older_than
    return timedelta(days=days_setting) if days_setting > 0 else None


def delete_in_batches(due: QuerySet, batch_size: int | None = None) -> int:
    """Delete the rows of `due` a batch at a time (each its own statement); return how many went.

    The filter is applied again to each batch: a row that changed since it was picked (an admin's
    retry of an outbox message) stays.
    """
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    deleted = 0
    while True:
        ids = list(due.order_by("id").values_list("id", flat=True)[:batch_size])
        if not ids:
            return deleted
        count, _ = due.filter(id__in=ids).delete()
        deleted += count
        if len(ids) < batch_size:
            return deleted
