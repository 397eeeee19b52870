"""Health checks for load balancers and operators: each returns (ok, detail)."""

import os
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connection

HealthCheck = Callable[[], tuple[bool, str]]


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return False, f"{type(exc).__name__}"
    return True, connection.vendor


def check_broker() -> tuple[bool, str]:
    """Can this node reach the broker? A hard bound: the answer comes within HEALTH_BROKER_TIMEOUT_SECONDS.

    The probe runs in a thread of its own with socket timeouts of that length, and the caller waits
    for it no longer: a broker that refuses is down at once, one that accepts and never answers is
    down after the timeout. Probes asked for while one runs share it, so a hung broker never costs
    more than one thread.
    """
    timeout = settings.HEALTH_BROKER_TIMEOUT_SECONDS
    try:
        probe = _broker_probe()
    except Exception as exc:  # a broker URL the transport cannot use
        return False, f"{type(exc).__name__}"
    if not probe.done.wait(timeout):
        return False, f"no answer within {timeout:g} s"
    return probe.result


class _Probe:
    def __init__(self, connection, broker_url: str) -> None:
        self.connection, self.broker_url, self.pid = connection, broker_url, os.getpid()
        self.done = threading.Event()
        self.result: tuple[bool, str] = (False, "not run")

    def run(self) -> None:
        try:
            with self.connection as conn:
                conn.ensure_connection(max_retries=0)
                self.result = (True, str(conn.transport_cls))
        except Exception as exc:
            self.result = (False, f"{type(exc).__name__}")
        finally:
            self.done.set()


_probe_lock = threading.Lock()
_probe: _Probe | None = None


def _broker_probe() -> _Probe:
    """The probe of this process and broker running now, or a new one.

    Its connection is made here (loading the broker's client library, once per process, is not the
    broker's time); only talking to the broker happens in the probe's thread.
    """
    from audit.outbox import bounded_broker_connection
    from portal.celery import app

    global _probe
    broker_url = app.conf.broker_url
    with _probe_lock:
        if _probe is None or _probe.done.is_set() or (_probe.pid, _probe.broker_url) != (os.getpid(), broker_url):
            _probe = _Probe(bounded_broker_connection(settings.HEALTH_BROKER_TIMEOUT_SECONDS), broker_url)
            threading.Thread(target=_probe.run, name="health-broker", daemon=True).start()
        return _probe


def check_expiry_sweep() -> tuple[bool, str]:
    from jit.health import check_expiry_sweep as check

    return check()


def check_audit_checkpoints() -> tuple[bool, str]:
    from audit.checkpoints import checkpoint_health

    try:
        return checkpoint_health()
    except Exception as exc:  # a broken store or key must show here, never take /health/ down
        return False, f"{type(exc).__name__}"


HEALTH_CHECKS: dict[str, HealthCheck] = {
    "database": check_database,
    "broker": check_broker,
    "expiry_sweep": check_expiry_sweep,
    "audit_checkpoints": check_audit_checkpoints,
}


# What a web node needs to serve: a load balancer's readiness probe asks only these (/health/ready/),
# so beat being down marks the portal unhealthy without taking every web node out of rotation.
READINESS_CHECKS = ("database", "broker")


def run_checks(names=None) -> dict[str, dict[str, object]]:
    results = {}
    for name, check in HEALTH_CHECKS.items():
        if names is not None and name not in names:
            continue
        ok, detail = check()
        results[name] = {"ok": ok, "detail": detail}
    return results
