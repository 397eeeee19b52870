"""Where an audited action came from: set once per web request or task, read when an event is written.

A contextvar (not a thread-local) so it is right under ASGI and in Celery's task threads alike.
"""

from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class AuditContext:
    channel: str = "cli"
    correlation_id: str = ""
    client_ip: str = ""
    # The signed-in user of the web request, for events written where no actor is passed (signals).
    user: Any = None


_current: ContextVar[AuditContext] = ContextVar("audit_context", default=AuditContext())  # noqa: B039 - frozen dataclass, immutable


def get_context() -> AuditContext:
    return _current.get()


def set_context(**fields: Any) -> None:
    _current.set(replace(_current.get(), **fields))


def clear_context() -> None:
    _current.set(AuditContext())
