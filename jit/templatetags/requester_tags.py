"""Display helpers of the requester's pages: durations in one style, sortable column headers."""

from datetime import timedelta

from django import template
from django.utils.html import format_html

from audit.kernel import clock

from ..forms import duration_words

register = template.Library()


@register.filter
def words(value) -> str:
    """A timedelta, or seconds, in the request pages' one style: "4 hours", "1 day", "1 h 30 min"."""
    if value is None or value == "":
        return ""
    return duration_words(value if isinstance(value, timedelta) else timedelta(seconds=int(value)))


@register.simple_tag(takes_context=True)
def sort_header(context, key: str, label: str) -> str:
    """A column header that sorts by `key` (toggling direction, keeping the filters), with `aria-sort`
    saying the current order to assistive technology and an arrow saying it to the eye."""
    request = context["request"]
    current = request.GET.get("sort", "")
    state = "ascending" if current == key else "descending" if current == f"-{key}" else "none"
    query = request.GET.copy()
    query["sort"] = f"-{key}" if current == key else key
    query.pop("page", None)
    arrow = {"ascending": "▲", "descending": "▼", "none": "↕"}[state]
    return format_html(
        '<th scope="col" aria-sort="{}"><a class="sort" href="?{}" hx-get="{}?{}" hx-target="#results" '
        'hx-swap="outerHTML" hx-push-url="true">{} <span aria-hidden="true">{}</span></a></th>',
        state,
        query.urlencode(),
        request.path,
        query.urlencode(),
        label,
        arrow,
    )


@register.filter
def starts_later(access_request) -> bool:
    """An approved request whose start has not come yet: it cannot be activated before it."""
    return access_request.start_at is not None and access_request.start_at > clock.now()
