"""Outbox handlers that call connectors; they run in the dispatcher, never in the deciding transaction.

The dispatcher calls them with no transaction open (audit.outbox): the grant is read, the target
called for as long as the connector's timeout allows, and the confirmation recorded by a service in
a short transaction of its own.
"""

from audit.outbox import outbox_handler
from audit.services import Actor

from .choices import GrantStatus
from .connectors import ConnectorError, Outcome, Result, RetriableError, connector_for
from .models import Grant
from .services.certification import LAUNCH, campaign_launch
from .services.grants import (
    EXTEND,
    PROVISION,
    REVOKE,
    grant_confirm_provisioned,
    grant_confirm_revoked,
    grant_provision_failed,
    grant_revoke_failed,
)


def _grant(payload) -> Grant:
    return Grant.objects.select_related("entitlement__system__owner__user", "identity").get(pk=payload["grant_id"])


def _provision_gave_up(payload, error: str) -> None:
    grant_provision_failed(grant_id=payload["grant_id"], actor=Actor.system(), error=error)


def _revoke_gave_up(payload, error: str) -> None:
    grant_revoke_failed(grant_id=payload["grant_id"], actor=Actor.system(), error=error)


def _call(grant: Grant, action: str) -> Result:
    """Ask the system's connector; its errors name the connector and the system, for the alert."""
    system = grant.entitlement.system
    where = f"{system.connector} connector of {system.name}"
    try:
        return Result.of(getattr(connector_for(system), action)(grant))
    except ConnectorError as exc:
        raise type(exc)(f"{where}: {exc}") from exc
    except Exception as exc:
        raise RetriableError(f"{where}: {type(exc).__name__}: {exc}") from exc


# A failed state still accepts delivery: an admin retrying the dead message finishes the work.
@outbox_handler(PROVISION, on_dead=_provision_gave_up)
def provision(payload, idempotency_key) -> None:
    grant = _grant(payload)
    if grant.status not in (GrantStatus.PENDING_PROVISION, GrantStatus.PROVISION_FAILED):
        return
    result = _call(grant, "provision")
    if result.outcome is Outcome.CONFIRMED:
        grant_confirm_provisioned(
            grant_id=grant.pk, actor=Actor.system(), reference=result.reference, confirmation=result.detail
        )


@outbox_handler(REVOKE, on_dead=_revoke_gave_up)
def revoke(payload, idempotency_key) -> None:
    grant = _grant(payload)
    if grant.status not in (GrantStatus.REVOKING, GrantStatus.REVOKE_FAILED):
        return
    result = _call(grant, "revoke")
    if result.outcome is Outcome.CONFIRMED:
        grant_confirm_revoked(grant_id=grant.pk, actor=Actor.system(), confirmation=result.detail)


@outbox_handler(EXTEND)
def extend(payload, idempotency_key) -> None:
    """A renewal moved the grant's end: the target's own limit moves with it."""
    grant = _grant(payload)
    if grant.status == GrantStatus.ACTIVE:
        _call(grant, "extend")


@outbox_handler(LAUNCH)
def launch_campaign(payload, idempotency_key) -> None:
    """A big campaign launched by a worker: one INSERT ... SELECT, off the admin's request."""
    campaign_launch(campaign_id=payload["campaign_id"], actor=Actor.system())
