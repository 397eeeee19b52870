"""Connectors put grants into real systems, take them out again, and say what a system actually grants.

A connector answers `provision(grant)` / `revoke(grant)` with CONFIRMED (the target did it) or
PENDING (a person or the target's signed callback confirms later), or a `Result` carrying one of
them with the target's reference and what it was seen to do (kept on the audit event), or raises:
- `RetriableError` (timeouts, 5xx, a refused connection): the outbox tries again with backoff;
- `PermanentError` (401/403, bad configuration, a role that does not exist): fails at once, no retry
  storm, with an alert naming the connector.
Any other exception counts as retriable. Calls always arrive through the outbox dispatcher, outside
any database transaction (audit.outbox), never inside the transaction that decided them.

`holdings()` lists what the target grants right now (for reconciliation); None means the connector
cannot tell (manual). `remove_holding()` removes access found there that no grant governs. `test_connection()` says plainly what works and what does not.

Each connector declares its settings as a Django form (`settings_form`): settings are validated by it
when the System is saved. Fields named in `secret_fields` are kept encrypted (`connectors.secrets`)
and never shown back.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from django import forms
from django.utils.module_loading import import_string

from audit.outbox import PermanentFailure

from ..errors import ValidationFailed


class Outcome(Enum):
    CONFIRMED = "confirmed"
    PENDING = "pending"


@dataclass(frozen=True)
class Result:
    """What a connector call came to, with the target's reference and what it was seen to do (for the trail)."""

    outcome: Outcome
    reference: str = ""
    detail: str = ""

    @classmethod
    def of(cls, answer: "Result | Outcome") -> "Result":
        return answer if isinstance(answer, Result) else cls(answer)


class ConnectorError(Exception):
    """The target did not do what was asked; the message says why, for the people who fix it."""


class RetriableError(ConnectorError):
    """Worth another try later: the target is down, slow or overloaded."""


class PermanentError(ConnectorError, PermanentFailure):
    """Trying again will not help until a person fixes something (credentials, configuration, a missing role)."""


@dataclass(frozen=True, order=True)
class Holding:
    """One piece of access as the target sees it: `account` holds `target_name` (a role, a group)."""

    account: str
    target_name: str


@dataclass(frozen=True)
class Check:
    """One line of a connection test: what was tried, whether it worked, and what was seen."""

    name: str
    ok: bool
    detail: str = ""


ACCOUNT_ATTRIBUTES = [
    ("external_id", "External id"),
    ("login", "Login (username)"),
    ("email", "Email"),
    ("name", "Name"),
]


def connector_key(grant_id: int, ask: str, attempt: object = None) -> str:
    """The idempotency key of one ask of a grant's connector: `grant:<id>:<ask>[:<attempt>]`.

    The one place its shape is written. The outbox keeps one message per key (enqueuing a key again is
    a no-op, against rows already queued under today's keys) and the webhook connector sends it as the
    target's Idempotency-Key, so the shape must never change. `ask` is the outbox kind of a single ask
    (`connector.revoke`) or what a sweep asked (`expired`, `revoke:<end reason>`); `attempt` tells asks
    of one grant apart: the count of its history rows when asked (one per change, so the same on every
    retry of a job and new for the next), a bulk revocation's own token, or None for an ask made once.
    """
    return f"{CONNECTOR_KEY_PREFIX}{grant_id}{connector_key_suffix(ask, attempt)}"


CONNECTOR_KEY_PREFIX = "grant:"


def connector_key_suffix(ask: str, attempt: object = None) -> str:
    """What follows the grant's id in `connector_key`: set-based writers join prefix, id and suffix in
    SQL (100,000 keys built and sent from Python cost the expiry sweep ~4% of its time)."""
    return f":{ask}" if attempt is None else f":{ask}:{attempt}"


class ConnectorSettingsForm(forms.Form):
    """What every connector that reaches a target needs: how an identity is named there."""

    account_attribute = forms.ChoiceField(
        label="Account name from",
        choices=ACCOUNT_ATTRIBUTES,
        initial="external_id",
        help_text="Which field of an identity is its account name on the target.",
    )


class NoSettingsForm(forms.Form):
    pass


class BaseConnector:
    name: ClassVar[str] = "base"
    settings_form: ClassVar[type[forms.Form]] = NoSettingsForm
    secret_fields: ClassVar[tuple[str, ...]] = ()
    # Calls of one dispatch batch may run side by side in threads: only a connector whose calls touch
    # no database and share no state (the webhook's signed POSTs) says so.
    concurrent_calls: ClassVar[bool] = False

    def __init__(self, settings: dict[str, Any], system=None):
        self.settings = settings
        self.system = system

    def provision(self, grant) -> "Outcome | Result":
        raise NotImplementedError

    def revoke(self, grant) -> "Outcome | Result":
        raise NotImplementedError

    def extend(self, grant) -> "Outcome | Result":
        """The grant's end moved (a renewal), its access unchanged: mirror it where the target keeps an end."""
        return Outcome.CONFIRMED

    def remove_holding(self, holding: Holding) -> "Outcome | Result":
        """Remove access found on the target that no grant governs (reconciliation's "revoke at the target")."""
        raise PermanentError(f"The {self.name} connector cannot remove access by itself; remove it by hand.")

    def holdings(self) -> set[Holding] | None:
        """What the target grants now, for reconciliation; None when the connector cannot tell."""
        return None

    def test_connection(self) -> list[Check]:
        return [Check("Settings", True, "Nothing to connect to: a person does the work.")]

    #
    # How portal objects are named on the target
    #
    def account_for(self, identity) -> str:
        """The identity's account name on the target, from the field the settings name."""
        attribute = self.settings.get("account_attribute") or "external_id"
        if attribute == "login":
            value = identity.user.username if identity.user_id else ""
        else:
            value = getattr(identity, attribute, "") or ""
        if not value:
            raise PermanentError(
                f"{identity.name} has no {dict(ACCOUNT_ATTRIBUTES)[attribute].lower()}, "
                f"which names its account on {self.system.name if self.system else 'the target'}."
            )
        return value

    @staticmethod
    def target_name_for(entitlement) -> str:
        """The entitlement's name on the target (a role, a group): its target name, else its name."""
        return entitlement.target_name or entitlement.name


CONNECTORS: dict[str, str] = {
    "manual": "governance.connectors.manual.ManualConnector",
    "webhook": "governance.connectors.webhook.WebhookConnector",
    "postgresql": "governance.connectors.postgresql.PostgresqlConnector",
}


def connector_class(name: str) -> type[BaseConnector]:
    return import_string(CONNECTORS[name])


def connector_for(system) -> BaseConnector:
    """The system's connector with its settings, secrets decrypted (in memory only)."""
    from .secrets import settings_with_secrets

    return connector_class(system.connector)(settings_with_secrets(system), system)


def connector_settings_clean(
    connector: str, submitted: dict[str, Any], *, current: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate settings with the connector's form; split them into plain settings and secrets.

    Submitted settings change the `current` ones (plain and decrypted secrets) one by one, so a
    secret not sent again keeps its value (pages never show a secret back); a setting that neither
    has takes its default. Errors name the setting they belong to.
    """
    if connector not in CONNECTORS:
        message = f"There is no connector named “{connector}”."
        raise ValidationFailed(message, field_errors={"connector": [message]}, code="bad_connector_settings")
    cls = connector_class(connector)
    data = {**(current or {}), **{key: value for key, value in submitted.items() if value is not None}}
    for field in cls.secret_fields:
        if not submitted.get(field) and (current or {}).get(field):
            data[field] = current[field]  # a blank password box keeps the secret
    for name, field in cls.settings_form.base_fields.items():
        if name not in data and field.initial is not None:
            data[name] = field.initial
    unknown = sorted(set(data) - set(cls.settings_form.base_fields))
    if unknown:
        message = f"Unknown connector settings for {connector}: {', '.join(unknown)}."
        raise ValidationFailed(message, field_errors={"connector_settings": [message]}, code="bad_connector_settings")
    form = cls.settings_form(data=data)
    if not form.is_valid():
        field_errors = {f"connector_settings.{name}": [str(e) for e in errors] for name, errors in form.errors.items()}
        name, errors = next(iter(form.errors.items()))
        label = cls.settings_form.base_fields[name].label if name in cls.settings_form.base_fields else name
        raise ValidationFailed(
            f"Connector setting “{label}”: {errors[0]}", field_errors=field_errors, code="bad_connector_settings"
        )
    cleaned = {key: _jsonable(value) for key, value in form.cleaned_data.items()}
    secrets = {key: cleaned.pop(key) for key in cls.secret_fields if key in cleaned}
    return cleaned, {key: value for key, value in secrets.items() if value}


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None) | list | dict) else str(value)
