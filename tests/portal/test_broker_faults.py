"""A broker that refuses connections, or accepts them and never answers, never holds up a request.

The outbox is the record and beat polls it every few seconds; the on-commit wake-up only saves a
worker that wait, so it is sent at most once per transaction, from a thread of its own, with bounded
connect and socket times. The health checks give the broker a hard bound of about a second.

Times here are bounds measured with time.monotonic (a request that waited on the broker took 6 s
refused and forever silent), not benchmarks.
"""

import socket
import threading
import time

import pytest
from django.db import transaction
from django.urls import reverse

from audit import outbox
from audit.handlers import EMAIL
from audit.models import OutboxMessage
from audit.outbox import bounded_broker_connection, outbox_enqueue, wake_dispatcher
from jit.choices import RequestStatus
from jit.models import AccessRequest, Approval
from portal.celery import app
from tests.portal.test_celery_worker import redis_broker, worker  # noqa: F401  fixtures: a private Redis and a worker


class SilentBroker:
    """A TCP server that accepts connections and never answers: a hung broker, or a firewall eating replies."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        """Stop; closing what was accepted releases any client still waiting on it."""
        self.stopped.set()
        self.thread.join(2)
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture(params=["refusing", "silent"])
def broken_broker(request, monkeypatch):
    """The app's broker is a port that refuses connections, or a server that accepts and never answers."""
    if request.param == "silent":
        server = SilentBroker()
        port, stop = server.port, server.close
    else:
        # Bound but not listening: a connection to it is refused, and no other process can take the port.
        reserved = socket.socket()
        reserved.bind(("127.0.0.1", 0))
        port, stop = reserved.getsockname()[1], reserved.close
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{port}/0")
    _drop_pooled_connections()
    # A process that has used this kind of broker before: its client library is loaded (about a second,
    # once per process), which is not the broker's time and not what these tests bound.
    bounded_broker_connection(1).release()
    yield request.param
    monkeypatch.undo()
    _drop_pooled_connections()
    stop()


def _drop_pooled_connections() -> None:
    app._pool = None
    app.amqp._producer_pool = None


def _within(seconds: float, func):
    """Run func in a thread and give it `seconds`: a call hung on the broker fails the test instead of hanging it."""
    outcome = {}

    def run():
        try:
            outcome["value"] = func()
        finally:
            from django.db import connection

            connection.close()  # this thread's own connection

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    return outcome["value"], elapsed


@pytest.fixture
def warm_client(client, transactional_db):
    """A client whose process has served requests already: the first one loads every view (about 1 s)."""
    assert client.get(reverse("health_ready")).status_code == 200
    assert client.get(reverse("login")).status_code == 200
    return client


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the wake-up is sent on commit: the approval must really commit
def test_an_approval_answers_within_a_second_whatever_the_broker_does(warm_client, pending_request, broken_broker):
    access_request, approver = pending_request
    client = warm_client
    client.force_login(approver)
    outbox_before = OutboxMessage.objects.count()

    response, elapsed = _within(
        5,
        lambda: client.post(
            reverse("jit:approval_decide", args=[access_request.pk]),
            {"decision": "approve", "comment": "", "stage_position": 1},
            headers={"HX-Request": "true"},
        ),
    )

    assert response.status_code == 200, response.content[:500]
    assert elapsed < 1.0, f"the approval took {elapsed:.1f} s with the broker {broken_broker}"
    # The approval committed, and its side effects wait in the outbox for the next dispatch.
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.APPROVED
    assert Approval.objects.filter(request=access_request).count() == 1
    assert OutboxMessage.objects.count() > outbox_before


@pytest.mark.postgres
@pytest.mark.parametrize("url_name", ["health_ready", "health"])
def test_health_reports_the_broker_down_within_its_timeout(warm_client, broken_broker, url_name, settings):
    response, elapsed = _within(5, lambda: warm_client.get(reverse(url_name)))

    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {"ok": False}
    # The probe's timeout, and a second for the rest of the checks on a busy machine (it was 1.5 s in all,
    # which a loaded CI machine once missed by 9 ms); a hung broker without the timeout takes far longer.
    bound = settings.HEALTH_BROKER_TIMEOUT_SECONDS + 1
    assert elapsed < bound, f"{url_name} took {elapsed:.1f} s with the broker {broken_broker}"


def test_the_broker_check_says_why_to_staff(broken_broker):
    from portal.health import check_broker

    (ok, detail), _ = _within(5, check_broker)

    assert not ok and detail


def test_the_broker_check_passes_with_the_broker_up():
    from portal.health import check_broker

    assert check_broker() == (True, "memory")


@pytest.mark.django_db
def test_one_wake_up_per_transaction_however_many_messages_it_records(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        for n in range(3):
            outbox_enqueue(kind=EMAIL, payload={"to": ["a@example.org"]}, idempotency_key=f"mail-{n}")

    assert callbacks.count(wake_dispatcher) == 1


@pytest.mark.django_db
def test_a_wake_up_rolled_back_with_its_savepoint_is_asked_for_again(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        try:
            with transaction.atomic():
                outbox_enqueue(kind=EMAIL, payload={"to": ["a@example.org"]}, idempotency_key="mail-1")
                raise RuntimeError("the savepoint is rolled back")
        except RuntimeError:
            pass
        outbox_enqueue(kind=EMAIL, payload={"to": ["a@example.org"]}, idempotency_key="mail-2")

    assert callbacks.count(wake_dispatcher) == 1


def test_a_wake_up_never_waits_for_the_broker_and_wake_ups_meanwhile_are_one(monkeypatch):
    # given: a publish that hangs until released
    release, published = threading.Event(), []

    def hung_publish() -> None:
        published.append(time.monotonic())
        release.wait(5)

    monkeypatch.setattr(outbox, "_publish_wake", hung_publish)
    # when: a hundred commits ask for a wake-up while it hangs
    started = time.monotonic()
    for _ in range(100):
        wake_dispatcher()
    elapsed = time.monotonic() - started
    # then: none of them waited, and the wake-ups pending meanwhile are one
    assert elapsed < 0.2
    deadline = time.monotonic() + 5
    while not published and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the waker thread, not waiting for time to pass
    release.set()
    deadline = time.monotonic() + 5
    while outbox._waker.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 1 <= len(published) <= 2


def test_the_waker_publishes_a_dispatch(monkeypatch):
    sent = threading.Event()
    monkeypatch.setattr(outbox, "_publish_wake", sent.set)

    wake_dispatcher()

    assert sent.wait(5)


def test_beat_polls_the_outbox_so_a_lost_wake_up_loses_nothing():
    from portal.celery import BEAT_SCHEDULE

    assert BEAT_SCHEDULE["audit.tasks.outbox_dispatch_task"]["schedule"] <= 10


@pytest.mark.postgres
@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_the_wake_up_reaches_a_real_worker_through_a_real_broker(worker):  # noqa: F811
    from audit.models import OutboxStatus
    from tests.portal.test_celery_worker import _wait_for

    proc, _ = worker
    # when: a message commits (no beat runs here: only its wake-up can bring a worker to it)
    message = outbox_enqueue(
        kind=EMAIL, payload={"to": ["o@example.org"], "subject": "Hi", "body": "."}, idempotency_key="woken-1"
    )
    # then
    try:
        _wait_for(
            lambda: OutboxMessage.objects.get(pk=message.pk).status == OutboxStatus.DELIVERED,
            "the woken worker to deliver the message",
            30,
        )
    except AssertionError:
        proc.terminate()
        raise AssertionError(proc.stdout.read()[-3000:]) from None
