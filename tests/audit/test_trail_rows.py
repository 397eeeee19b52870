"""The trail's rows and filter inputs, written out in Python, draw what Django's templates drew."""

from datetime import UTC, datetime

import pytest
from django import forms
from django.template import engines

from audit.choices import ActorType, AuditAction, Channel
from audit.filters import MomentInput
from audit.kernel.widgets import QuickCheckboxInput, QuickHiddenInput, QuickTextInput
from audit.models import AuditEvent
from audit.sentences import describe
from audit.templatetags.trail_rows import trail_rows

pytestmark = pytest.mark.django_db

# The rows as templates/audit/_event_list.html drew them with template tags, before `trail_rows`.
TEMPLATE_ROWS = """{% load times %}{% for item in events %}{% with e=item.event %}
    <tr id="event-{{ e.seq }}">
      <td class="trail-seq">{{ e.seq }}</td>
      <td class="trail-when">{{ e.occurred_at|when:"exact-seconds" }}</td>
      <td class="trail-body">
        <p class="trail-sentence">{{ item.sentence }}</p>
        {% if item.fields %}<dl class="trail-fields">{% for f in item.fields %}<div><dt>{{ f.label }}</dt><dd>{{ f.value }}</dd></div>{% endfor %}</dl>{% endif %}
        {% if item.changes %}
        <details class="trail-changes"><summary>{% if item.changed %}What changed{% else %}What was set{% endif %} ({{ item.changes|length }})</summary>
          <table>
            <thead><tr><th scope="col">Field</th>{% if item.changed %}<th scope="col">Before</th><th scope="col">After</th>{% else %}<th scope="col">Value</th>{% endif %}</tr></thead>
            <tbody>{% for c in item.changes %}<tr><th scope="row">{{ c.label }}</th>{% if item.changed %}<td>{{ c.before }}</td>{% endif %}<td>{{ c.after }}</td></tr>{% endfor %}</tbody>
          </table>
        </details>
        {% endif %}
        {% if trail_url %}<p class="trail-meta"><small>{% if item.target_key %}<a href="{{ trail_url }}?target={{ item.target_key|urlencode }}">every event about {{ item.target_text }}</a>{% endif %}{% if e.correlation_id %}{% if item.target_key %} · {% endif %}<a href="{{ trail_url }}?correlation_id={{ e.correlation_id|urlencode }}" title="correlation id {{ e.correlation_id }}">same operation</a>{% endif %}</small></p>{% endif %}
      </td>
      <td class="trail-actor">{{ e.actor_label }}<br><small class="muted">{{ item.channel_label }}{% if e.client_ip %} · {{ e.client_ip }}{% endif %}</small></td>
      <td class="trail-action"><code title="{{ item.action_label }}">{{ e.action }}</code></td>
    </tr>
  {% endwith %}{% endfor %}"""


def event(seq: int, **fields) -> AuditEvent:
    values = {
        "seq": seq,
        "occurred_at": datetime(2026, 3, 10, 9, 30, seq % 60, 123456, tzinfo=UTC),
        "actor_type": ActorType.SYSTEM,
        "actor_label": "system",
        "channel": Channel.TASK,
        "action": AuditAction.GRANT_EXPIRED,
        **fields,
    }
    return AuditEvent(**values)


EVENTS = [
    event(1),
    event(2, target_type="governance.grant", target_id="7", target_label='Grant <7> & "co"'),
    event(3, correlation_id="op/1 <x>&y", client_ip="10.0.0.1", channel="pager", action="made.up <action>"),
    event(
        4,
        target_type="weird type",
        target_id="a b/c?d",
        target_label="odd",
        correlation_id="c-1",
        actor_label="ops <bot>",
        data={"before": {"name": "old <n>", "risk_tier": "low"}, "after": {"name": "new & n", "risk_tier": "high"}},
    ),
    event(5, data={"after": {"name": "set <n>", "reason": "why & not"}, "reason": "'quoted'", "count": 3}),
    event(6, data={"note": "<script>", "items": ["a", "<b>"], "empty": ""}, client_ip="::1"),
    event(1234567, actor_type=ActorType.USER, actor_user_id=999, actor_label="alice", channel=Channel.WEB),
]


@pytest.mark.parametrize("trail_url", ["/audit/", "", "/a&b/"])
def test_the_rows_are_those_the_template_drew(trail_url):
    described = describe(EVENTS)
    assert any(item.changes and item.changed for item in described)
    assert any(item.changes and not item.changed for item in described)
    drawn = engines["django"].from_string(TEMPLATE_ROWS).render({"events": described, "trail_url": trail_url})
    assert trail_rows(described, trail_url) == drawn


def test_no_events_no_rows():
    assert trail_rows([], "/audit/") == ""


@pytest.mark.parametrize(
    "widget",
    [
        QuickTextInput(),
        QuickTextInput(attrs={"placeholder": 'a "b" <c>', "data-x": True, "data-y": False}),
        QuickCheckboxInput(),
        QuickHiddenInput(attrs={"data-browser-time-zone": ""}),
        MomentInput(),
        MomentInput(end=True),
    ],
)
@pytest.mark.parametrize("value", [None, "", "plain", "<b>\"&'", True, False, "2026-03-10", "2026-03-10 09:30", 5])
def test_inputs_are_those_django_draws(widget, value):
    attrs = {"id": "id_x", "aria-describedby": "id_x_helptext", "required": True, "aria-invalid": False}
    # Django's own rendering of the same widget: its template (input.html, attrs.html) and context
    assert widget.render("x", value, attrs=attrs) == forms.Widget.render(widget, "x", value, attrs=attrs)
