import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, **env: str | None) -> subprocess.CompletedProcess:
    """manage.py in a fresh process, production settings unless told otherwise (None unsets a variable)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            k: v for k, v in {**clean, "DJANGO_SETTINGS_MODULE": "portal.settings.base", **env}.items() if v is not None
        },
    )


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = _run(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY="x" * 64 + "-a-long-random-production-secret",
        PORTAL_DATA_DIR=str(tmp_path),
        ALLOWED_HOSTS="portal.example.org",
        # The suite's PostgreSQL login is a superuser, which the deploy check rightly refuses (audit.W001).
        DATABASE_URL=None,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = _run("check", PORTAL_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.mark.parametrize(
    ("env", "engine"),
    [({}, "sqlite3"), ({"DATABASE_URL": "postgres://u@db.example:5432/portal"}, "postgresql")],
)
def test_database_comes_from_the_environment(env, engine, tmp_path):
    code = "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            "DJANGO_SETTINGS_MODULE": "portal.settings.dev",
            "PORTAL_DATA_DIR": str(tmp_path),
            **env,
        },
    )
    assert result.stdout.strip().endswith(engine), result.stderr


def test_celery_is_configured_for_idempotent_at_least_once_tasks(settings):
    from portal.celery import BEAT_SCHEDULE, app

    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    assert "audit.tasks.outbox_dispatch_task" in BEAT_SCHEDULE
    assert app.conf.beat_schedule is BEAT_SCHEDULE


def _celery_conf(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """The Celery app's configuration as a worker loads it, under the given environment."""
    code = (
        "import json, django; django.setup(); "
        "from portal.celery import app; from governance.tasks import import_job_run_task as imp; "
        "c = app.conf; "
        "print(json.dumps({'hard': c.task_time_limit, 'soft': c.task_soft_time_limit, "
        "'import_hard': imp.time_limit, 'import_soft': imp.soft_time_limit, "
        "'visibility': c.broker_transport_options.get('visibility_timeout')}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "IMPORT_TASK_"))},
            "DJANGO_SETTINGS_MODULE": "portal.settings.dev",
            "CELERY_BROKER_URL": "redis://x:6379/0",
            "PORTAL_DATA_DIR": str(tmp_path),
            **env,
        },
    )


def test_every_task_has_a_hard_time_limit_above_its_soft_one():
    from portal.celery import app

    assert app.conf.task_time_limit == 300
    assert 0 < app.conf.task_soft_time_limit < app.conf.task_time_limit


@pytest.mark.parametrize(
    "env",
    [{}, {"CELERY_TASK_TIME_LIMIT": "600", "IMPORT_TASK_TIME_LIMIT": "400"}, {"IMPORT_TASK_TIME_LIMIT": "3600"}],
    ids=["defaults", "long-default-limit", "long-import-limit"],
)
def test_time_limits_come_from_the_environment_and_the_broker_outwaits_the_longest(tmp_path, env):
    result = _celery_conf(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    conf = json.loads(result.stdout)
    assert conf["hard"] == int(env.get("CELERY_TASK_TIME_LIMIT", 300))
    assert conf["import_hard"] == int(env.get("IMPORT_TASK_TIME_LIMIT", 1150))
    assert 0 < conf["soft"] < conf["hard"] and 0 < conf["import_soft"] < conf["import_hard"]
    # a running task is never handed to a second worker: redelivery waits past the longest hard limit
    assert conf["visibility"] > max(conf["hard"], conf["import_hard"])


def test_a_soft_limit_not_below_the_hard_limit_is_refused(tmp_path):
    result = _celery_conf(tmp_path, CELERY_TASK_TIME_LIMIT="300", CELERY_TASK_SOFT_TIME_LIMIT="300")
    assert result.returncode != 0
    assert "CELERY_TASK_SOFT_TIME_LIMIT" in result.stderr


def test_smtp_connections_give_up_on_a_dead_mail_host():
    from django.core.mail import get_connection

    assert get_connection("django.core.mail.backends.smtp.EmailBackend").timeout == 10


def test_production_refuses_to_start_without_keys_for_connector_secrets(tmp_path):
    result = _run("check", SECRET_KEY="x" * 64, PORTAL_DATA_DIR=str(tmp_path), CONNECTOR_SECRET_KEYS=None)
    assert result.returncode != 0
    assert "CONNECTOR_SECRET_KEYS" in result.stderr


def test_manage_py_defaults_to_the_production_settings(tmp_path):
    code = "from django.conf import settings; print(settings.SETTINGS_MODULE, settings.DEBUG)"
    result = _run(
        "shell",
        "--verbosity=0",
        "-c",
        code,
        SECRET_KEY="x" * 64,
        PORTAL_DATA_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE=None,
    )
    assert result.stdout.split() == ["portal.settings.base", "False"], result.stderr
