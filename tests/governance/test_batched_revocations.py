"""Revocations go through the outbox in batches: the grants read at once, the targets called side by
side where the connector allows it, the confirmations recorded set-based with the same rules as one
`grant_confirm_revoked` each; and the sweep asks again for many failed removals in one statement."""

import threading
from datetime import timedelta

import pytest
import time_machine
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.handlers import EMAIL
from audit.models import AuditEvent, OutboxMessage, OutboxStatus
from audit.outbox import outbox_dispatch, outbox_enqueue, outbox_handler
from governance.choices import GrantStatus
from governance.connectors import CONNECTORS, BaseConnector, Outcome, PermanentError, Result
from governance.connectors.webhook import grant_idempotency_key
from governance.models import Grant, Notification
from governance.services.grants import REVOKE, grant_revoke, grants_retry_failed_revocations, grants_revoke_many
from tests.factories.governance import EntitlementFactory, GrantFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db

threads_seen: set[str] = set()


class SideBySideConnector(BaseConnector):
    """Like the webhook connector: calls touch no database, so a batch's calls run in threads."""

    concurrent_calls = True

    def revoke(self, grant) -> Result:
        threads_seen.add(threading.current_thread().name)
        return Result(Outcome.CONFIRMED, detail=f"target removed {grant.pk} ({grant_idempotency_key(grant, 'revoke')})")


class PickyConnector(BaseConnector):
    """Refuses one account for good, fails another for now, confirms the rest."""

    def revoke(self, grant) -> Result:
        if grant.identity.name == "refused":
            raise PermanentError("role does not exist")
        if grant.identity.name == "flaky":
            raise ConnectionRefusedError("connection refused")
        return Result(Outcome.CONFIRMED, detail="REVOKE done")


class RestoringConnector(BaseConnector):
    """Confirms, while meanwhile someone makes the grant active again: the confirmation is refused."""

    def revoke(self, grant) -> Result:
        Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.ACTIVE)
        return Result(Outcome.CONFIRMED, detail="REVOKE done")


@pytest.fixture
def use(monkeypatch):
    def use(cls):
        monkeypatch.setitem(CONNECTORS, "manual", f"{__name__}.{cls.__name__}")

    return use


def _revoking(count: int, *, system=None, end_reason: str = "revoked", **identity) -> list[Grant]:
    system = system or SystemFactory()
    grants = [GrantFactory(entitlement=EntitlementFactory(system=system), **identity) for _ in range(count)]
    grants_revoke_many(grant_ids=[g.pk for g in grants], actor=None, reason="left", end_reason=end_reason)
    return grants


def _dispatch_queries() -> int:
    with CaptureQueriesContext(connection) as queries:
        outbox_dispatch()
    return len(queries)


def test_a_batch_of_revocations_is_confirmed_set_based_with_one_event_each_in_constant_queries(use):
    use(SideBySideConnector)
    threads_seen.clear()
    few = _revoking(3)
    few_queries = _dispatch_queries()
    many = _revoking(30)
    many_queries = _dispatch_queries()
    assert many_queries == few_queries  # no query per message: claim, read, settle, record
    for grant in few + many:
        grant.refresh_from_db()
        assert grant.status == GrantStatus.REVOKED and grant.revoked_at is not None and grant.last_error == ""
    events = AuditEvent.objects.filter(action="grant.revoked")
    assert events.count() == 33 and {e.target_id for e in events} == {str(g.pk) for g in few + many}
    one = events.get(target_id=str(many[0].pk))
    assert one.data["end_reason"] == "revoked" and one.actor_type == "system"
    # the key the target saw is the outbox's own for that ask
    message = OutboxMessage.objects.get(kind=REVOKE, payload__grant_id=many[0].pk)
    assert message.status == OutboxStatus.DELIVERED
    assert one.data["confirmation"] == f"target removed {many[0].pk} (grant:{many[0].pk}:connector.revoke:2)"
    assert any(name.startswith("revoke") for name in threads_seen)  # side by side, off the main thread
    assert Grant.history.filter(id=many[0].pk, status=GrantStatus.REVOKED).count() == 1


def test_an_expired_grant_ends_expired_and_its_holder_is_told_once(use):
    use(SideBySideConnector)
    person = PersonFactory(name="Hana Holder")
    (grant,) = _revoking(1, identity=person, end_reason="expired")
    outbox_dispatch()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.EXPIRED
    assert AuditEvent.objects.filter(action="grant.expired", target_id=str(grant.pk)).count() == 1
    notice = Notification.objects.get(recipient=person.user, kind="grant.expired")
    assert notice.key == f"grant:{grant.pk}:ended" and notice.subject.endswith("for Hana Holder expired")
    assert OutboxMessage.objects.filter(kind=EMAIL, idempotency_key=f"grant:{grant.pk}:ended:user:{person.user.pk}")
    # a repeated delivery (the message handed out again) changes nothing and tells nobody twice
    OutboxMessage.objects.filter(kind=REVOKE).update(status=OutboxStatus.PENDING, attempts=0)
    outbox_dispatch()
    assert Notification.objects.filter(recipient=person.user, kind="grant.expired").count() == 1
    assert AuditEvent.objects.filter(action="grant.expired", target_id=str(grant.pk)).count() == 1


def test_released_access_is_confirmed_without_telling_the_holder(use):
    use(SideBySideConnector)
    person = PersonFactory()
    (grant,) = _revoking(1, identity=person, end_reason="released")
    outbox_dispatch()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    assert not Notification.objects.filter(recipient=person.user).exists()


def test_in_one_batch_a_refusal_fails_at_once_an_error_is_retried_and_neither_is_shown_revoked(use, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 5
    use(PickyConnector)
    system = SystemFactory()
    (refused,) = _revoking(1, system=system, identity=PersonFactory(name="refused"))
    (flaky,) = _revoking(1, system=system, identity=PersonFactory(name="flaky"))
    fine = _revoking(3, system=system)
    result = outbox_dispatch()
    assert (result.failed, result.dead) == (1, 1)
    delivered = OutboxMessage.objects.filter(kind=REVOKE, status=OutboxStatus.DELIVERED)
    assert delivered.count() == 3 and result.delivered >= 3  # and the alerts' emails, enqueued meanwhile
    refused.refresh_from_db()
    flaky.refresh_from_db()
    assert refused.status == GrantStatus.REVOKE_FAILED and "role does not exist" in refused.last_error
    assert flaky.status == GrantStatus.REVOKING and flaky.revoked_at is None
    waiting = OutboxMessage.objects.get(kind=REVOKE, payload__grant_id=flaky.pk)
    assert waiting.status == OutboxStatus.PENDING and waiting.next_attempt_at > timezone.now()
    assert "manual connector of" in waiting.last_error and "connection refused" in waiting.last_error
    assert all(Grant.objects.get(pk=g.pk).status == GrantStatus.REVOKED for g in fine)
    assert not AuditEvent.objects.filter(action="grant.revoked", target_id__in=[str(refused.pk), str(flaky.pk)])


def test_a_confirmation_the_grant_no_longer_accepts_is_refused_and_tried_again(use):
    use(RestoringConnector)
    (grant,) = _revoking(1)
    assert outbox_dispatch().failed == 1
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    message = OutboxMessage.objects.get(kind=REVOKE)
    assert message.status == OutboxStatus.PENDING and "nothing to confirm" in message.last_error
    assert not AuditEvent.objects.filter(action="grant.revoked", target_id=str(grant.pk)).exists()


slow: list[str] = []


@outbox_handler("test.batch_out_of_time")
def _second_runs_out_of_time(payload, key):
    slow.append(key)
    if key == "b":
        raise SoftTimeLimitExceeded()


def test_out_of_time_mid_batch_records_what_was_done_and_hands_back_what_was_not_reached():
    slow.clear()
    for key in "abc":
        outbox_enqueue(kind="test.batch_out_of_time", payload={}, idempotency_key=key)
    with pytest.raises(SoftTimeLimitExceeded):
        outbox_dispatch()
    state = {m.idempotency_key: m for m in OutboxMessage.objects.filter(kind="test.batch_out_of_time")}
    assert state["a"].status == OutboxStatus.DELIVERED
    assert (state["b"].status, state["b"].attempts) == (OutboxStatus.PENDING, 1)  # in flight: keeps its claim
    assert state["b"].next_attempt_at > timezone.now() + timedelta(minutes=1)
    assert (state["c"].status, state["c"].attempts) == (OutboxStatus.PENDING, 0)  # never called: due again now
    assert slow == ["a", "b"]
    assert outbox_dispatch().delivered == 1 and slow == ["a", "b", "c"]


#
# The sweep that asks again for failed removals
#
def _failed(count: int, *, minutes_ago: int) -> list[Grant]:
    grants = _revoking(count)
    Grant.objects.filter(pk__in=[g.pk for g in grants]).update(
        status=GrantStatus.REVOKE_FAILED, updated_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    OutboxMessage.objects.filter(kind=REVOKE).update(status=OutboxStatus.DEAD)
    return grants


def _retry_queries() -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        retried = grants_retry_failed_revocations()
    return retried, len(queries)


def test_many_failed_removals_are_asked_again_at_once_in_constant_queries(settings):
    settings.REVOKE_FAILED_RETRY_MINUTES = 30
    few = _failed(2, minutes_ago=31)
    few_retried, few_queries = _retry_queries()
    OutboxMessage.objects.all().delete()
    many = _failed(25, minutes_ago=31)
    many_retried, many_queries = _retry_queries()
    assert (few_retried, many_retried) == (2, 25)
    assert many_queries == few_queries
    for grant in many:
        grant.refresh_from_db()
        assert grant.status == GrantStatus.REVOKING
        # the key of the new ask is what grant_retry_revoke would give it, and what the webhook sends
        key = f"grant:{grant.pk}:{REVOKE}:{Grant.history.filter(id=grant.pk).count()}"
        message = OutboxMessage.objects.get(idempotency_key=key)
        assert message.status == OutboxStatus.PENDING and message.payload == {"grant_id": grant.pk}
        assert key == grant_idempotency_key(grant, "revoke")
        event = AuditEvent.objects.get(action="grant.revoke_requested", target_id=str(grant.pk), data__retry=True)
        assert event.actor_type == "system"
    assert len(few) == 2


def test_only_removals_that_failed_long_enough_ago_are_asked_again(settings):
    settings.REVOKE_FAILED_RETRY_MINUTES = 30
    (old,) = _failed(1, minutes_ago=45)
    (recent,) = _failed(1, minutes_ago=5)
    assert grants_retry_failed_revocations() == 1
    assert Grant.objects.get(pk=old.pk).status == GrantStatus.REVOKING
    assert Grant.objects.get(pk=recent.pk).status == GrantStatus.REVOKE_FAILED
    assert grants_retry_failed_revocations() == 0  # asked once: not again until it fails again
    with time_machine.travel(timezone.now() + timedelta(minutes=26), tick=False):
        assert grants_retry_failed_revocations() == 1
    assert Grant.objects.get(pk=recent.pk).status == GrantStatus.REVOKING


def test_a_grant_confirmed_by_hand_meanwhile_is_not_asked_again(settings):
    settings.REVOKE_FAILED_RETRY_MINUTES = 30
    (grant,) = _failed(1, minutes_ago=45)
    Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.REVOKED)
    assert grants_retry_failed_revocations() == 0
    grant_revoke(grant_id=grant.pk, actor=None, reason="again")  # a no-op on ended access
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REVOKED
