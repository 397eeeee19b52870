import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
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
        env={**clean, "DJANGO_SETTINGS_MODULE": "portal.settings.base", **env},
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


def test_broker_visibility_timeout_exceeds_the_longest_task(monkeypatch, tmp_path):
    code = (
        "from django.conf import settings as s; "
        "print(s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'] > s.CELERY_TASK_HARD_TIME_LIMIT)"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings.dev",
            "CELERY_BROKER_URL": "redis://x:6379/0",
            "PORTAL_DATA_DIR": str(tmp_path),
        },
    )
    assert result.stdout.strip() == "True", result.stderr
