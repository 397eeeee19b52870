"""The application's two clocks, and which to ask when.

`database_now()`: the database's time. Every time that decides or records a state change comes
from it: a start that is due, an expiry, granted_at/revoked_at/decided_at, a heartbeat, an audit
event's occurred_at. Web nodes and workers run on machines whose clocks drift apart; the database
is the one clock they share, so a worker whose clock runs ahead neither starts a request early nor
stamps the trail in the future, and health compares a heartbeat with the clock that wrote it.
SQL that decides or records a time takes this value as a parameter rather than calling
CURRENT_TIMESTAMP or now() itself, so that the test suite's time travel (below) reaches it too.

`now()`: this process's clock, for reads: what a page or the API shows as in force now, how long
is left. A few seconds of drift there is harmless and costs no query.

On PostgreSQL `database_now()` is `statement_timestamp()`: the time the database received the
question, read when the service asks (after the row locks it took, so a service that waited for a
lock decides at the time it decides). Not CURRENT_TIMESTAMP, the transaction's start: in the test
suite each test is one transaction, which would freeze that clock for the whole test, and in
production a transaction that waited on a lock would decide by the time before the wait. It is not
cached: one round trip is ~30 us on a local socket; a service reads it once into its `now`.
On SQLite (the embedded default, one machine) the process's clock is the only clock.

The test suite moves time with time-machine, which the database's clock does not follow. With the
setting CLOCK_FOLLOWS_TIME_TRAVEL (tests only) the database's time follows it: moved by the distance
travelled, or stopped where the traveller stopped time (tick=False). Tests still read the database's
clock and pass its value to SQL as production does; tests/jit/test_one_clock.py turns the setting
off to give the process and the database different clocks. Production never imports time_machine.

The audit trail stamps events with clock_timestamp() read as the chain is taken (audit.services),
so that times follow the chain's order. Left on the process's clock: `auto_now`/`auto_now_add`
columns (created_at, updated_at, an approval's own row), which nothing decides by within minutes.
"""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone


def now() -> datetime:
    """This process's time, for reads (what is in force, how long is left); never for a state change."""
    return timezone.now()


def database_now() -> datetime:
    """The database's time now: the one clock every time that decides or records a state change reads."""
    if connection.vendor != "postgresql":
        return timezone.now()  # the embedded default: this machine's clock is the database's
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        (moment,) = cursor.fetchone()
    return from_database(moment)


def from_database(moment: datetime) -> datetime:
    """A time the database read from its own clock (e.g. clock_timestamp() in a query), as the
    application uses it: in UTC, and following the test suite's time travel when told to."""
    moment = moment.astimezone(UTC)
    if not getattr(settings, "CLOCK_FOLLOWS_TIME_TRAVEL", False):
        return moment
    return _as_travelled(moment)


def _as_travelled(moment: datetime) -> datetime:
    """Tests only: the database's time moved by the distance time-machine travelled, or, where the
    traveller stopped the clock (tick=False), that stopping point, as a stopped database clock would say."""
    import time

    from time_machine import escape_hatch

    if not escape_hatch.is_travelling():
        return moment
    travelled_ns = time.time_ns()
    if time.time_ns() == travelled_ns:  # the clock stands still
        return timezone.now()
    return moment + timedelta(microseconds=(travelled_ns - escape_hatch.time.time_ns()) // 1000)
