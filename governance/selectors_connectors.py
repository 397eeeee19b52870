"""Read paths for connectors: what a system's settings look like to people (never a secret), and the
grants whose provisioning or removal the connector gave up on, restricted to who answers for them."""

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet

from . import policies
from .choices import GrantStatus, IdentityStatus
from .connectors import CONNECTORS, connector_class
from .connectors.secrets import secrets_decrypt
from .models import Grant, System

FAILED = (GrantStatus.PROVISION_FAILED, GrantStatus.REVOKE_FAILED)


#
# Settings as people may see them
#
@dataclass(frozen=True)
class ShownSetting:
    """One connector setting on a page: its label and value, or, for a secret, only whether it is set."""

    name: str
    label: str
    value: Any
    secret: bool = False


def secrets_set(system: System) -> dict[str, bool]:
    """Which of the connector's secret settings hold a value (the values stay encrypted, in memory only).

    A token that no key opens still says "set": the secret exists, it just cannot be read now.
    """
    if system.connector not in CONNECTORS:
        return {}
    names = connector_class(system.connector).secret_fields
    if not system.connector_secrets:
        return dict.fromkeys(names, False)
    try:
        stored = secrets_decrypt(system.connector_secrets)
    except ImproperlyConfigured:
        return dict.fromkeys(names, True)
    return {name: bool(stored.get(name)) for name in names}


def plain_settings(system: System) -> dict[str, Any]:
    """The connector's settings without any secret: what pages and the API show back."""
    if system.connector not in CONNECTORS:
        return {}
    cls = connector_class(system.connector)
    known = cls.settings_form.base_fields
    return {
        name: value
        for name, value in (system.connector_settings or {}).items()
        if name in known and name not in cls.secret_fields
    }


def settings_shown(system: System) -> list[ShownSetting]:
    """The settings in the connector form's order: plain values as stored, secrets as set or not."""
    if system.connector not in CONNECTORS:
        return []
    cls = connector_class(system.connector)
    plain, secret_state = plain_settings(system), secrets_set(system)
    shown = []
    for name, field in cls.settings_form.base_fields.items():
        label = str(field.label or name)
        if name in cls.secret_fields:
            shown.append(ShownSetting(name, label, secret_state.get(name, False), secret=True))
        elif name in plain:
            value = plain[name]
            choices = dict(getattr(field, "choices", ()) or ())
            shown.append(ShownSetting(name, label, choices.get(value, value)))
    return shown


#
# Grants the connector gave up on
#
def grant_failure_list(*, user) -> QuerySet[Grant]:
    """Grants in provision_failed or revoke_failed that this user may retry: every one for admins, those
    of the systems they own for a system owner (the people `grant_retry_*` lets act), none for anyone else.
    """
    queryset = Grant.objects.filter(status__in=FAILED).select_related("identity", "entitlement__system")
    if policies.is_read_only(user):
        return queryset.none()
    if policies.is_admin(user):
        return queryset
    me = policies.identity_of(user)
    if me is None or me.status != IdentityStatus.ACTIVE:
        return queryset.none()
    return queryset.filter(entitlement__system__owner=me)


def systems_with_failures(*, user) -> QuerySet[System]:
    """The systems the failures page may be narrowed to: those with a failure this user sees."""
    return System.objects.filter(
        pk__in=grant_failure_list(user=user).order_by().values("entitlement__system_id")
    ).order_by("name")
