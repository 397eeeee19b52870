"""A circuit breaker per system: a target that keeps failing is left alone for a while.

Without it, a system that is down costs every message of every batch a connector timeout (a batch of
50 revocations to a dead webhook: 50 timeouts, four at a time). After `CONNECTOR_CIRCUIT_TRIP_AFTER`
failures in a row that are worth retrying (the target down, slow, refusing connections), the circuit
opens for `CONNECTOR_CIRCUIT_OPEN_SECONDS`: calls to that system are answered at once with a
retriable error, so the outbox backs them off without waiting on the target. When the time is up the
next calls go through (half-open): one success closes it, another failure opens it again. An answer
that is no outage (a success, or a permanent refusal: the target answered) resets the count.

The state is kept in the cache (Redis where `CACHE_URL` is set), so every worker sees the same circuit;
with the local-memory cache each worker process keeps its own, which only makes it slower to trip.
"""

from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache

from . import RetriableError

Answer = object  # a Result, or the ConnectorError the call failed with


def _keys(system_id: int) -> tuple[str, str]:
    return f"connector-circuit:{system_id}:open", f"connector-circuit:{system_id}:failures"


def call_through_circuit(system, call: Callable[[], Answer]) -> Answer:
    """`call()` unless the system's circuit is open; counts its outcome. Failures are returned, as batches collect them."""
    opened, failures = _keys(system.pk)
    if cache.get(opened) is not None:
        return RetriableError(
            f"{system.connector} connector of {system.name}: not called, its last "
            f"{settings.CONNECTOR_CIRCUIT_TRIP_AFTER} calls failed; tried again after "
            f"{settings.CONNECTOR_CIRCUIT_OPEN_SECONDS} s."
        )
    answer = call()
    if isinstance(answer, RetriableError):
        cache.add(failures, 0, timeout=settings.CONNECTOR_CIRCUIT_OPEN_SECONDS * 10)
        try:
            count = cache.incr(failures)
        except ValueError:  # expired between the add and the incr
            count = 1
            cache.set(failures, count, timeout=settings.CONNECTOR_CIRCUIT_OPEN_SECONDS * 10)
        if count >= settings.CONNECTOR_CIRCUIT_TRIP_AFTER:
            cache.set(opened, 1, timeout=settings.CONNECTOR_CIRCUIT_OPEN_SECONDS)
            cache.delete(failures)
    else:
        cache.delete(failures)
    return answer
