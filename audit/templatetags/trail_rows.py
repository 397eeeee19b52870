"""The rows of the audit trail's table (templates/audit/_event_list.html), written out in Python.

The trail and the timelines show up to 50 described events a page (`audit.sentences.describe`). Drawn by
template tags, a row cost ~150 µs (some 30 variables looked up, escaped and localised, two loops, a filter):
more than the rest of the page's rendering together. Here a row costs ~20 µs. The markup, whitespace
included, is what the template drew: keep it so (tests/audit/test_trail_rows.py compares the two).

`{% load trail_rows %}`, then `{% trail_rows events trail_url %}`.
"""

from collections.abc import Iterable
from html import escape
from urllib.parse import quote

from django import template
from django.utils.safestring import SafeString, mark_safe

from audit.sentences import DescribedEvent

from .times import when

register = template.Library()


def _html(value) -> str:
    """As `{{ value }}` prints it: escaped unless already safe (the values here are text, not numbers)."""
    return value.__html__() if hasattr(value, "__html__") else escape(str(value))


def _fields(item: DescribedEvent) -> str:
    if not item.fields:
        return ""
    shown = "".join(f"<div><dt>{_html(f.label)}</dt><dd>{_html(f.value)}</dd></div>" for f in item.fields)
    return f'<dl class="trail-fields">{shown}</dl>'


def _changes(item: DescribedEvent) -> str:
    if not item.changes:
        return ""
    if item.changed:
        title, heads = "What changed", '<th scope="col">Before</th><th scope="col">After</th>'
        rows = "".join(
            f'<tr><th scope="row">{_html(c.label)}</th><td>{_html(c.before)}</td><td>{_html(c.after)}</td></tr>'
            for c in item.changes
        )
    else:
        title, heads = "What was set", '<th scope="col">Value</th>'
        rows = "".join(f'<tr><th scope="row">{_html(c.label)}</th><td>{_html(c.after)}</td></tr>' for c in item.changes)
    return (
        f'\n        <details class="trail-changes"><summary>{title} ({len(item.changes)})</summary>'
        "\n          <table>"
        f'\n            <thead><tr><th scope="col">Field</th>{heads}</tr></thead>'
        f"\n            <tbody>{rows}</tbody>"
        "\n          </table>"
        "\n        </details>\n        "
    )


def _meta(item: DescribedEvent, trail_url: str) -> str:
    """The links to more of the trail: every event about the target, and the same operation's."""
    if not trail_url:
        return ""
    event, url = item.event, _html(trail_url)
    links = []
    if item.target_key:
        links.append(f'<a href="{url}?target={quote(item.target_key)}">every event about {_html(item.target_text)}</a>')
    if event.correlation_id:
        correlation = event.correlation_id
        links.append(
            f'<a href="{url}?correlation_id={quote(correlation)}" title="correlation id {_html(correlation)}">'
            "same operation</a>"
        )
    return f'<p class="trail-meta"><small>{" · ".join(links)}</small></p>'


def _row(item: DescribedEvent, trail_url: str) -> str:
    event = item.event
    address = f" · {_html(event.client_ip)}" if event.client_ip else ""
    return (
        f'\n    <tr id="event-{event.seq}">'
        f'\n      <td class="trail-seq">{event.seq}</td>'
        f'\n      <td class="trail-when">{when(event.occurred_at, "exact-seconds")}</td>'
        '\n      <td class="trail-body">'
        f'\n        <p class="trail-sentence">{_html(item.sentence)}</p>'
        f"\n        {_fields(item)}"
        f"\n        {_changes(item)}"
        f"\n        {_meta(item, trail_url)}"
        "\n      </td>"
        f'\n      <td class="trail-actor">{_html(event.actor_label)}<br><small class="muted">'
        f"{_html(item.channel_label)}{address}</small></td>"
        f'\n      <td class="trail-action"><code title="{_html(item.action_label)}">{_html(event.action)}</code></td>'
        "\n    </tr>\n  "
    )


@register.simple_tag
def trail_rows(events: Iterable[DescribedEvent], trail_url: str = "") -> SafeString:
    """The `<tr>` of each event; with `trail_url` (the reader may open the trail) its "every event about it"
    and "same operation" links."""
    return mark_safe("".join(_row(item, trail_url) for item in events))
