"""Suite-wide fixtures and the rules for tests that need real services.

Tests marked `postgres` skip on SQLite with a notice; REQUIRE_POSTGRES=1 (CI) makes PostgreSQL
mandatory. `celery_worker` tests also need Redis (REQUIRE_BROKER=1 makes a missing one fail),
`browser` tests Debian's chromium (REQUIRE_BROWSER=1 likewise).
"""

import functools
import os
import shutil
import socket

import pytest
from django.conf import settings

from tests.factories.portal import UserFactory

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes"}


def redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def pytest_report_header(config):
    if settings.USING_POSTGRES:
        return f"database: PostgreSQL ({settings.DATABASES['default']['HOST'] or 'socket'})"
    return "database: SQLite — PostgreSQL did not answer; tests marked 'postgres' are SKIPPED"


@functools.cache
def _missing_services() -> dict[str, str | None]:
    return {
        "postgres": None if settings.USING_POSTGRES else "PostgreSQL did not answer (set DATABASE_URL)",
        "celery_worker": None if redis_answers() and shutil.which("redis-server") else "Redis is not available",
        "browser": None if os.path.exists(CHROMIUM) else f"no chromium at {CHROMIUM}",
    }


_REQUIRED_BY = {"postgres": "REQUIRE_POSTGRES", "celery_worker": "REQUIRE_BROKER", "browser": "REQUIRE_BROWSER"}


def pytest_runtest_setup(item):
    for marker, reason in _missing_services().items():
        if reason and item.get_closest_marker(marker):
            if _flag(_REQUIRED_BY[marker]):
                pytest.fail(f"{_REQUIRED_BY[marker]}=1 but {reason}", pytrace=False)
            pytest.skip(reason)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not settings.USING_POSTGRES:
        terminalreporter.write_line(
            "NOTICE: ran on SQLite; PostgreSQL-only tests were skipped. Start PostgreSQL or set DATABASE_URL.",
            yellow=True,
        )


@pytest.fixture
def make_user(db):
    def make(username: str | None = None, *, roles: tuple[str, ...] = (), **kwargs):
        if username is not None:
            kwargs["username"] = username
        return UserFactory(roles=list(roles), **kwargs)

    return make


@pytest.fixture
def auditor(make_user):
    return make_user("auditor1", roles=("auditor",))


@pytest.fixture
def requester(make_user):
    return make_user("requester1", roles=("requester",))


@pytest.fixture
def admin_user(make_user):
    return make_user("admin1", roles=("admin",), is_staff=True, is_superuser=True)


@pytest.fixture
def count_queries(db):
    """Number of queries a callable runs (compare 1 row with many rows to prove there is no N+1)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count(func) -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = func()
        assert getattr(response, "status_code", 200) == 200
        return len(ctx.captured_queries)

    return count
