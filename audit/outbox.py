"""The transactional outbox: the one way side effects leave a transaction.

A service calls `outbox_enqueue` inside its transaction; the row commits or rolls back with the
state change it belongs to. `outbox_dispatch` (a beat task every few seconds, and woken early on
commit) delivers due rows in batches under SKIP LOCKED, retries failures with exponential
backoff and jitter, and marks a row dead after OUTBOX_MAX_ATTEMPTS (or at once on a
`PermanentFailure`) so an admin can retry it. A handler runs outside any transaction: a batch's
claims are leases committed in one short transaction before the calls, and the outcomes are recorded
in one short transaction after them (with what a batch handler's targets confirmed, set-based).
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
from django.db.models import F

from .choices import AuditAction
from .kernel import clock
from .models import OutboxMessage, OutboxStatus
from .services import Actor, ActorLike, audit_event_record, state_change

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], str], None]
DeadHandler = Callable[[dict[str, Any], str], None]
# A batch handler's call: (payload, idempotency key) of each message in, one result each out (a value, or
# the exception its call raised); its settle: (payload, value) of each call that succeeded in, an error
# ("" if none) each out.
BatchCall = Callable[[list[tuple[dict[str, Any], str]]], list[Any]]
BatchSettle = Callable[[list[tuple[dict[str, Any], Any]]], list[str]]


@dataclass(frozen=True)
class _BatchHandler:
    call_many: BatchCall
    settle_many: BatchSettle | None


_handlers: dict[str, Handler] = {}
_batch_handlers: dict[str, _BatchHandler] = {}
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


def outbox_batch_handler(
    kind: str, *, settle: BatchSettle | None = None, on_dead: DeadHandler | None = None
) -> Callable[[BatchCall], BatchCall]:
    """Register a function that delivers a batch of messages of `kind` at once (see BatchCall).

    It runs with no transaction open, like a plain handler, and may call its targets side by side;
    it should change nothing in the database itself. `settle`, if given, runs in the transaction
    that records the batch's outcomes, with what each successful call returned: it applies what the
    targets confirmed set-based, through the services' rules, and answers an error for each one it
    could not apply (that delivery then fails and is tried again). `on_dead` as for `outbox_handler`.
    """

    def register(func: BatchCall) -> BatchCall:
        def one(payload: dict[str, Any], idempotency_key: str) -> None:
            raise AssertionError(f"{kind} is delivered in batches")  # pragma: no cover

        _handlers[kind] = one
        _batch_handlers[kind] = _BatchHandler(func, settle)
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


@dataclass
class _Delivery:
    """One claimed message on its way: what its call came to, before the outcome is recorded."""

    message: OutboxMessage
    value: Any = None
    error: str = ""
    permanent: bool = False
    # Its handler was called (False: the task ran out of time first; handed back, its attempt not spent).
    reached: bool = False


@state_change
def _claim(result: DispatchResult, size: int) -> tuple[list[OutboxMessage], int]:
    """Take up to `size` due messages and count their attempts, in one short transaction of its own.

    The counts commit before delivery starts, so a worker killed while delivering (hard time limit,
    lost machine) has still spent an attempt; the claim keeps the messages from other workers until
    OUTBOX_CLAIM_SECONDS have passed (past the task's hard limit), then they are due again. A message
    whose last attempt was lost that way goes dead here instead of being delivered once more than
    OUTBOX_MAX_ATTEMPTS allows. Returns the messages to deliver and how many due ones were found.
    """
    now = clock.database_now()
    found = list(
        OutboxMessage.objects.select_for_update(skip_locked=True)
        .filter(status=OutboxStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")[:size]
    )
    claimed, spent = [], []
    lease = now + timedelta(seconds=settings.OUTBOX_CLAIM_SECONDS)
    for message in found:
        if message.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
            message.last_error = "The worker delivering the last attempt stopped before it finished."
            _mark_dead(message)
            result.dead += 1
            spent.append(message)
        else:
            message.attempts += 1
            message.next_attempt_at = lease
            claimed.append(message)
    if claimed:
        OutboxMessage.objects.filter(pk__in=[m.pk for m in claimed]).update(
            attempts=F("attempts") + 1, next_attempt_at=lease
        )
    if spent:
        OutboxMessage.objects.bulk_update(spent, ["status", "last_error"])
    return claimed, len(found)


def _mark_dead(message: OutboxMessage) -> None:
    message.status = OutboxStatus.DEAD
    audit_event_record(
        actor=Actor.system(),
        action=AuditAction.OUTBOX_DEAD,
        target=message,
        data={"kind": message.kind, "attempts": message.attempts, "error": message.last_error},
    )
    _settle_dead(message)


def _error_text(exc: BaseException) -> tuple[str, bool]:
    """What a failed call left in `last_error`, and whether trying again cannot help."""
    return f"{type(exc).__name__}: {exc}"[:2000], isinstance(exc, PermanentFailure)


def _call_handlers(deliveries: list[_Delivery]) -> None:
    """Run the handlers with no transaction open and no row locked, filling in each delivery's outcome.

    A handler may talk to a slow or dead target for as long as its timeout allows; meanwhile nothing
    waits on it, since the claims (leases committed by `_claim`) are what keep other workers off the
    messages. Whatever a plain handler changes in the database it changes through services with short
    transactions of their own; what a batch handler's targets confirmed waits for `_record_outcomes`.
    A task out of time (SoftTimeLimitExceeded) stops at once: see `_deliver_batch`.
    """
    by_kind: dict[str, list[_Delivery]] = {}
    for delivery in deliveries:
        by_kind.setdefault(delivery.message.kind, []).append(delivery)
    for kind, group in by_kind.items():
        batch = _batch_handlers.get(kind)
        if batch is not None:
            _call_batch(batch.call_many, group)
            continue
        for delivery in group:
            delivery.reached = True
            try:
                _handlers[kind](delivery.message.payload, delivery.message.idempotency_key)
            except SoftTimeLimitExceeded as exc:
                raise _OutOfTime([delivery], exc) from None
            except Exception as exc:
                delivery.error, delivery.permanent = _error_text(exc)


def _call_batch(call_many: "BatchCall", group: list[_Delivery]) -> None:
    for delivery in group:
        delivery.reached = True
    try:
        values = call_many([(d.message.payload, d.message.idempotency_key) for d in group])
    except SoftTimeLimitExceeded as exc:
        raise _OutOfTime(group, exc) from None  # which calls finished is not known: all keep their claims
    except Exception as exc:
        values = [exc] * len(group)
    if len(values) != len(group):
        values = [RuntimeError(f"The batch handler answered {len(values)} results for {len(group)} messages.")] * len(
            group
        )
    for delivery, value in zip(group, values, strict=True):
        if isinstance(value, BaseException):
            delivery.error, delivery.permanent = _error_text(value)
        else:
            delivery.value = value


class _OutOfTime(Exception):
    """Carries the soft time limit out of `_call_handlers`, with the deliveries whose calls were in flight."""

    def __init__(self, in_flight: list[_Delivery], exc: SoftTimeLimitExceeded) -> None:
        super().__init__(str(exc))
        self.in_flight, self.exc = in_flight, exc


@state_change
def _record_outcomes(deliveries: list[_Delivery], result: DispatchResult) -> None:
    """Record what the batch's deliveries came to, in one short transaction after the calls.

    The messages are locked first (in id order); then each batch handler's `settle` applies what its
    targets confirmed, through the services' set-based forms, in this same transaction (a settle
    that fails turns its deliveries into retriable failures, nothing of it written). Nothing is
    recorded for a message settled or claimed again meanwhile (a delivery that outlived its claim):
    the newer claim records its own outcome.
    """
    ids = sorted(d.message.pk for d in deliveries)
    current = {
        pk: (status, attempts)
        for pk, status, attempts in OutboxMessage.objects.select_for_update()
        .filter(pk__in=ids)
        .order_by("pk")
        .values_list("pk", "status", "attempts")
    }
    ours = [d for d in deliveries if current.get(d.message.pk) == (OutboxStatus.PENDING, d.message.attempts)]
    settle_errors = _settle(ours)
    now = clock.database_now()
    delivered, failed, dead, handed_back = [], [], [], []
    for delivery in ours:
        message = delivery.message
        error = delivery.error or settle_errors.get(id(delivery), "")
        if not delivery.reached:
            handed_back.append(message.pk)
        elif not error:
            delivered.append(message.pk)
        else:
            message.last_error = error
            logger.warning("Outbox %s attempt %s failed: %s", message, message.attempts, error)
            if delivery.permanent or message.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
                _mark_dead(message)
                dead.append(message)
            else:
                message.next_attempt_at = now + backoff_delay(message.attempts)
                failed.append(message)
    if delivered:
        OutboxMessage.objects.filter(pk__in=delivered).update(
            status=OutboxStatus.DELIVERED, delivered_at=now, last_error=""
        )
    if failed:
        OutboxMessage.objects.bulk_update(failed, ["next_attempt_at", "last_error"])
    if dead:
        OutboxMessage.objects.bulk_update(dead, ["status", "last_error"])
    if handed_back:  # never called: the attempt is given back, and the message is due again now
        OutboxMessage.objects.filter(pk__in=handed_back).update(attempts=F("attempts") - 1, next_attempt_at=now)
    result.delivered += len(delivered)
    result.failed += len(failed)
    result.dead += len(dead)


def _settle(deliveries: list[_Delivery]) -> dict[int, str]:
    """Apply each batch handler's successful calls, in a savepoint per kind: the errors, by id() of delivery."""
    by_kind: dict[str, list[_Delivery]] = {}
    for delivery in deliveries:
        batch = _batch_handlers.get(delivery.message.kind)
        if batch is not None and batch.settle_many is not None and delivery.reached and not delivery.error:
            by_kind.setdefault(delivery.message.kind, []).append(delivery)
    errors: dict[int, str] = {}
    for kind, group in by_kind.items():
        try:
            with transaction.atomic():
                answers = _batch_handlers[kind].settle_many([(d.message.payload, d.value) for d in group])
        except Exception as exc:
            answers = [_error_text(exc)[0]] * len(group)
        for delivery, error in zip(group, answers, strict=True):
            if error:
                errors[id(delivery)] = error[:2000]
    return errors


def _settle_dead(message: OutboxMessage) -> None:
    on_dead = _dead_handlers.get(message.kind)
    if on_dead is None:
        return
    try:
        with transaction.atomic():
            on_dead(message.payload, message.last_error)
    except Exception:
        logger.exception("Outbox %s: the dead-letter handler failed", message)


def _deliver_batch(result: DispatchResult, size: int) -> int:
    """Claim, deliver and settle up to `size` due messages; how many due ones were found (0: none is due)."""
    claimed, found = _claim(result, size)
    if not claimed:
        return found
    deliveries = [_Delivery(message) for message in claimed]
    try:
        _call_handlers(deliveries)
    except _OutOfTime as stop:
        # The task is out of time: the calls in flight keep their claims and counted attempts (delivered
        # again once the claims expire); what was done before is recorded, what was not reached handed back.
        in_flight = {id(d) for d in stop.in_flight}
        rest = [d for d in deliveries if id(d) not in in_flight]
        if rest:
            _record_outcomes(rest, result)
        raise stop.exc from None
    _record_outcomes(deliveries, result)
    return found


def outbox_dispatch(*, limit: int | None = None) -> DispatchResult:
    """Deliver up to `limit` due messages, OUTBOX_CLAIM_BATCH at a time; safe in several workers at once (SKIP LOCKED).

    Each batch is three steps: one short transaction claims it (leases), the handlers run with no
    transaction open (a batch handler calls its targets together: the webhook connector's in a few
    threads), and one short transaction records the outcomes, set-based.
    """
    result = DispatchResult()
    left = limit or settings.OUTBOX_BATCH_SIZE
    while left > 0:
        size = min(left, getattr(settings, "OUTBOX_CLAIM_BATCH", 50))
        found = _deliver_batch(result, size)
        if not found:  # drained; what the batch itself enqueued (a failure's email) was claimed meanwhile
            break
        left -= found
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
