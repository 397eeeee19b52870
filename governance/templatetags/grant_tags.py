"""Display helpers for grants, durations, times and people, shared by the inventory and request pages."""

from datetime import datetime, timedelta

from django import template
from django.core.exceptions import ObjectDoesNotExist
from django.utils.html import format_html

from audit.kernel import clock
from audit.templatetags.times import when
from governance.choices import ApproverSource, GrantKind, GrantStatus, IdentityKind

register = template.Library()

SOON = timedelta(hours=1)


def _expiry(value) -> datetime | None:
    return value if isinstance(value, datetime) or value is None else getattr(value, "expires_at", None)


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else "less than a minute"


# A grant that is not running has no time left to show, whatever its expiry says.
_NOT_RUNNING = {
    GrantStatus.REVOKED: "ended",
    GrantStatus.EXPIRED: "ended",
    GrantStatus.REVOKING: "being removed",
    GrantStatus.REVOKE_FAILED: "being removed",
    GrantStatus.PROVISION_FAILED: "not started",
}
# A time-boxed grant waiting for its target: its clock starts when the access is in place.
_WAITING = "starts when provisioned"


@register.filter
def timeleft(value) -> str:
    """How long a grant (or an expiry time) has left: "1 h 59 min", "expired", "ended", or "no expiry"."""
    status = getattr(value, "status", None)
    stopped = _NOT_RUNNING.get(status)
    if stopped:
        return stopped
    if status == GrantStatus.PENDING_PROVISION and value.kind != GrantKind.STANDING:
        return _WAITING
    expires_at = _expiry(value)
    if expires_at is None:
        return "no expiry"
    left = expires_at - clock.now()
    return "expired" if left <= timedelta(0) else _span(left)


@register.filter
def expires_in(value) -> str:
    """A grant's expiry in words: "expires in 3 h 20 min", "expired", or "no expiry" (standing)."""
    left = timeleft(value)
    return left if left in ("expired", "no expiry", _WAITING, *_NOT_RUNNING.values()) else f"expires in {left}"


@register.filter
def expires_soon(value) -> bool:
    if getattr(value, "status", None) in _NOT_RUNNING:
        return False
    expires_at = _expiry(value)
    return expires_at is not None and expires_at - clock.now() <= SOON


@register.filter
def past_expiry(grant) -> bool:
    """An active grant whose time has passed is shown as expired even before the sweep reaches it."""
    return grant.is_past_expiry()


@register.filter
def shown_status(grant) -> str:
    return "expired" if past_expiry(grant) else grant.status


@register.filter
def shown_status_label(grant) -> str:
    if past_expiry(grant):
        return "Expired"
    if grant.status == GrantStatus.REVOKE_FAILED:
        return "Revocation failed — access may still exist"
    return grant.get_status_display()


@register.filter
def duration(value) -> str:
    """A timedelta, or a number of seconds, in hours or days: "2 hours", "7 days"."""
    if value is None or value == "":
        return ""
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    hours, minutes = divmod(seconds // 60, 60)
    if hours >= 48 and hours % 24 == 0 and not minutes:
        return f"{hours // 24} days"
    if minutes:
        return f"{hours} h {minutes} min" if hours else f"{minutes} min"
    return "1 hour" if hours == 1 else f"{hours} hours"


@register.filter
def approver_label(source: str) -> str:
    try:
        return ApproverSource(source).label
    except ValueError:
        return str(source).replace("_", " ")


@register.filter
def person(user) -> str:
    """A login shown by the identity it is linked to (the inventory's name), else by its own name."""
    if user is None:
        return "—"
    try:
        identity = user.identity
    except ObjectDoesNotExist:
        identity = None
    return identity.name if identity is not None else (user.get_full_name() or user.get_username())


SORT_ARROWS = {"ascending": "▲", "descending": "▼", "none": "↕"}


def _sort_state(request, key: str) -> tuple[str, str]:
    """The column's state ("ascending", "descending", "none") and the query string its link asks for."""
    current = request.GET.get("sort", "")
    state = "ascending" if current == key else "descending" if current == f"-{key}" else "none"
    query = request.GET.copy()
    query["sort"] = f"-{key}" if current == key else key
    query.pop("page", None)
    return state, query.urlencode()


@register.simple_tag(takes_context=True)
def sort_header(context, key: str, label: str, target: str = "") -> str:
    """The one sortable column header of every table: a `<th>` whose `aria-sort` tells assistive technology
    the current order and whose arrow tells the eye (▲ ascending, ▼ descending, ↕ sortable); the link
    toggles the direction and keeps the filters. With `target` (a results container's selector) htmx
    swaps only the results, and the address bar keeps the link."""
    state, query = _sort_state(context["request"], key)
    if target:
        link = format_html(
            '<a class="sort" href="?{}" hx-get="?{}" hx-target="{}" hx-swap="outerHTML" hx-push-url="true">',
            query,
            query,
            target,
        )
    else:
        link = format_html('<a class="sort" href="?{}">', query)
    return format_html(
        '<th scope="col" aria-sort="{}">{}{} <span class="sort-arrow" aria-hidden="true">{}</span></a></th>',
        state,
        link,
        label,
        SORT_ARROWS[state],
    )


@register.simple_tag(takes_context=True)
def sort_link(context, key: str, label: str) -> str:
    """The link alone, for a template that writes its own `<th>` (prefer `sort_header`, which also says
    the order with `aria-sort`); the same arrows."""
    state, query = _sort_state(context["request"], key)
    return format_html(
        '<a class="sort" href="?{}">{} <span class="sort-arrow" aria-hidden="true">{}</span></a>',
        query,
        label,
        SORT_ARROWS[state],
    )


# Times in the portal's one style (`audit.templatetags.times`): every page that loads these tags has them.
register.filter("when", when, is_safe=True)


@register.filter
def kind_labels(values) -> str:
    """Identity kinds as people read them: "service account, API key", not "service_account, api_key"."""
    labels = dict(IdentityKind.choices)

    def lower_first(label: str) -> str:
        return label if label[:2].isupper() else label[:1].lower() + label[1:]

    return ", ".join(lower_first(str(labels.get(value, value))) for value in values or ())
