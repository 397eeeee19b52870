"""The transactional outbox: the one way side effects leave a transaction.

A service calls `outbox_enqueue` inside its transaction; the row commits or rolls back with the
state change it belongs to. `outbox_dispatch` (a beat task every few seconds, and woken early on
commit) delivers due rows one at a time under SKIP LOCKED, retries failures with exponential
backoff and jitter, and marks a row dead after OUTBOX_MAX_ATTEMPTS so an admin can retry it.
Delivery is at-least-once: handlers get the idempotency key and must tolerate a repeat.
"""

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .choices import AuditAction
from .models import OutboxMessage, OutboxStatus
from .services import Actor, ActorLike, audit_event_record, state_change

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], str], None]
DeadHandler = Callable[[dict[str, Any], str], None]
_handlers: dict[str, Handler] = {}
_dead_handlers: dict[str, DeadHandler] = {}


def outbox_handler(kind: str, *, on_dead: DeadHandler | None = None) -> Callable[[Handler], Handler]:
    """Register the function that delivers messages of `kind` (called with payload and idempotency key).

    `on_dead(payload, error)` runs in the transaction that marks a message dead, so the state the
    message was serving (a grant waiting on its connector) shows the failure instead of waiting forever.
    """

    def register(func: Handler) -> Handler:
        _handlers[kind] = func
        if on_dead is not None:
            _dead_handlers[kind] = on_dead
        return func

    return register


def wake_dispatcher() -> None:
    # Best effort only: with the broker down the beat schedule (or the next wake) delivers it.
    from .tasks import outbox_dispatch_task

    try:
        outbox_dispatch_task.apply_async(retry=False)
    except Exception:
        logger.warning("Outbox: broker unreachable, message waits for the next dispatch", exc_info=True)


def outbox_enqueue(*, kind: str, payload: dict[str, Any], idempotency_key: str) -> OutboxMessage:
    """Record a side effect in the caller's transaction; enqueuing the same key twice is a no-op."""
    if kind not in _handlers:
        raise ValueError(f"No outbox handler for {kind!r}")
    message, created = OutboxMessage.objects.get_or_create(
        idempotency_key=idempotency_key, defaults={"kind": kind, "payload": payload}
    )
    if created:
        transaction.on_commit(wake_dispatcher)
    return message


def enqueue_many(rows: list[OutboxMessage]) -> None:
    """Bulk form for set-based sweeps; rows whose idempotency key exists already are skipped."""
    OutboxMessage.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    if rows:
        transaction.on_commit(wake_dispatcher)


def backoff_delay(attempts: int) -> timedelta:
    """Exponential backoff with full jitter in its upper half, capped."""
    base = settings.OUTBOX_BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0)
    capped = min(base, settings.OUTBOX_BACKOFF_MAX_SECONDS)
    return timedelta(seconds=capped * random.uniform(0.5, 1.0))


@dataclass
class DispatchResult:
    delivered: int = 0
    failed: int = 0
    dead: int = 0


@state_change
def _claim_one(result: DispatchResult) -> OutboxMessage | None:
    """Take the next due message and count the attempt in a transaction of its own.

    The count commits before delivery starts, so a worker killed while delivering (hard time limit,
    lost machine) has still spent an attempt; the claim keeps the message from other workers until
    OUTBOX_CLAIM_SECONDS have passed, then it is due again. A message whose last attempt was lost
    that way goes dead here instead of being delivered once more than OUTBOX_MAX_ATTEMPTS allows.
    """
    message = (
        OutboxMessage.objects.select_for_update(skip_locked=True)
        .filter(status=OutboxStatus.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at", "id")
        .first()
    )
    if message is None:
        return None
    if message.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
        message.last_error = "The worker delivering the last attempt stopped before it finished."
        _mark_dead(message, result)
        message.save(update_fields=["status", "last_error"])
        return message
    message.attempts += 1
    message.next_attempt_at = timezone.now() + timedelta(seconds=settings.OUTBOX_CLAIM_SECONDS)
    message.save(update_fields=["attempts", "next_attempt_at"])
    return message


def _mark_dead(message: OutboxMessage, result: DispatchResult) -> None:
    message.status = OutboxStatus.DEAD
    result.dead += 1
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.OUTBOX_DEAD,
        target=message,
        data={"kind": message.kind, "attempts": message.attempts, "error": message.last_error},
    )
    _settle_dead(message)


def _deliver_one(result: DispatchResult) -> bool:
    """Claim, deliver and settle one due message; False when none is due."""
    claimed = _claim_one(result)
    if claimed is None:
        return False
    if claimed.status != OutboxStatus.PENDING:
        return True
    _deliver_claimed(claimed, result)
    return True


@state_change(retry=False)  # the handler talks to the outside world: never twice for one claim
def _deliver_claimed(claimed: OutboxMessage, result: DispatchResult) -> None:
    """Deliver a claimed message and record the outcome: one transaction, its events on the chain at commit."""
    # Locked again for the delivery and its outcome, which commit together.
    message = OutboxMessage.objects.select_for_update().get(pk=claimed.pk)
    if message.status != OutboxStatus.PENDING or message.attempts != claimed.attempts:
        return  # settled or claimed again meanwhile (a delivery that outlived its claim)
    try:
        handler = _handlers[message.kind]
        with transaction.atomic():
            handler(message.payload, message.idempotency_key)
    except SoftTimeLimitExceeded:
        # The task is out of time: end it now. The attempt is counted; the claim expires and the
        # message is delivered again later.
        raise
    except Exception as exc:
        message.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        if message.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
            _mark_dead(message, result)
        else:
            message.next_attempt_at = timezone.now() + backoff_delay(message.attempts)
            result.failed += 1
        logger.warning("Outbox %s attempt %s failed: %s", message, message.attempts, message.last_error)
    else:
        message.status = OutboxStatus.DELIVERED
        message.delivered_at = timezone.now()
        message.last_error = ""
        result.delivered += 1
    message.save(update_fields=["status", "next_attempt_at", "last_error", "delivered_at"])


def _settle_dead(message: OutboxMessage) -> None:
    on_dead = _dead_handlers.get(message.kind)
    if on_dead is None:
        return
    try:
        with transaction.atomic():
            on_dead(message.payload, message.last_error)
    except Exception:
        logger.exception("Outbox %s: the dead-letter handler failed", message)


def outbox_dispatch(*, limit: int | None = None) -> DispatchResult:
    """Deliver up to `limit` due messages; safe to run in several workers at once (SKIP LOCKED)."""
    result = DispatchResult()
    for _ in range(limit or settings.OUTBOX_BATCH_SIZE):
        if not _deliver_one(result):
            break
    return result


@state_change
def outbox_retry(*, message_id: int, actor: ActorLike) -> OutboxMessage:
    """Give a dead message a fresh set of attempts, due now."""
    message = OutboxMessage.objects.select_for_update().get(pk=message_id)
    if message.status != OutboxStatus.DEAD:
        return message
    message.status, message.attempts, message.next_attempt_at = OutboxStatus.PENDING, 0, timezone.now()
    message.save(update_fields=["status", "attempts", "next_attempt_at"])
    audit_event_record(actor=actor, action=AuditAction.OUTBOX_RETRIED, target=message, data={"kind": message.kind})
    transaction.on_commit(wake_dispatcher)
    return message
