"""Testing a system's connection: the connector tries its target and says plainly what works.

The target is called outside any database transaction (a slow or unreachable target must hold no
row lock and no connection in a transaction); only the audit event is written afterwards, in a short
transaction of its own. The event names the checks and whether each passed, never a detail a
target sent back or a setting's value.
"""

from typing import Any

from audit.choices import AuditAction
from audit.services import ActorLike, audit_event_record, state_change

from .. import policies
from ..choices import LifecycleStatus
from ..connectors import BaseConnector, Check, connector_class, connector_for, connector_settings_clean
from ..connectors.secrets import settings_with_secrets
from ..errors import InvalidTransition
from ..models import System
from .common import check

DETAIL_MAX = 500


def system_test_connection(
    *, system_id: int, actor: ActorLike, connector: str | None = None, settings: dict[str, Any] | None = None
) -> list[Check]:
    """Run the system's connector's connection test and record who ran it and what passed.

    The system's owner and admins may test. With `connector` / `settings` (admins only, as for
    changing them) the test runs with those settings over the saved ones, unsaved: a blank secret
    keeps the saved one, as saving would. Invalid settings raise ValidationFailed before any call.
    A connector that raises instead of answering counts as one failed check, said in words.
    """
    system = System.objects.select_related("owner").get(pk=system_id)
    check(actor, policies.can_edit_system, system, "Only the system's owner or an admin may test its connection.")
    if system.status != LifecycleStatus.ACTIVE:
        raise InvalidTransition(f"{system} is retired: it has no connection to test.")
    unsaved = connector is not None or settings is not None
    if unsaved:
        check(actor, lambda user, _s: policies.is_admin(user), system, "Only admins try out connector settings.")
        instance = _unsaved_connector(system, connector or system.connector, settings or {})
    else:
        instance = connector_for(system)
    checks = _redacted(_run(instance), instance)
    _connection_tested(system_id=system.pk, actor=actor, connector=instance.name, checks=checks, unsaved=unsaved)
    return checks


def _unsaved_connector(system: System, name: str, submitted: dict[str, Any]) -> BaseConnector:
    """The connector `name` with submitted settings over the saved ones (none if the connector changes)."""
    kept = settings_with_secrets(system) if name == system.connector else {}
    plain, secrets = connector_settings_clean(name, submitted, current=kept)
    return connector_class(name)({**plain, **secrets}, system)


def _run(connector: BaseConnector) -> list[Check]:
    try:
        checks = list(connector.test_connection())
    except Exception as exc:  # a connector's bug or an unexpected answer: said, not a server error
        return [Check("Connection test", False, f"The test stopped with an error: {type(exc).__name__}: {exc}")]
    return checks or [Check("Connection test", False, "The connector reported nothing.")]


def _redacted(checks: list[Check], connector: BaseConnector) -> list[Check]:
    """Details as people may read them: never a secret, even one a target or library echoed back."""
    secrets = [str(connector.settings.get(name)) for name in connector.secret_fields if connector.settings.get(name)]
    shown = []
    for item in checks:
        detail = str(item.detail or "")
        for secret in secrets:
            detail = detail.replace(secret, "•••")
        shown.append(Check(str(item.name), bool(item.ok), detail[:DETAIL_MAX]))
    return shown


@state_change
def _connection_tested(*, system_id: int, actor: ActorLike, connector: str, checks: list[Check], unsaved: bool) -> None:
    system = System.objects.get(pk=system_id)
    audit_event_record(
        actor=actor,
        action=AuditAction.SYSTEM_CONNECTION_TESTED,
        target=system,
        data={
            "connector": connector,
            "ok": all(item.ok for item in checks),
            "checks": [{"name": item.name, "ok": item.ok} for item in checks],
            **({"unsaved_settings": True} if unsaved else {}),
        },
    )
