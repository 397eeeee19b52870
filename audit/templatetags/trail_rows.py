"""The rows of the audit trail's table (templates/audit/_event_list.html), written out in Python.

The trail and the timelines show up to 50 described events a page (`audit.sentences.describe`). Drawn by
template tags, a row cost ~150 µs (some 30 variables looked up, escaped and localised, two loops, a filter):
more than the rest of the page's rendering together. Here a row costs ~20 µs. The markup, whitespace
included, is what the template drew: keep it so (tests/audit/test_trail_rows.py compares the two).

`{% load trail_rows %}`, then `{% trail_rows events trail_url %}`.
"""

from collections.abc import Iterable
from urllib.parse import quote

from django import template
from django.utils.safestring import SafeString, mark_safe

from audit.kernel.html import html_text
from audit.sentences import DescribedEvent

from .times import when

register = template.Library()


def _fields(item: DescribedEvent) -> str:
    if not item.fields:
        return ""
    shown = "".join(f"<div><dt>{html_text(f.label)}</dt><dd>{html_text(f.value)}</dd></div>" for f in item.fields)
    return f'<dl class="trail-fields">{shown}</dl>'


def _changes(item: DescribedEvent) -> str:
    if not item.changes:
        return ""
    if item.changed:
        title, heads = "What changed", '<th scope="col">Before</th><th scope="col">After</th>'
        rows = "".join(
            f'<tr><th scope="row">{html_text(c.label)}</th><td>{html_text(c.before)}</td><td>{html_text(c.after)}</td></tr>'
            for c in item.changes
        )
    else:
        title, heads = "What was set", '<th scope="col">Value</th>'
        rows = "".join(
            f'<tr><th scope="row">{html_text(c.label)}</th><td>{html_text(c.after)}</td></tr>' for c in item.changes
        )
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
    event, url = item.event, html_text(trail_url)
    links = []
    if item.target_key:
        links.append(
            f'<a href="{url}?target={quote(item.target_key)}">every event about {html_text(item.target_text)}</a>'
        )
    if event.correlation_id:
        correlation = event.correlation_id
        links.append(
            f'<a href="{url}?correlation_id={quote(correlation)}" title="correlation id {html_text(correlation)}">'
            "same operation</a>"
        )
    return f'<p class="trail-meta"><small>{" · ".join(links)}</small></p>'


def _row(item: DescribedEvent, trail_url: str) -> str:
    event = item.event
    address = f" · {html_text(event.client_ip)}" if event.client_ip else ""
    return (
        f'\n    <tr id="event-{event.seq}">'
        f'\n      <td class="trail-seq">{event.seq}</td>'
        f'\n      <td class="trail-when">{when(event.occurred_at, "exact-seconds")}</td>'
        '\n      <td class="trail-body">'
        f'\n        <p class="trail-sentence">{html_text(item.sentence)}</p>'
        f"\n        {_fields(item)}"
        f"\n        {_changes(item)}"
        f"\n        {_meta(item, trail_url)}"
        "\n      </td>"
        f'\n      <td class="trail-actor">{html_text(event.actor_label)}<br><small class="muted">'
        f"{html_text(item.channel_label)}{address}</small></td>"
        f'\n      <td class="trail-action"><code title="{html_text(item.action_label)}">{html_text(event.action)}</code></td>'
        "\n    </tr>\n  "
    )


@register.simple_tag
def trail_rows(events: Iterable[DescribedEvent], trail_url: str = "") -> SafeString:
    """The `<tr>` of each event; with `trail_url` (the reader may open the trail) its "every event about it"
    and "same operation" links."""
    return mark_safe("".join(_row(item, trail_url) for item in events))
