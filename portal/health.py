"""Health checks for load balancers and operators: each returns (ok, detail)."""

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
    from portal.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.HEALTH_BROKER_TIMEOUT_SECONDS)
            transport = conn.transport_cls
    except Exception as exc:
        return False, f"{type(exc).__name__}"
    return True, str(transport)


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
