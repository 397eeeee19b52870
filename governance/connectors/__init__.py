"""Connectors provision grants into systems and remove them again.

A connector answers `provision(grant)` / `revoke(grant)` with CONFIRMED (the target did it),
PENDING (a person or a callback will confirm later) or raises to be retried by the outbox.
Calls always arrive through the outbox, never inside the transaction that decided them.
"""

from enum import Enum

from django.utils.module_loading import import_string


class Outcome(Enum):
    CONFIRMED = "confirmed"
    PENDING = "pending"


class BaseConnector:
    name = "base"

    def __init__(self, settings: dict):
        self.settings = settings

    def provision(self, grant) -> Outcome:
        raise NotImplementedError

    def revoke(self, grant) -> Outcome:
        raise NotImplementedError


CONNECTORS = {"manual": "governance.connectors.manual.ManualConnector"}


def connector_for(system) -> BaseConnector:
    return import_string(CONNECTORS[system.connector])(system.connector_settings or {})
