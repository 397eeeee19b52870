"""A system whose target keeps failing is left alone for a while: the rest of a batch is not sent to it,
its messages back off at once, and after the pause one call tries again (issue 15's noted gap)."""

from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.utils import timezone

from audit.models import OutboxMessage, OutboxStatus
from audit.outbox import outbox_dispatch
from governance.choices import GrantStatus
from governance.connectors import CONNECTORS, BaseConnector, Outcome, PermanentError, Result
from governance.models import Grant
from governance.services.grants import REVOKE, grants_revoke_many
from tests.factories.governance import EntitlementFactory, GrantFactory, SystemFactory

pytestmark = pytest.mark.django_db

calls: list[int] = []


class DownConnector(BaseConnector):
    """The target refuses connections (or, with `up`, works again)."""

    up = False

    def revoke(self, grant) -> Result:
        calls.append(grant.pk)
        if not DownConnector.up:
            raise ConnectionRefusedError("connection refused")
        return Result(Outcome.CONFIRMED, detail="removed")


class SideBySideDownConnector(DownConnector):
    concurrent_calls = True


class RefusingConnector(BaseConnector):
    """The target answers, and says no for good: no outage."""

    def revoke(self, grant) -> Result:
        calls.append(grant.pk)
        raise PermanentError("role does not exist")


@pytest.fixture(autouse=True)
def fresh(settings):
    settings.CONNECTOR_CIRCUIT_TRIP_AFTER = 3
    settings.CONNECTOR_CIRCUIT_OPEN_SECONDS = 60
    settings.OUTBOX_MAX_ATTEMPTS = 10
    calls.clear()
    DownConnector.up = False
    cache.clear()
    yield
    cache.clear()


def revoking(monkeypatch, connector, count: int, system=None) -> list[Grant]:
    monkeypatch.setitem(CONNECTORS, "manual", f"{__name__}.{connector.__name__}")
    system = system or SystemFactory()
    grants = [GrantFactory(entitlement=EntitlementFactory(system=system)) for _ in range(count)]
    grants_revoke_many(grant_ids=[g.pk for g in grants], actor=None, reason="left", end_reason="revoked")
    return grants


def waiting() -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(kind=REVOKE, status=OutboxStatus.PENDING))


@pytest.mark.parametrize("connector", [DownConnector, SideBySideDownConnector])
def test_a_dead_target_is_called_a_few_times_then_left_alone_for_the_rest_of_the_batch(monkeypatch, connector):
    grants = revoking(monkeypatch, connector, 12)

    outbox_dispatch()

    # three failures in a row trip it (a few more may already be on their way side by side)
    assert 3 <= len(calls) <= 3 + 3
    assert len(waiting()) == 12  # every one backs off, to be tried again
    skipped = [m for m in waiting() if "not called" in m.last_error]
    assert len(skipped) == 12 - len(calls)
    assert all(Grant.objects.get(pk=g.pk).status == GrantStatus.REVOKING for g in grants)


def test_after_the_pause_the_target_is_tried_again_and_one_success_closes_the_circuit(monkeypatch):
    grants = revoking(monkeypatch, DownConnector, 6)
    outbox_dispatch()
    tried = len(calls)

    # still within the pause: due messages are not sent to it
    with time_machine.travel(timezone.now() + timedelta(seconds=50), tick=False):
        OutboxMessage.objects.filter(kind=REVOKE).update(next_attempt_at=timezone.now())
        outbox_dispatch()
        assert len(calls) == tried

    # after it, the target is back: the calls go through and the grants are confirmed removed
    DownConnector.up = True
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        OutboxMessage.objects.filter(kind=REVOKE).update(next_attempt_at=timezone.now())
        outbox_dispatch()
    assert len(calls) == tried + 6
    assert all(Grant.objects.get(pk=g.pk).status == GrantStatus.REVOKED for g in grants)


def test_a_target_that_answers_no_is_no_outage_and_every_grant_is_asked(monkeypatch):
    revoking(monkeypatch, RefusingConnector, 6)

    outbox_dispatch()

    assert len(calls) == 6
    assert OutboxMessage.objects.filter(kind=REVOKE, status=OutboxStatus.DEAD).count() == 6


def test_one_systems_outage_does_not_stop_calls_to_another(monkeypatch):
    revoking(monkeypatch, DownConnector, 6)
    outbox_dispatch()
    tried = len(calls)

    DownConnector.up = True  # a second system of the same kind, reachable
    healthy = revoking(monkeypatch, DownConnector, 2)
    outbox_dispatch()

    assert len(calls) == tried + 2
    assert all(Grant.objects.get(pk=g.pk).status == GrantStatus.REVOKED for g in healthy)
