"""The identity lists' rows, written out in Python, draw what Django's template drew."""

from datetime import UTC, datetime, timedelta

import pytest
from django.template import engines
from django.urls import reverse
from django.utils import timezone

from governance.selectors import IdentityRow, OwnerShown
from governance.templatetags.identity_rows import identity_rows
from tests.factories.governance import MachineFactory, PersonFactory, with_role

# The rows as templates/governance/_identity_results.html drew them with template tags, before `identity_rows`.
TEMPLATE_ROWS = """{% load grant_tags %}  {% for identity in rows %}
    <tr>
      <td><a href="{{ identity.url }}">{{ identity.name }}</a></td>
      <td>{{ identity.get_kind_display }}</td>
      <td><span class="badge status-{{ identity.status }}">{{ identity.get_status_display }}</span></td>
      <td>{% if identity.owner %}{{ identity.owner.name }}{% if identity.owner.status != "active" %} <span class="badge status-offboarded">{{ identity.owner.get_status_display }}</span>{% endif %}{% elif not identity.is_human %}<strong>none</strong>{% else %}—{% endif %}</td>
      <td>{{ identity.team|default:"—"|truncatechars:60 }}</td>
      <td>{% if identity.last_used_at %}{{ identity.last_used_at|when }}{% else %}never{% endif %}</td>
      <td>{{ identity.live_grant_count }}</td>
      <td>{% if identity.open_finding_count %}<span class="badge risk-high">{{ identity.open_finding_count }}</span>{% else %}0{% endif %}</td>
    </tr>
  {% endfor %}
"""


def row(pk: int, **fields) -> IdentityRow:
    values = {
        "pk": pk,
        "name": f"identity-{pk}",
        "kind": "service_account",
        "status": "active",
        "team": "payments",
        "last_used_at": None,
        "owner": OwnerShown("Ada Lovelace", "active"),
        "live_grant_count": 0,
        "open_finding_count": 0,
        "url": f"/inventory/identities/{pk}/",
        **fields,
    }
    return IdentityRow(**values)


def rows(now: datetime) -> list[IdentityRow]:
    return [
        row(1),
        row(2, name='<b>"bot" & co</b>', team="<i>ops</i> & 'sec'", url="/x/?a=1&b=<2>"),
        row(3, kind="human", owner=None, team=""),  # a person with no owner: a dash
        row(4, kind="agent", owner=None, status="suspended"),  # a machine with no owner: says so
        row(5, owner=OwnerShown("Gone <Owner>", "offboarded"), team="t" * 60),
        row(6, owner=OwnerShown("Away", "suspended"), team="t" * 61),  # cut to 59 and an ellipsis
        row(7, last_used_at=now - timedelta(minutes=5), live_grant_count=12_345, open_finding_count=3),
        row(8, last_used_at=now - timedelta(days=40), kind="made_up", status="unheard_of"),
        row(9, last_used_at=datetime(2026, 3, 29, 1, 30, tzinfo=UTC), team=None),  # the night clocks change
    ]


@pytest.mark.parametrize("zone", ["UTC", "Europe/London", "America/New_York"])
def test_the_rows_are_those_the_template_drew(zone):
    now = timezone.now()
    with timezone.override(zone):
        drawn = engines["django"].from_string(TEMPLATE_ROWS).render({"rows": rows(now)})
        written = "  " + identity_rows(rows(now)) + "\n"
    assert written == drawn


def test_no_identities_no_rows():
    assert identity_rows([]) == ""


@pytest.mark.django_db
def test_the_list_page_draws_its_rows_as_the_template_did(client):
    # given a bot with a long team, and one whose owner has left, seen through the page itself
    admin = with_role(PersonFactory(name="Admin Person"), "admin")
    MachineFactory(name="a-bot <x>", owner=PersonFactory(name="Bo"), team="t" * 70)
    MachineFactory(name="b-bot", owner=PersonFactory(name="Gone", status="offboarded"))
    client.force_login(admin.user)

    response = client.get(reverse("governance:identity_list"))

    page = response.context["page_obj"]
    drawn = engines["django"].from_string(TEMPLATE_ROWS).render({"rows": list(page)})
    assert drawn.strip() in response.content.decode()
