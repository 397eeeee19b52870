"""Outbox handlers that call connectors; they run in the dispatcher, never in the deciding transaction.

The dispatcher calls them with no transaction open (audit.outbox): the grant is read, the target
called for as long as the connector's timeout allows, and the confirmation recorded by a service in
a short transaction of its own. Revocations go in batches: the grants read at once, the targets
called side by side where the connector allows it, and the confirmations recorded set-based in the
transaction that records the batch's outcomes.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

from celery.exceptions import SoftTimeLimitExceeded
from django.db import connections
from django.db.models import Count

from audit.outbox import outbox_batch_handler, outbox_handler
from audit.services import Actor

from .choices import GrantStatus
from .connectors import ConnectorError, Outcome, Result, RetriableError, connector_for
from .connectors.circuit import call_through_circuit
from .models import Grant, System
from .services.certification import LAUNCH, campaign_launch
from .services.grants import (
    EXTEND,
    PROVISION,
    REVOKE,
    grant_confirm_provisioned,
    grant_provision_failed,
    grant_revoke_failed,
    grants_confirm_revoked_many,
)

_RELATED = ("entitlement__system__owner__user", "identity__user")
CALL_THREADS = 4  # calls of one batch to a target that takes them side by side (the webhook connector)


def _grant(payload) -> Grant:
    return Grant.objects.select_related(*_RELATED).get(pk=payload["grant_id"])


def _provision_gave_up(payload, error: str) -> None:
    grant_provision_failed(grant_id=payload["grant_id"], actor=Actor.system(), error=error)


def _revoke_gave_up(payload, error: str) -> None:
    grant_revoke_failed(grant_id=payload["grant_id"], actor=Actor.system(), error=error)


def _call(grant: Grant, action: str) -> Result:
    """Ask the system's connector (unless its circuit is open); its errors name the connector and the system."""
    system = grant.entitlement.system
    try:
        connector = connector_for(system)
    except Exception as exc:
        raise _failure(system, exc) from exc
    answer = call_through_circuit(system, lambda: _answer(connector, grant, action))
    if isinstance(answer, Exception):
        raise answer
    return answer


def _failure(system, exc: Exception) -> ConnectorError:
    """The error as the alert tells it, naming the connector and the system; retriable unless the connector said not."""
    where = f"{system.connector} connector of {system.name}"
    if isinstance(exc, ConnectorError):
        failure = type(exc)(f"{where}: {exc}")
    else:
        failure = RetriableError(f"{where}: {type(exc).__name__}: {exc}")
    failure.__cause__ = exc
    return failure


def _answer(connector, grant: Grant, action: str) -> Result | ConnectorError:
    """One call of the connector, its failure returned rather than raised (batches collect them).

    In a worker thread of a batch it may open a database connection of its own only by mistake (the
    connectors that allow threads touch none): whatever it opened is closed again here.
    """
    try:
        return Result.of(getattr(connector, action)(grant))
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        return _failure(grant.entitlement.system, exc)
    finally:
        if threading.current_thread() is not threading.main_thread():
            for opened in connections.all(initialized_only=True):
                opened.close()


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


def _revocations_confirm(items: list[tuple[dict, Result | None]]) -> list[str]:
    """The batch's confirmed removals, applied set-based in the outbox's outcome transaction."""
    confirmations = {
        payload["grant_id"]: result.detail
        for payload, result in items
        if result is not None and result.outcome is Outcome.CONFIRMED
    }
    refused = grants_confirm_revoked_many(confirmations=confirmations)
    return [refused.get(payload["grant_id"], "") for payload, _ in items]


@outbox_batch_handler(REVOKE, settle=_revocations_confirm, on_dead=_revoke_gave_up)
def revoke(items: list[tuple[dict, str]]) -> list[Result | Exception | None]:
    """Ask the targets to remove a batch of grants; what each confirmed is applied by `_revocations_confirm`.

    The grants are read in one query, each system's connector made once, and the calls of a
    connector that allows it (webhook) made side by side in a few threads that touch no database.
    A grant no longer being removed needs no call (None).
    """
    ids = [payload["grant_id"] for payload, _ in items]
    grants = {
        grant.pk: grant for grant in Grant.objects.select_related("entitlement", "identity__user").filter(pk__in=ids)
    }
    # Each system once (with its owner, whom the manual connector asks), shared by its grants.
    systems = System.objects.select_related("owner__user").in_bulk({g.entitlement.system_id for g in grants.values()})
    for grant in grants.values():
        grant.entitlement.system = systems[grant.entitlement.system_id]
    # Counted here, not in the threads, for connectors that name a job by the grant's history.
    counts = dict(Grant.history.filter(id__in=ids).values("id").annotate(n=Count("*")).values_list("id", "n"))
    for pk, grant in grants.items():
        grant.history_count = counts.get(pk, 0)
    answers: list[Result | Exception | None] = [None] * len(items)
    calls: dict[int, list[tuple[int, Grant]]] = {}
    for position, pk in enumerate(ids):
        grant = grants.get(pk)
        if grant is None:
            answers[position] = Grant.DoesNotExist(f"Grant {pk} does not exist.")
        elif grant.status in (GrantStatus.REVOKING, GrantStatus.REVOKE_FAILED):
            calls.setdefault(grant.entitlement.system_id, []).append((position, grant))
    for work in calls.values():
        system = work[0][1].entitlement.system
        try:
            connector = connector_for(system)
        except Exception as exc:
            for position, _ in work:
                answers[position] = _failure(system, exc)
            continue

        def guarded(grant, system=system, connector=connector):
            # A system that keeps failing is not called for the rest of the batch (connectors.circuit).
            return call_through_circuit(system, lambda: _answer(connector, grant, "revoke"))

        if connector.concurrent_calls and len(work) > 1:
            with ThreadPoolExecutor(max_workers=min(CALL_THREADS, len(work)), thread_name_prefix="revoke") as pool:
                done = pool.map(guarded, [grant for _, grant in work])
                for (position, _), answer in zip(work, done, strict=True):
                    answers[position] = answer
        else:
            for position, grant in work:
                answers[position] = guarded(grant)
    return answers


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
