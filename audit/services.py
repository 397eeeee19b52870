"""The one way anything writes to the audit trail.

Inside a `state_change` service, `audit_event_record` and `audit_events_record_many` only collect
their events; the outermost `state_change` writes them when the service is done: it takes the chain
(an advisory lock), reads the head, hashes and inserts the batch, and commits. The chain, the one
global order, is held for that last step only (a few milliseconds), so state changes of different
rows run side by side; row locks (`governance.locks`) keep changes of the same row apart.

Outside a `state_change` (a test, a one-off script) an event is written at once and the chain is
held until the caller's transaction ends, as it always was.
"""

import functools
import hashlib
import json
import logging
import math
import random
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import OperationalError, connection, models, transaction

from .choices import ActorType, AuditAction
from .context import get_context
from .kernel import clock
from .models import GENESIS_HASH, AuditEvent

# Any constant works; it only has to be the same for every writer of the chain.
_CHAIN_LOCK_KEY = 0x6175646974  # "audit"


@dataclass(frozen=True)
class Actor:
    """Who acted: a login user, an identity (machine or agent via the API), both, or the system."""

    user: AbstractBaseUser | None = None
    identity: models.Model | None = None

    @classmethod
    def system(cls) -> "Actor":
        return cls()

    @property
    def type(self) -> str:
        if self.identity is not None:
            return ActorType.IDENTITY
        return ActorType.USER if self.user is not None else ActorType.SYSTEM

    @property
    def label(self) -> str:
        if self.identity is not None:
            via = f" via {self.user.get_username()}" if self.user is not None else ""
            return f"{self.identity}{via}"[:200]
        return self.user.get_username() if self.user is not None else "system"


@dataclass(frozen=True)
class Target:
    """What an event is about, when the caller has ids rather than model instances (set-based sweeps)."""

    type: str
    id: str
    label: str = ""

    @classmethod
    def of(cls, obj: "models.Model | Target | None") -> "Target":
        if obj is None:
            return cls("", "", "")
        if isinstance(obj, Target):
            return obj
        return cls(obj._meta.label_lower, str(obj.pk), str(obj)[:200])


@dataclass(frozen=True)
class EventSpec:
    """One event of a batch for `audit_events_record_many`."""

    action: AuditAction
    target: "models.Model | Target | None"
    data: Mapping[str, Any] = field(default_factory=dict)


ActorLike = Actor | AbstractBaseUser | AnonymousUser | None


def acting_user(actor: ActorLike) -> Any:
    """The login behind whoever acts: the actor's user, or the user passed in its place (None: the system).

    Services take an `Actor` or, for brevity, a user; this is the one place that tells them apart.
    """
    return actor.user if isinstance(actor, Actor) else actor


def _as_actor(actor: ActorLike) -> Actor:
    if isinstance(actor, Actor):
        return actor
    if actor is None or not getattr(actor, "is_authenticated", False):
        return Actor.system()
    return Actor(user=actor)


# Values jsonb gives back exactly as they were hashed (DjangoJSONEncoder writes times as text).
_KEPT_AS_IS = frozenset({int, bool, type(None), datetime, date, timedelta, Decimal})


def _storable(value: Any) -> Any:
    """Data as the trail keeps it: what PostgreSQL's jsonb gives back exactly as it was hashed.

    jsonb refuses NUL characters (a pasted one must not turn a decision into an error), and it
    re-writes numbers its own way (1e+20 comes back as 100000000000000000000, -0.0 as 0.0), which would
    make an untouched event look edited: a float is kept as the text of its shortest exact form
    ("1e+20", "0.1"). NaN and infinity have no JSON form and are refused.
    """
    if type(value) in _KEPT_AS_IS:  # the common cases first: sweeps pass 100,000s of ids and times
        return value
    if (
        type(value) is dict
        and all(type(v) in _KEPT_AS_IS or (type(v) is str and "\x00" not in v) for v in value.values())
        and all(type(k) is str and "\x00" not in k for k in value)
    ):
        return dict(value)  # a copy: the caller may change its dict before the event is written
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"Audit data cannot hold {value!r}.")
        return repr(value)
    if isinstance(value, Mapping):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


def _stored_spec(spec: "EventSpec") -> "EventSpec":
    """The spec as the trail will keep it; an unknown action is refused now, not when written."""
    action = spec.action if isinstance(spec.action, AuditAction) else AuditAction(spec.action)
    data = _storable(spec.data)
    if data is spec.data and action is spec.action:
        return spec
    return EventSpec(action, spec.target, data)


# One encoder of each kind, made once: json.dumps with options builds a new one per call, which a
# sweep writing 100,000 events would pay twice per event.
_DATA_ENCODER = DjangoJSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_HEADER_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def data_json(data: Mapping[str, Any]) -> str:
    """The canonical JSON text of an event's data: keys sorted, compact, dates and decimals as strings."""
    return _DATA_ENCODER.encode(data)


# The fields an event's hash covers besides its data, in chain order ("occurred_at" as ISO text).
HASHED_FIELDS = (
    "seq",
    "occurred_at",
    "actor_type",
    "actor_user_id",
    "actor_identity_id",
    "actor_label",
    "channel",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "correlation_id",
    "client_ip",
    "prev_hash",
)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _digest(values: list, data_text: str) -> str:
    header = _HEADER_ENCODER.encode(values)
    return hashlib.sha256(f"{header}\n{data_text}".encode()).hexdigest()


def compute_hash(event: AuditEvent) -> str:
    """Recompute a stored event's hash: its fields in HASHED_FIELDS order, then its data as canonical JSON."""
    values = [_iso(event.occurred_at) if name == "occurred_at" else getattr(event, name) for name in HASHED_FIELDS]
    return _digest(values, data_json(event.data))


class ChainHead(NamedTuple):
    """The chain's last event when a writer took it, and the database's time then."""

    seq: int
    hash: str
    # When the events about to be written occurred: read once the chain is held, so that times
    # follow the chain's order, from the database's clock (see audit.kernel.clock).
    now: datetime


# The head, or none on an empty chain (the LEFT JOIN still gives the row with the time); the time is
# clock_timestamp() after audit_take_chain() returned, i.e. once the lock is held (not before a wait).
_TAKE_THE_CHAIN = """
    SELECT head.head_seq, head.head_hash, clock_timestamp()
    FROM (VALUES (1)) AS one LEFT JOIN audit_take_chain(%s) AS head ON true
"""


def hold_the_chain() -> ChainHead | None:
    """Take the audit chain's lock until the caller's transaction ends (re-entrant); return its head.

    `state_change` takes it only to write a finished service's events, just before commit; code
    outside a service that writes an event at once takes it then. On PostgreSQL one call of
    `audit_take_chain` (migration 0005) takes the lock and then reads the head with a fresh snapshot,
    and the database's time once it holds the lock.
    """
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(_TAKE_THE_CHAIN, [_CHAIN_LOCK_KEY])
        seq, hash_, now = cursor.fetchone()
    return ChainHead(seq or 0, hash_ or GENESIS_HASH, clock.from_database(now))


def chain_first() -> None:
    """For code that writes events at once, outside any service (the admin's role and privilege
    edits): take the chain before the rows it writes, so that no such writer holds a row while it
    waits for the chain. Inside a running `state_change` it does nothing: the chain is taken at commit.
    """
    if _collector() is None:
        hold_the_chain()


@dataclass
class _Pending:
    """An event collected by a running `state_change`, written when the service is done."""

    # The actor's and the context's columns and the target, taken when it was recorded: what the
    # event says is what was true then, whatever the service changes later.
    common: dict[str, Any]
    spec: "EventSpec"
    target: "Target"
    # Registered with transaction.on_commit: Django drops it when a savepoint around the event is
    # rolled back, which tells the writer to drop the event too.
    marker: Any


class _Collector:
    """The events of the outermost running `state_change` on this thread's connection."""

    def __init__(self) -> None:
        self.events: list[_Pending] = []


_local = threading.local()


def _collector() -> _Collector | None:
    """The running service's collector; none outside a transaction (a stale one is never joined)."""
    collector = getattr(_local, "collector", None)
    return collector if collector is not None and connection.in_atomic_block else None


# PostgreSQL's deadlock_detected and serialization_failure: the whole transaction can run again.
_RETRIABLE_SQLSTATES = frozenset({"40P01", "40001"})
logger = logging.getLogger(__name__)


def _retriable(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) in _RETRIABLE_SQLSTATES


def _backoff(attempt: int) -> None:
    """Sleep a little, with jitter, so two transactions that deadlocked do not meet again at once."""
    base = getattr(settings, "STATE_CHANGE_RETRY_BASE_SECONDS", 0.02)
    time.sleep(random.uniform(base, base * 2 ** (attempt + 1)))


def state_change(func=None, *, retry: bool = True):
    """A service that changes state: one transaction whose audit events are written at its end.

    The body runs with its row locks and collects its events; then the chain is taken, the events
    hashed and written, and the transaction commits: the chain is held for that last step only.
    A nested service joins the outermost one's transaction and events. The outermost one, when it
    opens the transaction itself, runs the whole service again on a deadlock or a serialization
    failure (a few times, with jitter): safe, because side effects wait in the outbox and on_commit.
    `retry=False` for a body that talks to the outside world (a delivery) and must not run twice.
    """
    if func is None:
        return functools.partial(state_change, retry=retry)

    @functools.wraps(func)
    def in_one_transaction(*args, **kwargs):
        if _collector() is not None:  # nested: the outermost service writes the events
            with transaction.atomic():
                return func(*args, **kwargs)
        own_transaction = not connection.in_atomic_block
        attempts = getattr(settings, "STATE_CHANGE_ATTEMPTS", 4) if retry and own_transaction else 1
        for attempt in range(attempts):
            try:
                with transaction.atomic():
                    collector = _local.collector = _Collector()
                    result = func(*args, **kwargs)
                    _local.collector = None  # on_commit callbacks run outside this service
                    _write_collected(collector)
                return result
            except OperationalError as exc:
                if attempt + 1 >= attempts or not _retriable(exc):
                    raise
                logger.info("%s: %s; running it again", func.__qualname__, exc.__cause__.__class__.__name__)
            finally:
                _local.collector = None
            _backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    return in_one_transaction


def _still_wanted(events: list[_Pending]) -> list[_Pending]:
    """The collected events whose savepoints were not rolled back (Django dropped their markers)."""
    alive = {id(func) for _sids, func, _robust in connection.run_on_commit}
    return [event for event in events if id(event.marker) in alive]


def _write_collected(collector: _Collector) -> None:
    events = _still_wanted(collector.events)
    collector.events = []
    if events:
        _write(events, returning=False)


def _chain_head() -> ChainHead:
    """Serialise writers of the chain until the caller's transaction ends; return the head."""
    head = hold_the_chain()
    if head is None:
        # SQLite needs no lock here: its transactions are IMMEDIATE (settings), one writer at a time.
        last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first() or (0, GENESIS_HASH)
        head = ChainHead(*last, clock.database_now())
    return head


def _actor_columns(actor: Actor) -> dict[str, Any]:
    return {
        "actor_type": actor.type,
        "actor_user_id": actor.user.pk if actor.user is not None else None,
        "actor_identity_id": actor.identity.pk if actor.identity is not None else None,
        "actor_label": actor.label,
    }


# Between `seq`, `occurred_at` (first) and `prev_hash` (last): the hashed fields known before the chain is taken.
_MIDDLE_FIELDS = HASHED_FIELDS[2:-1]
assert HASHED_FIELDS[:2] == ("seq", "occurred_at") and HASHED_FIELDS[-1] == "prev_hash"


def _prepare_rows(events: list[_Pending]) -> list[dict[str, Any]]:
    """Each event as a dict of column values, with all of its hashed text but its place in the chain.

    Done before the chain is taken: under it only the position, the time and the previous hash are
    added, so that a batch of 100,000 events holds the chain for the hashing and the insert, not the
    encoding.
    """
    rows = []
    for event in events:
        target = event.target
        row = {
            **event.common,
            "action": event.spec.action.value,  # a member of the registry (see _stored_spec)
            "target_type": target.type,
            "target_id": target.id,
            "target_label": target.label[:200],
            "data_text": data_json(event.spec.data),  # made storable when it was collected
        }
        # The canonical header is the JSON list of HASHED_FIELDS; its middle is fixed already.
        row["header_middle"] = _HEADER_ENCODER.encode([row[name] for name in _MIDDLE_FIELDS])[1:-1]
        rows.append(row)
    return rows


def _chain_rows(rows: list[dict[str, Any]], head: ChainHead) -> None:
    """Number the prepared rows from `head`, stamp them with its time (when they are written, just
    before commit) and hash each onto the one before (what `_digest` does)."""
    seq, prev_hash = head.seq, head.hash
    occurred = _iso(head.now)  # ISO text needs no JSON escaping: '"' + occurred + '"' is its JSON
    sha256 = hashlib.sha256
    for row in rows:
        seq += 1
        middle = row.pop("header_middle")
        row["seq"], row["occurred_at"], row["prev_hash"] = seq, occurred, prev_hash
        text = f'[{seq},"{occurred}",{middle},"{prev_hash}"]\n{row["data_text"]}'
        row["hash"] = prev_hash = sha256(text.encode()).hexdigest()


def audit_event_record(
    *,
    actor: ActorLike,
    action: AuditAction,
    target: "models.Model | Target | None" = None,
    data: Mapping[str, Any] | None = None,
) -> AuditEvent | None:
    """Append one event to the chain, in the caller's transaction (at its end, inside a service).

    `data` must be built by the caller from an allow-list of fields (never a model's __dict__),
    so that no secret or personal data reaches a trail that can never be edited. Returns the
    stored event when it was written at once (outside a `state_change`), else None.
    """
    written = audit_events_record_many(actor=actor, events=[EventSpec(action, target, data or {})])
    return written[0] if written else None


_COPY_COLUMNS = [
    "occurred_at",
    "seq",
    "actor_type",
    "actor_user_id",
    "actor_identity_id",
    "actor_label",
    "channel",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "data",
    "correlation_id",
    "client_ip",
    "prev_hash",
    "hash",
]
# Above this many events a batch goes in with COPY on PostgreSQL (no ids returned; sweeps need none).
COPY_THRESHOLD = 100


# A prepared row's values in _COPY_COLUMNS order; the data as the very text that was hashed.
_ROW_VALUES = itemgetter(*["data_text" if c == "data" else c for c in _COPY_COLUMNS])


def _copy_insert(rows: list[dict[str, Any]]) -> None:
    """PostgreSQL COPY: an order of magnitude faster than a multi-row INSERT for thousands of rows."""
    columns = ", ".join(_COPY_COLUMNS)
    # The time and the data as the very text that was hashed: no per-row conversion, nothing re-encoded.
    with connection.cursor() as cursor, cursor.copy(f"COPY audit_auditevent ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(_ROW_VALUES(row))


def _insert_rows(rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: one multi-row INSERT of the very text that was hashed (one round trip under the chain)."""
    one = "(" + ", ".join(["%s"] * len(_COPY_COLUMNS)) + ")"
    sql = f"INSERT INTO audit_auditevent ({', '.join(_COPY_COLUMNS)}) VALUES {', '.join([one] * len(rows))}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for row in rows for value in _ROW_VALUES(row)])


def _write(events: list[_Pending], *, returning: bool = True) -> list[AuditEvent]:
    """Take the chain, hash the events onto its head and insert them; the caller's transaction commits.

    With `returning`, the stored events come back (small batches written at once); a service's
    collected events need none, so on PostgreSQL they go in as one INSERT, or COPY when many.
    """
    rows = _prepare_rows(events)
    with transaction.atomic(savepoint=False):
        head = _chain_head()
        _chain_rows(rows, head)
        if connection.vendor == "postgresql" and len(rows) > COPY_THRESHOLD:
            _copy_insert(rows)
            return []
        if connection.vendor == "postgresql" and not returning:
            _insert_rows(rows)
            return []
        stored = []
        for row in rows:
            del row["occurred_at"]  # the same instant as a datetime
            data = json.loads(row.pop("data_text"))  # stored exactly as hashed
            stored.append(AuditEvent(occurred_at=head.now, data=data, **row))
        return AuditEvent.objects.bulk_create(stored, batch_size=1000)


def _no_op() -> None:
    """An on_commit marker: does nothing when it runs."""


def audit_events_record_many(*, actor: ActorLike, events: Iterable[EventSpec]) -> list[AuditEvent]:
    """Append a batch of events: collected for the running `state_change`, or written at once.

    Written at once, large batches on PostgreSQL go in with COPY and return nothing (sweeps need no ids).
    """
    # Made storable now: data that cannot be kept is refused before anything is written.
    specs = [_stored_spec(spec) for spec in events]
    if not specs:
        return []
    context = get_context()
    common = {
        **_actor_columns(_as_actor(actor)),
        "channel": context.channel,
        "correlation_id": context.correlation_id[:64],
        "client_ip": context.client_ip[:45],
    }
    collector = _collector()
    marker = None
    if collector is not None:
        # One marker for the batch: a savepoint rolled back around it drops it whole.
        marker = functools.partial(_no_op)
        transaction.on_commit(marker)
    pending = [_Pending(common, spec, Target.of(spec.target), marker) for spec in specs]
    if collector is not None:
        collector.events.extend(pending)
        return []
    return _write(pending)


@state_change
def export_recorded(*, actor: ActorLike, what: str, filters: Mapping[str, Any], file_format: str) -> None:
    """Record that evidence left the portal (who exported what, with which filters)."""
    audit_event_record(
        actor=actor,
        action=AuditAction.EXPORT_DOWNLOADED,
        target=None,
        data={"what": what, "format": file_format, "filters": {k: v for k, v in filters.items() if v}},
    )
