"""A real Celery worker process against a real Redis broker (private, so the test can stop it).

Pins the outbox's promise: a message recorded while the broker is down is not lost, and is
delivered exactly once when the broker returns.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from audit.handlers import EMAIL
from audit.models import OutboxMessage, OutboxStatus
from audit.outbox import outbox_enqueue
from audit.tasks import outbox_dispatch_task
from portal.celery import app

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.postgres, pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    def __init__(self, tmp: Path):
        self.port, self.tmp, self.proc = _free_port(), tmp, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(lambda: _port_open(self.port), "redis to start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        _wait_for(lambda: not _port_open(self.port), "redis to stop")


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)  # polling for another process, not waiting for time to pass
    raise AssertionError(f"timed out waiting for {what}")


def _reconnect() -> None:
    """Drop pooled broker connections so the next publish connects afresh (app.close() would deregister the app)."""
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def redis_broker(tmp_path, monkeypatch):
    redis = PrivateRedis(tmp_path)
    redis.start()
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", redis.url)
    _reconnect()  # drop pooled connections to the suite's default broker
    yield redis
    monkeypatch.undo()
    _reconnect()
    if redis.proc and redis.proc.poll() is None:
        redis.stop()


@pytest.fixture
def worker(redis_broker, tmp_path):
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": redis_broker.url,
        "PORTAL_TEST_EMAIL_DIR": str(tmp_path / "mail"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc, tmp_path / "mail"
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _status(pk: int) -> str:
    return OutboxMessage.objects.values_list("status", flat=True).get(pk=pk)


def test_message_recorded_during_broker_outage_is_delivered_once_when_it_returns(worker, redis_broker):
    proc, mail_dir = worker
    # given: the broker goes down
    redis_broker.stop()
    # when: a service records a notification; its on-commit wake-up cannot reach the broker
    message = outbox_enqueue(
        kind=EMAIL,
        payload={"to": ["o@example.org"], "subject": "Grant active", "body": "..."},
        idempotency_key="grant-1-active",
    )
    assert _status(message.pk) == OutboxStatus.PENDING
    # then: the broker returns, beat's next tick reaches the real worker, which delivers it
    redis_broker.start()
    _reconnect()
    outbox_dispatch_task.delay()
    try:
        _wait_for(lambda: _status(message.pk) == OutboxStatus.DELIVERED, "the worker to deliver the message", 30)
    except AssertionError:
        proc.terminate()
        raise AssertionError(proc.stdout.read()[-3000:]) from None
    # and a second tick (or a duplicate wake-up) sends nothing more
    outbox_dispatch_task.delay()
    outbox_dispatch_task.delay()
    time_limit = time.monotonic() + 3
    while time.monotonic() < time_limit and len(list(mail_dir.glob("*.log"))) < 2:
        time.sleep(0.1)
    sent = [p.read_text() for p in mail_dir.glob("*.log")]
    assert len(sent) == 1 and "Subject: Grant active" in sent[0]
    assert proc.poll() is None, proc.stdout.read()


def test_real_worker_runs_the_expiry_sweep(worker):
    from datetime import timedelta

    from django.utils import timezone

    from governance.choices import GrantStatus
    from governance.models import Grant
    from tests.factories.governance import GrantFactory

    proc, _ = worker
    # given: grants that expired while no worker ran
    due = [GrantFactory(kind="jit", expires_at=timezone.now() - timedelta(minutes=m)) for m in (1, 30, 90)]
    # when: beat's tick reaches the worker through the broker
    _reconnect()
    app.send_task("jit.tasks.grants_expire_due_task")  # as beat sends it: by name
    # then
    try:
        _wait_for(
            lambda: Grant.objects.filter(pk__in=[g.pk for g in due], status=GrantStatus.REVOKING).count() == 3,
            "the worker to sweep",
            30,
        )
    except AssertionError:
        proc.terminate()
        raise AssertionError(proc.stdout.read()[-3000:]) from None


def test_real_worker_imports_a_big_upload(worker, make_user):
    from governance.models import Identity, ImportJob
    from governance.services.import_jobs import import_job_submit

    proc, _ = worker
    admin = make_user("importer", roles=("admin",))
    rows = "\n".join(f"p-{n},Person {n},human" for n in range(200))
    # when: the page queues a file (the on-commit wake-up goes through the real broker)
    _reconnect()
    job = import_job_submit(
        actor=admin,
        entity="identities",
        fmt="csv",
        content=f"external_id,name,kind\n{rows}\n".encode(),
        file_name="people.csv",
        dry_run=False,
    )
    # then: the worker imports every row
    try:
        _wait_for(lambda: ImportJob.objects.get(pk=job.pk).done, "the worker to import", 60)
    except AssertionError:
        proc.terminate()
        raise AssertionError(proc.stdout.read()[-3000:]) from None
    assert ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.SUCCEEDED
    assert Identity.objects.filter(external_id__startswith="p-").count() == 200
