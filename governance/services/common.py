"""Helpers the inventory services share: locking, diffs for the audit trail, actor checks."""

from typing import Any

from django.db import models

from audit.services import Actor, ActorLike, acting_user

from .. import policies
from ..errors import ValidationFailed


def is_system(actor: ActorLike) -> bool:
    """Only an explicit system actor (`None` or `Actor.system()`: tasks, migrations, the sweep) is the
    system. A machine identity acting without a login is not: it fails closed in `check`."""
    if actor is None:
        return True
    return isinstance(actor, Actor) and actor.user is None and actor.identity is None


def check(actor: ActorLike, predicate, obj, message: str, *, machine_may=None) -> None:
    """Refuse unless the system acts or the acting login passes `predicate`. A machine identity acting
    on its own (a token) passes only `machine_may(identity, obj)`, where a service gives machines a
    rule of their own; anyone else (an anonymous user) is refused."""
    if is_system(actor):
        return
    user = acting_user(actor)
    if user is None and isinstance(actor, Actor) and actor.identity is not None:
        policies.require(machine_may is not None and machine_may(actor.identity, obj), message)
        return
    allowed = user is not None and getattr(user, "is_authenticated", False) and predicate(user, obj)
    policies.require(allowed, message)


def _plain(value: Any) -> Any:
    if isinstance(value, models.Model):
        return value.pk
    return value


def snapshot(obj: models.Model, fields: list[str]) -> dict[str, Any]:
    """The allow-listed fields of an object, as stored (foreign keys by id)."""
    result = {}
    for name in fields:
        field = obj._meta.get_field(name)
        result[name] = getattr(obj, field.attname) if field.is_relation else _plain(getattr(obj, name))
    return result


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"before": {...}, "after": {...}} holding only the fields that changed."""
    changed = [k for k in after if before.get(k) != after[k]]
    return {"before": {k: before.get(k) for k in changed}, "after": {k: after[k] for k in changed}}


def full_clean_or_fail(obj: models.Model, exclude: list[str] | None = None) -> None:
    from django.core.exceptions import ValidationError

    try:
        obj.full_clean(exclude=exclude, validate_unique=True, validate_constraints=True)
    except ValidationError as exc:
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        first = next(iter(errors.values()))[0]
        raise ValidationFailed(first, field_errors=errors) from None
