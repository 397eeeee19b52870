"""Connector secrets encrypted at rest: Fernet (AES-128-CBC with HMAC-SHA256) from `cryptography`.

Keys come from CONNECTOR_SECRET_KEYS (the environment, newest first); MultiFernet decrypts with any
of them and encrypts with the first, so rotating is: put a new key first, run
`manage.py connector_secrets_rotate`, then drop the old key. Secrets are decrypted only in memory,
for the connector that uses them; pages, the API, history and the audit trail never carry them.
"""

import base64
import hashlib
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from audit.choices import AuditAction
from audit.services import Actor, audit_event_record, state_change


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        # Development only (settings refuse an empty list in production): derived from SECRET_KEY.
        keys = (
            base64.urlsafe_b64encode(
                hashlib.sha256(f"connector-secrets:{settings.SECRET_KEY}".encode()).digest()
            ).decode(),
        )
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(f"CONNECTOR_SECRET_KEYS holds a key that is not a Fernet key: {exc}") from None


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.CONNECTOR_SECRET_KEYS))


def secrets_encrypt(secrets: dict[str, str]) -> str:
    if not secrets:
        return ""
    return fernet().encrypt(json.dumps(secrets, sort_keys=True).encode()).decode()


def secrets_decrypt(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        return json.loads(fernet().decrypt(token.encode()))
    except InvalidToken:
        raise ImproperlyConfigured(
            "A connector secret cannot be decrypted with CONNECTOR_SECRET_KEYS (was its key removed too early?)."
        ) from None


def settings_with_secrets(system) -> dict:
    """The settings a connector runs with: the plain ones and the decrypted secrets, in memory only."""
    return {**(system.connector_settings or {}), **secrets_decrypt(system.connector_secrets)}


@state_change
def secrets_rotate() -> int:
    """Encrypt every system's secrets again with the newest key; how many systems were rewritten.

    One transaction with the rows locked, so a system saved meanwhile is not overwritten with its old
    secrets; each system gets an audit event naming the rotation, never a value.
    """
    from ..models import System

    rotated = 0
    for system in (
        System.objects.select_for_update().exclude(connector_secrets="").only("pk", "name", "connector_secrets")
    ):
        token = fernet().rotate(system.connector_secrets.encode()).decode()
        System.objects.filter(pk=system.pk).update(connector_secrets=token)
        audit_event_record(
            actor=Actor.system(), action=AuditAction.SYSTEM_SECRETS_ROTATED, target=system, data={"rotated": True}
        )
        rotated += 1
    return rotated
