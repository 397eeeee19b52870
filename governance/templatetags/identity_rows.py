"""The rows of the identity lists' table (templates/governance/_identity_results.html), written out in Python.

The identity list, its searches and filters, and "my identities" show 50 rows a page. Drawn by template
tags, the rows cost ~3.5 ms of a page (some 15 values a row looked up, escaped and localised, two
filters): more than the rest of its rendering. Here they cost a few tenths of a millisecond. The markup,
whitespace included, is what the template drew: keep it so (tests/governance/test_identity_rows.py
compares the two).

`{% load identity_rows %}`, then `{% identity_rows page_obj.object_list %}`.
"""

from collections.abc import Iterable

from django import template
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from audit.kernel.html import html_text
from audit.templatetags.times import when

from ..selectors import IdentityRow

register = template.Library()

TEAM_SHOWN = 60  # characters, as `truncatechars:60`


@register.simple_tag
def identity_rows(rows: Iterable[IdentityRow]) -> SafeString:
    return mark_safe("".join(_row(row) for row in rows))


def _row(row: IdentityRow) -> str:
    count = row.open_finding_count
    findings = f'<span class="badge risk-high">{count}</span>' if count else "0"
    return (
        "\n    <tr>"
        f'\n      <td><a href="{html_text(row.url)}">{html_text(row.name)}</a></td>'
        f"\n      <td>{html_text(row.get_kind_display())}</td>"
        f'\n      <td><span class="badge status-{html_text(row.status)}">{html_text(row.get_status_display())}</span></td>'
        f"\n      <td>{_owner(row)}</td>"
        f"\n      <td>{html_text(Truncator(row.team or '—').chars(TEAM_SHOWN))}</td>"
        f"\n      <td>{when(row.last_used_at) if row.last_used_at else 'never'}</td>"
        f"\n      <td>{row.live_grant_count}</td>"
        f"\n      <td>{findings}</td>"
        "\n    </tr>\n  "
    )


def _owner(row: IdentityRow) -> str:
    """Who answers for it, and whether they have left; a machine without an owner says so."""
    owner = row.owner
    if owner is None:
        return "—" if row.is_human else "<strong>none</strong>"
    if owner.status == "active":
        return html_text(owner.name)
    return (
        f'{html_text(owner.name)} <span class="badge status-offboarded">{html_text(owner.get_status_display())}</span>'
    )
