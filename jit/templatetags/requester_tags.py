"""Display helpers of the requester's pages: durations in one style; the portal's sortable column header."""

from datetime import timedelta

from django import template

from audit.kernel import clock
from governance.templatetags.grant_tags import sort_header as shared_sort_header

from ..forms import duration_words

register = template.Library()


@register.filter
def words(value) -> str:
    """A timedelta, or seconds, in the request pages' one style: "4 hours", "1 day", "1 h 30 min"."""
    if value is None or value == "":
        return ""
    return duration_words(value if isinstance(value, timedelta) else timedelta(seconds=int(value)))


@register.simple_tag(takes_context=True)
def sort_header(context, key: str, label: str, target: str = "#results") -> str:
    """The portal's one sortable header (`grant_tags.sort_header`); the request pages swap `#results`."""
    return shared_sort_header(context, key, label, target)


@register.filter
def starts_later(access_request) -> bool:
    """An approved request whose start has not come yet: it cannot be activated before it."""
    return access_request.start_at is not None and access_request.start_at > clock.now()
