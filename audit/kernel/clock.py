"""The application clock for reads: what "now" is when a page or the API decides what is in force.

One function so that every rule asks the same clock; it reads Django's timezone-aware now at each
call, so tests that travel in time (time-machine) move it too. Times that decide or record a state
change come from the database (see the expiry sweep), not from here.
"""

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()
