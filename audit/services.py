"""The one way anything writes to the audit trail.

`audit_event_record` writes one event in the caller's transaction; `audit_events_record_many`
chains a whole batch under one lock with one bulk insert (sweeps, bulk decisions). Both take the
chain-head lock so that concurrent writers still produce a single valid chain.
"""

import functools
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.utils import timezone

from .choices import ActorType, AuditAction
from .context import get_context
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
        and all(type(v) in _KEPT_AS_IS for v in value.values())
        and all(type(k) is str and "\x00" not in k for k in value)
    ):
        return value
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
    data = _storable(spec.data)
    return spec if data is spec.data else EventSpec(spec.action, spec.target, data)


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


def hold_the_chain() -> None:
    """Take the audit chain's lock now, before any row lock of a state change.

    Writing an event holds the chain until commit, so a row lock taken after a transaction's first
    event could wait for a transaction that holds that row and waits for the chain: a deadlock.
    Services therefore take the chain first (`state_change` does it for them): state changes queue
    in one place, which the chain already made them do from their first event on. Re-entrant.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


def state_change(func):
    """A service that changes state: one transaction that queues on the audit chain before
    anything else (see `hold_the_chain`), so no row it writes or locks can be held against it."""

    @functools.wraps(func)
    def in_one_transaction(*args, **kwargs):
        with transaction.atomic():
            hold_the_chain()
            return func(*args, **kwargs)

    return in_one_transaction


def _lock_chain_head() -> tuple[int, str]:
    """Serialise writers of the chain until the caller's transaction ends; return the head."""
    hold_the_chain()
    # SQLite needs no lock here: its transactions are IMMEDIATE (settings), one writer at a time.
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    return head if head is not None else (0, GENESIS_HASH)


def _build_rows(
    specs: Iterable[EventSpec], *, actor: Actor, occurred_at: datetime, head: tuple[int, str]
) -> list[dict[str, Any]]:
    """Each event as a dict of column values with its hash, chained from `head` (plain dicts: cheap)."""
    context = get_context()
    seq, prev_hash = head
    occurred = _iso(occurred_at)
    common = {
        "actor_type": actor.type,
        "actor_user_id": actor.user.pk if actor.user is not None else None,
        "actor_identity_id": actor.identity.pk if actor.identity is not None else None,
        "actor_label": actor.label,
        "channel": context.channel,
        "correlation_id": context.correlation_id[:64],
        "client_ip": context.client_ip[:45],
    }
    rows = []
    for spec in specs:
        target = Target.of(spec.target)
        seq += 1
        action = spec.action
        row = {
            **common,
            "seq": seq,
            # an unknown action is refused here (a member of the registry is taken as it is: sweeps)
            "action": action.value if isinstance(action, AuditAction) else AuditAction(action).value,
            "target_type": target.type,
            "target_id": target.id,
            "target_label": target.label[:200],
            "prev_hash": prev_hash,
        }
        text = data_json(spec.data)  # made storable by the caller
        values = [occurred if name == "occurred_at" else row[name] for name in HASHED_FIELDS]
        row["hash"] = prev_hash = _digest(values, text)
        row["data_text"] = text
        rows.append(row)
    return rows


def audit_event_record(
    *,
    actor: ActorLike,
    action: AuditAction,
    target: "models.Model | Target | None" = None,
    data: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction.

    `data` must be built by the caller from an allow-list of fields (never a model's __dict__),
    so that no secret or personal data reaches a trail that can never be edited.
    """
    return audit_events_record_many(actor=actor, events=[EventSpec(action, target, data or {})])[0]


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


def _copy_insert(rows: list[dict[str, Any]], occurred_at: datetime) -> None:
    """PostgreSQL COPY: an order of magnitude faster than a multi-row INSERT for thousands of rows."""
    columns = ", ".join(_COPY_COLUMNS)
    # The time and the data as the very text that was hashed: no per-row conversion, nothing re-encoded.
    occurred = _iso(occurred_at)
    values = itemgetter(*["data_text" if c == "data" else c for c in _COPY_COLUMNS[1:]])
    with connection.cursor() as cursor, cursor.copy(f"COPY audit_auditevent ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row((occurred, *values(row)))


def audit_events_record_many(*, actor: ActorLike, events: Iterable[EventSpec]) -> list[AuditEvent]:
    """Append a batch of events under one chain lock with one bulk insert.

    Large batches on PostgreSQL are written with COPY and return nothing (sweeps need no ids).
    """
    # Made storable before the chain lock: data that cannot be kept is refused before anything is written.
    specs = [_stored_spec(spec) for spec in events]
    if not specs:
        return []
    occurred_at = timezone.now()
    with transaction.atomic(savepoint=False):
        head = _lock_chain_head()
        rows = _build_rows(specs, actor=_as_actor(actor), occurred_at=occurred_at, head=head)
        if connection.vendor == "postgresql" and len(rows) > COPY_THRESHOLD:
            _copy_insert(rows, occurred_at)
            return []
        events = [
            AuditEvent(
                occurred_at=occurred_at, data=json.loads(row.pop("data_text")), **row
            )  # stored exactly as hashed
            for row in rows
        ]
        return AuditEvent.objects.bulk_create(events, batch_size=1000)


def export_recorded(*, actor: ActorLike, what: str, filters: Mapping[str, Any], file_format: str) -> AuditEvent:
    """Record that evidence left the portal (who exported what, with which filters)."""
    with transaction.atomic():
        return audit_event_record(
            actor=actor,
            action=AuditAction.EXPORT_DOWNLOADED,
            target=None,
            data={"what": what, "format": file_format, "filters": {k: v for k, v in filters.items() if v}},
        )
