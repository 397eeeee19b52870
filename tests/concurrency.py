"""Running calls at the same moment on real concurrent connections (PostgreSQL race tests)."""

import threading
import time

from django.db import connection, transaction


def race(*calls):
    """Run the calls at the same moment, each on its own connection; return results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _wait_until_a_connection_waits_on_a_lock(give_up, timeout: float = 10.0) -> None:
    """Block until another connection of this database waits for a row lock, or `give_up()` is true."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline and not give_up():
            cursor.execute(
                "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)


def while_holding(take_locks, finish, other):
    """In one transaction take `take_locks()`'s locks and pause; run `other` meanwhile on another
    connection; then `finish()`. Returns (finish's outcome, other's outcome).

    Whatever `other` locks in whatever order, it must queue behind the first, never deadlock."""
    locked, go = threading.Event(), threading.Event()
    outcome: dict = {}

    def first():
        try:
            with transaction.atomic():
                take_locks()
                locked.set()
                go.wait(10)
                outcome["first"] = finish()
        except Exception as exc:
            outcome["first"] = exc
        finally:
            connection.close()

    def run_other():
        locked.wait(10)
        try:
            outcome["other"] = other()
        except Exception as exc:
            outcome["other"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=run_other)]
    for t in threads:
        t.start()
    locked.wait(10)
    _wait_until_a_connection_waits_on_a_lock(give_up=lambda: "other" in outcome)
    go.set()
    for t in threads:
        t.join(30)
    return outcome["first"], outcome["other"]
