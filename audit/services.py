"""The one way anything writes to the audit trail.

`audit_event_record` writes one event in the caller's transaction; `audit_events_record_many`
chains a whole batch under one lock with one bulk insert (sweeps, bulk decisions). Both take the
chain-head lock so that concurrent writers still produce a single valid chain.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


def _json_safe(data: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so the hash is computed over exactly what the database returns."""
    return json.loads(json.dumps(dict(data), cls=DjangoJSONEncoder))


def canonical_form(event: AuditEvent) -> bytes:
    """The bytes an event's hash covers: every field but the hash itself, in a fixed order."""
    occurred = event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
    body = {
        "seq": event.seq,
        "occurred_at": occurred,
        "actor_type": event.actor_type,
        "actor_user_id": event.actor_user_id,
        "actor_identity_id": event.actor_identity_id,
        "actor_label": event.actor_label,
        "channel": event.channel,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target_label": event.target_label,
        "data": event.data,
        "correlation_id": event.correlation_id,
        "client_ip": event.client_ip,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical_form(event)).hexdigest()


def _lock_chain_head() -> tuple[int, str]:
    """Serialise writers of the chain until the caller's transaction ends; return the head."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])
    # SQLite needs no lock here: its transactions are IMMEDIATE (settings), one writer at a time.
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    return head if head is not None else (0, GENESIS_HASH)


def _build_events(
    specs: Iterable[EventSpec], *, actor: Actor, occurred_at: datetime, head: tuple[int, str]
) -> list[AuditEvent]:
    context = get_context()
    seq, prev_hash = head
    events = []
    for spec in specs:
        target = Target.of(spec.target)
        seq += 1
        event = AuditEvent(
            seq=seq,
            occurred_at=occurred_at,
            actor_type=actor.type,
            actor_user_id=actor.user.pk if actor.user is not None else None,
            actor_identity_id=actor.identity.pk if actor.identity is not None else None,
            actor_label=actor.label,
            channel=context.channel,
            action=str(spec.action),
            target_type=target.type,
            target_id=target.id,
            target_label=target.label[:200],
            data=_json_safe(spec.data),
            correlation_id=context.correlation_id[:64],
            client_ip=context.client_ip[:45],
            prev_hash=prev_hash,
        )
        event.hash = prev_hash = compute_hash(event)
        events.append(event)
    return events


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


def audit_events_record_many(*, actor: ActorLike, events: Iterable[EventSpec]) -> list[AuditEvent]:
    """Append a batch of events under one chain lock with one bulk insert."""
    specs = list(events)
    if not specs:
        return []
    with transaction.atomic(savepoint=False):
        head = _lock_chain_head()
        built = _build_events(specs, actor=_as_actor(actor), occurred_at=timezone.now(), head=head)
        return AuditEvent.objects.bulk_create(built, batch_size=1000)
