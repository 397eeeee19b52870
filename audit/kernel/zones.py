"""The time zone a page shows and reads times in: the viewer's browser's, else the portal's.

A person may choose their zone on their profile (portal.profiles; the middleware puts it on the request as
`profile_time_zone`); otherwise the browser tells it: static/js/browser-time-zone.js keeps the browser's
zone in the `tz` cookie and fills every `<input data-browser-time-zone>` (a filter form's hidden `tz`
field). A `tz` in the query string wins over both, so that a link to a filtered page ("from 09:00")
means the same instant to whoever opens it.
"""

import zoneinfo
from datetime import tzinfo
from functools import cache

from django.utils import timezone

COOKIE = "tz"
PARAMETER = "tz"


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def known_zone(name: str | None) -> str | None:
    """`name` when it is an IANA time zone this server knows, else None (never an error: a cookie is input)."""
    return name if name and name in _known_zones() else None


def viewer_zone(request) -> tzinfo:
    """The zone to show and read this request's times in: its `tz` parameter, the person's chosen zone, the
    browser's cookie, the portal's."""
    chosen = getattr(request, "profile_time_zone", None)
    for candidate in (request.GET.get(PARAMETER), chosen, request.COOKIES.get(COOKIE)):
        if name := known_zone(candidate):
            return zoneinfo.ZoneInfo(name)
    return timezone.get_default_timezone()


def zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


def current_zone_name() -> str:
    """The zone this request shows and reads times in (portal.middleware.TimeZoneMiddleware activates it)."""
    return zone_name(timezone.get_current_timezone())
