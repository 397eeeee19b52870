from datetime import timedelta

import pytest
import time_machine
from celery.exceptions import SoftTimeLimitExceeded
from django.core import mail
from django.db import transaction
from django.utils import timezone

from audit.handlers import EMAIL
from audit.models import AuditEvent, OutboxMessage, OutboxStatus
from audit.outbox import outbox_dispatch, outbox_enqueue, outbox_handler, outbox_retry

pytestmark = pytest.mark.django_db

EMAIL_PAYLOAD = {"to": ["a@example.org"], "subject": "Approval needed", "body": "Request #1 awaits you."}

calls: list[str] = []


@outbox_handler("test.flaky")
def _always_fails(payload, key):
    calls.append(key)
    raise ConnectionError("target unreachable")


def test_rolled_back_transaction_leaves_no_message():
    with pytest.raises(RuntimeError), transaction.atomic():
        outbox_enqueue(kind=EMAIL, payload=EMAIL_PAYLOAD, idempotency_key="k1")
        raise RuntimeError("the state change failed")
    assert not OutboxMessage.objects.exists()


def test_same_idempotency_key_is_enqueued_once():
    outbox_enqueue(kind=EMAIL, payload=EMAIL_PAYLOAD, idempotency_key="k1")
    outbox_enqueue(kind=EMAIL, payload=EMAIL_PAYLOAD, idempotency_key="k1")
    assert OutboxMessage.objects.count() == 1


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="No outbox handler"):
        outbox_enqueue(kind="nope", payload={}, idempotency_key="k")


def test_dispatch_delivers_once():
    outbox_enqueue(kind=EMAIL, payload=EMAIL_PAYLOAD, idempotency_key="k1")
    assert outbox_dispatch().delivered == 1
    assert outbox_dispatch().delivered == 0
    assert len(mail.outbox) == 1 and mail.outbox[0].subject == "Approval needed"
    assert OutboxMessage.objects.get().status == OutboxStatus.DELIVERED


def test_failures_back_off_then_go_dead_and_can_be_retried(settings, admin_user):
    settings.OUTBOX_MAX_ATTEMPTS = 3
    calls.clear()
    message = outbox_enqueue(kind="test.flaky", payload={}, idempotency_key="flaky-1")
    # first failure: retried later, not now
    assert outbox_dispatch().failed == 1
    message.refresh_from_db()
    assert message.status == OutboxStatus.PENDING and message.attempts == 1
    assert message.next_attempt_at > timezone.now()
    assert outbox_dispatch().failed == 0  # not due yet
    # later attempts, moved through time
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        outbox_dispatch()
    with time_machine.travel(timezone.now() + timedelta(hours=4), tick=False):
        assert outbox_dispatch().dead == 1
    message.refresh_from_db()
    assert message.status == OutboxStatus.DEAD and "target unreachable" in message.last_error
    assert calls == ["flaky-1"] * 3
    assert AuditEvent.objects.filter(action="outbox.dead", target_id=str(message.pk)).count() == 1
    # an admin retries it
    outbox_retry(message_id=message.pk, actor=admin_user)
    message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboxStatus.PENDING, 0)
    assert AuditEvent.objects.filter(action="outbox.retried", actor_label=admin_user.username).exists()


def test_admin_retry_action(client, admin_user, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 1
    message = outbox_enqueue(kind="test.flaky", payload={}, idempotency_key="flaky-2")
    outbox_dispatch()
    client.force_login(admin_user)
    response = client.post(
        "/admin/audit/outboxmessage/", {"action": "retry", "_selected_action": [message.pk]}, follow=True
    )
    assert b"1 message(s) queued again" in response.content
    message.refresh_from_db()
    assert message.status == OutboxStatus.PENDING


stalls: list[str] = []


@outbox_handler("test.out_of_time")
def _runs_out_of_time(payload, key):
    stalls.append(key)
    if len(stalls) == 1:
        raise SoftTimeLimitExceeded()


def test_a_task_out_of_time_stops_at_once_and_the_attempt_still_counts(settings):
    stalls.clear()
    message = outbox_enqueue(kind="test.out_of_time", payload={}, idempotency_key="slow-1")
    # the worker's soft time limit fires mid-delivery: the task ends instead of carrying on
    with pytest.raises(SoftTimeLimitExceeded):
        outbox_dispatch()
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error) == (OutboxStatus.PENDING, 1, "")
    # no other worker takes it while the claim lasts; after it, it is delivered again
    assert outbox_dispatch().delivered == 0
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.OUTBOX_CLAIM_SECONDS + 1), tick=False):
        assert outbox_dispatch().delivered == 1
    message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboxStatus.DELIVERED, 2)
    assert stalls == ["slow-1", "slow-1"]


def test_a_message_whose_last_attempt_was_lost_goes_dead_without_another_try(settings):
    settings.OUTBOX_MAX_ATTEMPTS = 2
    calls.clear()
    # given: the last allowed attempt was counted, then its worker died before settling it
    message = outbox_enqueue(kind="test.flaky", payload={}, idempotency_key="lost-1")
    OutboxMessage.objects.filter(pk=message.pk).update(attempts=2)
    # when
    result = outbox_dispatch()
    # then
    message.refresh_from_db()
    assert result.dead == 1 and message.status == OutboxStatus.DEAD and calls == []
    assert "stopped before it finished" in message.last_error
    assert AuditEvent.objects.filter(action="outbox.dead", target_id=str(message.pk)).count() == 1
