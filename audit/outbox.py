"""The transactional outbox: the one way side effects leave a transaction.

A service calls `outbox_enqueue` inside its transaction; the row commits or rolls back with the
state change it belongs to. `outbox_dispatch` (a beat task every few seconds, and woken early on
commit) delivers due rows one at a time under SKIP LOCKED, retries failures with exponential
backoff and jitter, and marks a row dead after OUTBOX_MAX_ATTEMPTS (or at once on a
`PermanentFailure`) so an admin can retry it. A handler runs outside any transaction: the claim is a
lease committed before the call, and the outcome is recorded in a short transaction after it.
Delivery is at-least-once: handlers get the idempotency key and must tolerate a repeat.

The wake-up never costs a request anything: one per transaction, handed to a thread of the process
that publishes it with bounded connect and socket times. A wake-up lost to a broken broker loses
nothing, since beat polls the outbox every few seconds (portal/celery.py).
"""

import contextlib
import logging
import os
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .choices import AuditAction
from .kernel import clock
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
    """Ask for a dispatch now, without waiting: the waker thread publishes it (an on-commit callback)."""
    _waker.wake()


def wake_dispatcher_on_commit() -> None:
    """Wake the dispatcher when the current transaction commits, once however many messages it records.

    A callback already registered in this transaction serves; one registered in a savepoint that was
    rolled back is gone from Django's list with it, so it is asked for again.
    """
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(func is wake_dispatcher for _, func, _ in connection.run_on_commit):
        return
    transaction.on_commit(wake_dispatcher)


def bounded_broker_connection(timeout: float):
    """A new broker connection that tries once and gives up after `timeout` seconds to connect, read or write.

    The broker's pooled connections have the worker's patience (they retry, and wait as long as
    CELERY_BROKER_TRANSPORT_OPTIONS allow); a wake-up or a health probe must be done quickly instead.
    Made without touching the network: the transport is loaded here, the connection opens on first use.
    """
    from celery import current_app

    bounded = {"socket_connect_timeout": timeout, "socket_timeout": timeout, "max_retries": 0}
    connection = current_app.connection_for_write(connect_timeout=timeout, transport_options=bounded)
    connection.transport  # noqa: B018  loads the transport's client library now, not on the network's time
    return connection


def _publish_wake() -> None:
    """Publish one dispatch task: one attempt within OUTBOX_WAKE_TIMEOUT_SECONDS, so the waker is free again soon."""
    from .tasks import outbox_dispatch_task

    with bounded_broker_connection(settings.OUTBOX_WAKE_TIMEOUT_SECONDS) as connection:
        outbox_dispatch_task.apply_async(retry=False, connection=connection)


class _Waker:
    """One daemon thread per process publishes wake-ups; a commit only drops a token in a queue of one.

    A full queue means a wake-up is already waiting to go out, after this commit: it serves this one
    too, so wake-ups never pile up behind a broker that is slow or gone. The thread is started on first
    use in each process (after a fork too: a forked child has no threads).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._tokens: queue.Queue[None] = queue.Queue(maxsize=1)
        self._publishing = threading.Event()

    def wake(self) -> None:
        self._ensure_thread()
        with contextlib.suppress(queue.Full):  # a wake-up already waits to go out, after this commit
            self._tokens.put_nowait(None)

    def busy(self) -> bool:
        """A wake-up is waiting or being published (for tests)."""
        return self._publishing.is_set() or not self._tokens.empty()

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._tokens = queue.Queue(maxsize=1)
            self._publishing = threading.Event()
            threading.Thread(target=self._run, args=(self._tokens,), name="outbox-waker", daemon=True).start()
            self._pid = os.getpid()

    def _run(self, tokens: queue.Queue) -> None:
        while True:
            tokens.get()
            self._publishing.set()
            try:
                _publish_wake()
            except Exception as exc:
                # Best effort only: beat's next dispatch (every few seconds) delivers what is due.
                logger.warning("Outbox: broker unreachable (%s), messages wait for the next dispatch", exc)
            finally:
                self._publishing.clear()


_waker = _Waker()


class PermanentFailure(Exception):
    """A delivery that trying again will not fix (refused credentials, bad configuration): dead at once."""


def outbox_enqueue(*, kind: str, payload: dict[str, Any], idempotency_key: str) -> OutboxMessage:
    """Record a side effect in the caller's transaction; enqueuing the same key twice is a no-op."""
    if kind not in _handlers:
        raise ValueError(f"No outbox handler for {kind!r}")
    message, created = OutboxMessage.objects.get_or_create(
        idempotency_key=idempotency_key,
        # Due now by the database's clock (read only when the message is new): the dispatcher compares with it.
        defaults={"kind": kind, "payload": payload, "next_attempt_at": clock.database_now},
    )
    if created:
        wake_dispatcher_on_commit()
    return message


def enqueue_many(rows: list[OutboxMessage]) -> None:
    """Bulk form for set-based sweeps; rows whose idempotency key exists already are skipped."""
    now = clock.database_now() if rows else None  # due now, by the clock the dispatcher compares with
    for row in rows:
        row.next_attempt_at = now
    OutboxMessage.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    if rows:
        wake_dispatcher_on_commit()


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
        .filter(status=OutboxStatus.PENDING, next_attempt_at__lte=clock.database_now())
        .order_by("next_attempt_at", "id")
        .first()
    )
    if message is None:
        return None
    if message.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
        message.last_error = "The worker delivering the last attempt stopped before it finished."
        _mark_dead(message)
        result.dead += 1
        message.save(update_fields=["status", "last_error"])
        return message
    message.attempts += 1
    message.next_attempt_at = clock.database_now() + timedelta(seconds=settings.OUTBOX_CLAIM_SECONDS)
    message.save(update_fields=["attempts", "next_attempt_at"])
    return message


def _mark_dead(message: OutboxMessage) -> None:
    message.status = OutboxStatus.DEAD
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
    error, permanent = _call_handler(claimed)
    outcome = _record_outcome(claimed, error=error, permanent=permanent)
    if outcome is not None:
        setattr(result, outcome, getattr(result, outcome) + 1)
    return True


def _call_handler(message: OutboxMessage) -> tuple[str, bool]:
    """Run the handler with no transaction open and no row locked: the error ("" if none), and whether it is permanent.

    The handler may talk to a slow or dead target for as long as its timeout allows; meanwhile
    nothing waits on it, since the claim (a lease committed by `_claim_one`) is what keeps other
    workers off the message. Whatever the handler changes in the database it changes through
    services with short transactions of their own.
    """
    try:
        _handlers[message.kind](message.payload, message.idempotency_key)
    except SoftTimeLimitExceeded:
        # The task is out of time: end it now. The attempt is counted; the claim expires and the
        # message is delivered again later.
        raise
    except PermanentFailure as exc:
        return f"{type(exc).__name__}: {exc}"[:2000], True
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:2000], False
    return "", False


@state_change
def _record_outcome(claimed: OutboxMessage, *, error: str, permanent: bool) -> str | None:
    """Record what the delivery came to, in a short transaction after the call: the DispatchResult field to count.

    Nothing is recorded when the message was settled or claimed again meanwhile (a delivery that
    outlived its claim): the newer claim records its own outcome.
    """
    message = OutboxMessage.objects.select_for_update().get(pk=claimed.pk)
    if message.status != OutboxStatus.PENDING or message.attempts != claimed.attempts:
        return None
    outcome = "delivered"
    if not error:
        message.status = OutboxStatus.DELIVERED
        message.delivered_at = timezone.now()
        message.last_error = ""
    else:
        message.last_error = error
        logger.warning("Outbox %s attempt %s failed: %s", message, message.attempts, error)
        if permanent or message.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
            _mark_dead(message)
            outcome = "dead"
        else:
            message.next_attempt_at = clock.database_now() + backoff_delay(message.attempts)
            outcome = "failed"
    message.save(update_fields=["status", "next_attempt_at", "last_error", "delivered_at"])
    return outcome


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
    message.status, message.attempts, message.next_attempt_at = OutboxStatus.PENDING, 0, clock.database_now()
    message.save(update_fields=["status", "attempts", "next_attempt_at"])
    audit_event_record(actor=actor, action=AuditAction.OUTBOX_RETRIED, target=message, data={"kind": message.kind})
    wake_dispatcher_on_commit()
    return message
