"""Outbox handlers that call connectors; they run in the dispatcher, never in the deciding transaction."""

from audit.outbox import outbox_handler
from audit.services import Actor

from .choices import GrantStatus
from .connectors import Outcome, connector_for
from .models import Grant
from .services.grants import PROVISION, REVOKE, grant_confirm_provisioned, grant_confirm_revoked


def _grant(payload) -> Grant:
    return Grant.objects.select_related("entitlement__system__owner__user", "identity").get(pk=payload["grant_id"])


@outbox_handler(PROVISION)
def provision(payload, idempotency_key) -> None:
    grant = _grant(payload)
    if grant.status != GrantStatus.PENDING_PROVISION:
        return
    if connector_for(grant.entitlement.system).provision(grant) is Outcome.CONFIRMED:
        grant_confirm_provisioned(grant_id=grant.pk, actor=Actor.system())


@outbox_handler(REVOKE)
def revoke(payload, idempotency_key) -> None:
    grant = _grant(payload)
    if grant.status != GrantStatus.REVOKING:
        return
    if connector_for(grant.entitlement.system).revoke(grant) is Outcome.CONFIRMED:
        grant_confirm_revoked(grant_id=grant.pk, actor=Actor.system())
