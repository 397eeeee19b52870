"""Times in the portal's one style: relative words ("3 h ago", "in 2 days") with the absolute time in
the viewer's zone on hover. The zone is activated per request (portal.middleware.TimeZoneMiddleware:
the person's profile, else their browser's), so `timezone.localtime` here is the viewer's local time.

`{% load times %}`; the inventory's and request pages' tag libraries (grant_tags, jit_tags) carry it too.
"""

from datetime import date, datetime, timedelta
from html import escape

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from audit.kernel import clock

register = template.Library()

RELATIVE_FOR = timedelta(days=7)


def _ago(delta: timedelta) -> str:
    seconds = int(abs(delta.total_seconds()))
    if seconds < 60:
        return ""
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} h"
    days = hours // 24
    return "1 day" if days == 1 else f"{days} days"


def relative_words(moment: datetime, now: datetime, local: datetime | None = None) -> str:
    """ "just now", "5 min ago", "in 3 h", "2 days ago"; beyond a week the date ("2026-11-12") in the
    viewer's zone (`local`: the moment already in it)."""
    delta = moment - now
    if abs(delta) >= RELATIVE_FOR:
        local = timezone.localtime(moment) if local is None else local
        return f"{local.year:04d}-{local.month:02d}-{local.day:02d}"  # date_format(local, "Y-m-d"), written out
    span = _ago(delta)
    if not span:
        return "just now"
    return f"in {span}" if delta > timedelta(0) else f"{span} ago"


def stamp(local: datetime, *, seconds: bool, zone: bool) -> str:
    """`date_format(local, "Y-m-d H:i[:s][ T]")`, written out: the audit trail prints two a row, and
    Django's formatter (a method call per character) cost more than the rest of the row."""
    text = f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d}"
    if seconds:
        text += f":{local.second:02d}"
    if zone:
        tz = local.tzinfo
        # As Django's "T": nothing for a wall time the zone passes twice or skips.
        ambiguous = tz.utcoffset(local.replace(fold=not local.fold)) != tz.utcoffset(local)
        text += " " + ("" if ambiguous else str(tz.tzname(local)))
    return text


@register.filter(is_safe=True)
def when(value, style: str = "") -> str:
    """A time in the portal's one style: `<time>` with the relative words ("3 h ago", "in 2 days") and the
    absolute time in the viewer's zone on hover ("2026-12-03 10:35 CET"). `when:"exact"` shows the
    absolute time itself (the audit trail, printed reports), still in a `<time>` with the zone on hover.
    An empty value shows as "—"."""
    if value in (None, ""):
        return "—"
    if not isinstance(value, datetime):
        if isinstance(value, date):
            return format_html('<time datetime="{}">{}</time>', value.isoformat(), value.isoformat())
        return str(value)
    aware = timezone.is_aware(value)
    local = timezone.localtime(value) if aware else value
    seconds = style == "exact-seconds"
    absolute = stamp(local, seconds=seconds, zone=aware)
    if style == "exact":
        shown = stamp(local, seconds=False, zone=False)
    elif style == "exact-seconds":
        shown = stamp(local, seconds=True, zone=False)
    else:
        shown = relative_words(value, clock.now(), local)
    # format_html, written out (the standard library's escape is Django's): a list of 50 rows shows 50.
    return mark_safe(f'<time datetime="{value.isoformat()}" title="{escape(absolute)}">{escape(shown)}</time>')
