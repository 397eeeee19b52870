"""The rows of the dashboard's own lists (templates/portal/dashboard.html), written out in Python.

Drawn by template tags, a row cost ~35 µs (a dozen values looked up, escaped and localised, filters, and
for a pending request an include): a third of the page's rendering for its 30-40 rows. Here a row costs
a few µs. The markup, whitespace included, is what the template drew: keep it so
(tests/jit/test_dashboard_rows.py compares the two).

`{% load dashboard_rows %}`, then `<ul>{% grant_rows grants_in_force %}</ul>` and so on.
"""

from collections.abc import Iterable

from django import template
from django.template.defaultfilters import timesince_filter
from django.utils.safestring import SafeString, mark_safe

from audit.kernel.html import html_text
from audit.templatetags.times import when
from governance.templatetags.grant_tags import expires_soon, timeleft

from ..selectors import PanelGrant, PanelNotice, PanelRequest
from .jit_tags import time_out

register = template.Library()

ITEM = "\n    <li>{}</li>\n  "  # a list item as the template's loop drew it, its indentation included


@register.simple_tag
def grant_rows(grants: Iterable[PanelGrant]) -> SafeString:
    """My grants in force: the access (linked), whose it is when not mine, and its time left."""
    return mark_safe("".join(ITEM.format(_grant(grant)) for grant in grants))


def _grant(grant: PanelGrant) -> str:
    holder = "" if grant.identity.is_human else f' <small class="muted">for {html_text(grant.identity.name)}</small>'
    left = f"{html_text(timeleft(grant))} left" if grant.expires_at else "standing"
    soon = " soon" if expires_soon(grant) else ""
    return (
        f'<a href="{html_text(grant.url)}">{_access(grant)}</a>{holder} — <span class="time-left{soon}">{left}</span>'
    )


@register.simple_tag
def pending_rows(requests: Iterable[PanelRequest]) -> SafeString:
    """My pending requests: what, for whom, how long they have waited and when they time out."""
    return mark_safe("".join(ITEM.format(_pending(request)) for request in requests))


def _pending(request: PanelRequest) -> str:
    waited = html_text(timesince_filter(request.created_at))
    return (
        f"{_request_link(request)}: {_access(request)} for {html_text(request.beneficiary.name)}"
        f' <small class="muted">waiting {waited} · {_time_out(request)}</small>'
    )


def _time_out(request: PanelRequest) -> str:
    """What jit/_time_out.html draws (its file's closing newline included)."""
    return time_out(request) + "\n"


@register.simple_tag
def approval_rows(requests: Iterable[PanelRequest]) -> SafeString:
    """The requests waiting for my approval: what, its risk, for whom."""
    return mark_safe("".join(ITEM.format(_approval(request)) for request in requests))


def _approval(request: PanelRequest) -> str:
    entitlement = request.entitlement
    risk = f'<span class="badge risk-{html_text(entitlement.risk_tier)}">{html_text(entitlement.get_risk_tier_display())}</span>'
    return f"{_request_link(request)}: {_access(request)} {risk} for {html_text(request.beneficiary.name)}"


@register.simple_tag
def notice_rows(notices: Iterable[PanelNotice], notices_url: str) -> SafeString:
    """My unread notices, each opening on the notifications page when it leads somewhere."""
    return mark_safe("".join(ITEM.format(_notice(notice, notices_url)) for notice in notices))


def _notice(notice: PanelNotice, notices_url: str) -> str:
    subject = html_text(notice.subject)
    if notice.link:
        subject = f'<a href="{html_text(notices_url)}?open={notice.pk}">{subject}</a>'
    return f'{subject} <small class="muted">{when(notice.created_at)}</small>'


def _request_link(request: PanelRequest) -> str:
    return f'<a href="{html_text(request.url)}">{html_text(str(request))}</a>'


def _access(row: PanelRequest | PanelGrant) -> str:
    entitlement = row.entitlement
    return f"{html_text(entitlement.system.name)} / {html_text(entitlement.name)}"
