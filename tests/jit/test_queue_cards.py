"""The approval queue's cards, written out in Python (jit/templatetags/queue_cards.py), draw what the template drew."""

import difflib
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import time_machine
from django.template import Context, engines
from django.urls import reverse
from django.utils.safestring import mark_safe

from governance.choices import GrantKind
from jit.forms_queue import QueueDecisionForm
from jit.selectors_queue import (
    Conflict,
    EntitlementShown,
    GrantShown,
    Holding,
    RequestShown,
    RuleShown,
    StageShown,
)
from jit.templatetags.queue_cards import _card
from tests.factories.governance import EntitlementFactory, GrantFactory, SodRuleFactory

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
ODD = 'O\'Brien & <co> "x"'
TOKEN = "the-csrf-token"
CSRF = f'<input type="hidden" name="csrfmiddlewaretoken" value="{TOKEN}">'

# A card as templates/jit/_queue_row.html drew it with template tags, before `queue_cards` (its options as
# the template's loop drew them, before a tag joined them).
TEMPLATE_CARD = """{% load jit_tags l10n %}{% localize off %}{# ids and counts as plain integers: what they print as anyway, without localising each (~25 a card) #}
<article id="req-{{ req.pk }}" class="queue-row{% if req.conflicts %} has-conflict{% endif %}" aria-labelledby="req-{{ req.pk }}-title">
  <header>
    <span class="queue-select"><input type="checkbox" name="selected" value="{{ req.pk }}:{{ req.current_position }}" form="bulk-form" id="select-{{ req.pk }}"{% if req.is_selected %} checked{% endif %}><label for="select-{{ req.pk }}">Select <span class="visually-hidden">{{ req }}</span></label></span>
    <strong id="req-{{ req.pk }}-title"><a href="{{ req.url }}">{{ req }}</a>: {{ req.entitlement_label }}</strong>
    <span class="badge risk-{{ req.entitlement.risk_tier }}">{{ req.risk_label }}</span>
    {% if req.stage_note %}<small class="muted">{{ req.stage_note }}</small>{% endif %}
    {% for absence in req.deputy_for %}<small class="badge status-pending">As deputy for {{ absence.approver|person }} (away until {{ absence.ends_at|when:"exact" }})</small>{% endfor %}
  </header>
  {% if req.conflicts %}
  <div class="queue-conflict" role="note" aria-label="Separation-of-duties conflict">
    <strong>Separation of duties.</strong>
    <ul class="compact">
    {% for conflict in req.conflicts %}
      <li>Together with {% for other in conflict.others %}{% if other.request %}{% if other.request.linkable %}<a href="{{ other.request.url }}">{{ other.request }}</a>{% else %}{{ other.request }}{% endif %} ({{ other.entitlement.system_name }} / {{ other.entitlement.name }}, {% if other.state == "pending" %}also pending{% else %}{{ other.state }}{% endif %}){% else %}{{ other.entitlement.system_name }} / {{ other.entitlement.name }} ({% if other.state == "being provisioned" %}just approved, being provisioned{% else %}held now{% endif %}){% endif %}{% if not forloop.last %} and {% endif %}{% endfor %},
      this request breaks <strong>{{ conflict.rule.name }}</strong> <span class="badge risk-{{ conflict.rule.severity }}">{{ conflict.rule.get_severity_display }}</span>{% if conflict.rule.action == "block" %}: the rule forbids holding both{% else %}: it needs an extra approval{% endif %}.{% if conflict.pending_requests %} Approving both breaks it; decide them together.{% endif %}
      </li>
    {% endfor %}
    </ul>
  </div>
  {% endif %}
  <div class="grid queue-context">
    <dl>
      <dt>Asked by</dt><dd>{{ req.asked_by }}, {{ req.asked_at }}</dd>
      <dt>Waiting</dt><dd>{{ req.waited }} · {# jit/_time_out.html, drawn by the selector (jit_tags.time_out) #}{{ req.times_out }}</dd>
      <dt>For</dt><dd>{% if may_read_inventory %}<a href="{{ req.beneficiary_url }}">{{ req.beneficiary.name }}</a>{% else %}{{ req.beneficiary.name }}{% endif %} <small class="muted">{{ req.beneficiary_kind }}</small>
        <ul class="compact beneficiary-facts">
          <li>Team: {{ req.beneficiary_team }}</li>
          {% if req.beneficiary_manager is not None %}<li>Manager: {{ req.beneficiary_manager }}</li>{% endif %}
          <li>Title: <span class="muted">the inventory records no job title</span></li>
          <li>Last active: {{ req.beneficiary_last_active }}</li>
        </ul>
      </dd>
      <dt>Duration</dt><dd>{{ req.duration_words }}{% if req.shortened %} <small class="muted">(asked {{ req.asked_duration_words }}; shortened at an earlier stage)</small>{% endif %}{% if req.renewal_of_id %} (extension){% endif %}</dd>
      <dt>Starts</dt><dd>{{ req.starts }}</dd>
      <dt>Justification</dt><dd>{# A list shows the start; the request's page shows all of it. #}{{ req.justification_shown }}{% if req.ticket %} · ticket {{ req.ticket }}{% endif %}</dd>
      {% if req.intent_shown is not None %}<dt>Intent</dt><dd class="intent">{{ req.intent_shown }}</dd>{% endif %}
      {% if req.delegation_chain %}<dt>On behalf of</dt><dd class="delegation-chain">{{ req.delegation_chain|on_behalf_of }}</dd>{% endif %}
    </dl>
    <dl>
      <dt>SoD findings</dt><dd>{% if req.conflicts or req.submission_conflicts %}{% for c in req.conflicts %}<span class="badge risk-{{ c.rule.severity }}">{{ c.rule.name }}</span> {% endfor %}{% for c in req.submission_conflicts %}<span class="badge risk-{{ c.severity }}">{{ c.name }}</span> <small class="muted">(at submission)</small> {% endfor %}{% else %}None{% endif %}</dd>
      {% if req.policy.step_up %}<dt>Step-up</dt><dd><strong>renewed repeatedly</strong></dd>{% endif %}
      <dt>Holds now</dt><dd>{% if req.holdings %}<ul class="compact holdings">{% for h in req.holdings_shown %}
        <li>{{ h.entitlement.label }} <span class="badge risk-{{ h.entitlement.risk_tier }}">{{ h.entitlement.get_risk_tier_display }}</span>
          {% if h.grant %}<small class="muted">{{ h.grant.kind_label }}{% if h.state == "being provisioned" %}, just approved: being provisioned{% elif h.grant.expires_at %}, until {{ h.grant.until }}{% endif %} · last used {{ h.grant.last_use }}</small>
          {% else %}<small class="muted">{% if h.request.linkable %}<a href="{{ h.request.url }}">{{ h.request }}</a>{% else %}{{ h.request }}{% endif %} {{ h.state }}</small>{% endif %}
        </li>{% endfor %}</ul>{% if req.holdings_hidden %}<small class="muted">{{ req.holdings|length }} in all{% if may_read_inventory %}: <a href="{{ req.beneficiary_url }}">see all</a>{% endif %}</small>{% endif %}{% else %}nothing{% endif %}</dd>
      {% if req.earlier_stages %}<dt>Earlier stages</dt><dd><ul class="compact earlier-stages">{% for stage in req.earlier_stages %}
        <li>Stage {{ stage.position }} ({{ stage.approver_source|approver_label }}): {% for approval in stage.decisions %}{% if approval.decision == "approve" %}approved{% else %}denied{% endif %} by {{ approval.approver|person }} {{ approval.decided_at|when }}{% if approval.duration %}, for {{ approval.duration|duration }} only{% endif %}{% if approval.start_at %}, from {{ approval.start_at|when:"exact" }}{% endif %}{% if approval.comment %}: “{{ approval.comment|truncatechars:300 }}”{% else %} (no comment){% endif %}{% if not forloop.last %}; {% endif %}{% empty %}decided{% endfor %}</li>{% endfor %}</ul></dd>{% endif %}
      <dt>Past requests</dt><dd>{% with past=req.past_requests %}{% if past %}<ul class="compact">{% for other in past %}<li>{% if other.linkable %}<a href="{{ other.url }}">{{ other }}</a>{% else %}{{ other }}{% endif %}: {{ other.entitlement.label }} <span class="badge status-{{ other.status }}">{{ other.get_status_display }}</span></li>{% endfor %}</ul>{% if req.past_request_count > past|length %}<small class="muted">{{ req.past_request_count }} in all</small>{% endif %}{% else %}none{% endif %}{% endwith %}</dd>
    </dl>
  </div>
  <form method="post" action="{{ req.decide_url }}" hx-post="{{ req.decide_url }}" hx-target="#req-{{ req.pk }}" hx-swap="outerHTML" aria-label="Decide on {{ req }}">
    {% csrf_token %}
    <input type="hidden" name="query" value="{{ querystring }}">
    <input type="hidden" name="stage_position" value="{{ req.current_position }}">
    <input type="hidden" name="time_zone" value="">
    {# `form`: the refused decision's, when this card alone is shown again; None on the page, so each use below asks it first (a dozen failed lookups a card otherwise) #}{% if form %}{% for error in form.non_field_errors %}<p class="field-error" role="alert">{{ error }}</p>{% endfor %}{% endif %}
    <label for="comment-{{ req.pk }}">Comment (required to deny)</label>
    <textarea id="comment-{{ req.pk }}" name="comment" rows="2" maxlength="4000"{% if form and form.comment.errors %} aria-invalid="true" aria-describedby="comment-{{ req.pk }}-error"{% endif %}>{% if form %}{{ form.comment.value|default:"" }}{% endif %}</textarea>
    {% if form %}{% for error in form.comment.errors %}<small class="field-error" id="comment-{{ req.pk }}-error" role="alert">{{ error }}</small>{% endfor %}{% endif %}
    {% if form %}{% for error in form.decision.errors %}<small class="field-error" role="alert">{{ error }}</small>{% endfor %}{% endif %}
    <details class="approve-less"{% if form %}{% if form.duration_minutes.errors or form.start_at.errors or form.duration_minutes.value or form.start_at.value %} open{% endif %}{% endif %}>
      <summary>Less time, or a later start</summary>
      <div class="grid">
        <div>
          <label for="duration-{{ req.pk }}">Approve for</label>
          <select id="duration-{{ req.pk }}" name="duration_minutes"{% if form and form.duration_minutes.errors %} aria-invalid="true" aria-describedby="duration-{{ req.pk }}-error"{% endif %}>
            <option value="">As asked: {{ req.duration_words }}</option>
            {% with chosen=form.duration_minutes.value|stringformat:"s" %}{% for minutes, words in req.shorter %}<option value="{{ minutes }}"{% if chosen == minutes %} selected{% endif %}>{{ words }}</option>{% endfor %}{% endwith %}
          </select>
          {% if form %}{% for error in form.duration_minutes.errors %}<small class="field-error" id="duration-{{ req.pk }}-error" role="alert">{{ error }}</small>{% endfor %}{% endif %}
        </div>
        {% if not req.renewal_of_id %}<div>
          <label for="start-{{ req.pk }}">Start no earlier than <small class="muted">(your time)</small></label>
          <input type="datetime-local" id="start-{{ req.pk }}" name="start_at" value="{% if form %}{{ form.start_at.value|default:'' }}{% endif %}" aria-describedby="start-{{ req.pk }}-help{% if form and form.start_at.errors %} start-{{ req.pk }}-error{% endif %}"{% if form and form.start_at.errors %} aria-invalid="true"{% endif %}>
          <small id="start-{{ req.pk }}-help" class="muted">Empty: {% if req.start_at %}as asked, {% endif %}{{ req.starts }}.</small>
          {% if form %}{% for error in form.start_at.errors %}<small class="field-error" id="start-{{ req.pk }}-error" role="alert">{{ error }}</small>{% endfor %}{% endif %}
        </div>{% endif %}
      </div>
    </details>
    <div class="grid">
      <button type="submit" name="decision" value="approve">Approve</button>
      <button type="submit" name="decision" value="deny" class="danger outline">Deny</button>
    </div>
  </form>
</article>{% endlocalize %}
"""


class Card(SimpleNamespace):
    """A card as `jit.selectors_queue.queue_cards` leaves it: the request's fields and the words it shows."""

    def __str__(self) -> str:
        return f"Request #{self.pk}"


def entitlement(i: int, risk_tier: str = "low") -> EntitlementShown:
    return EntitlementShown(i, f"role-{i} {ODD}", risk_tier, f"System {i} <&>")


def login(name: str) -> SimpleNamespace:
    return SimpleNamespace(identity=SimpleNamespace(name=name))


def other_request(pk: int, status: str = "pending", *, linkable: bool = True) -> RequestShown:
    return RequestShown(pk, status, linkable, f"/access/requests/{pk}/", entitlement(pk))


def card(pk: int = 7, **fields) -> Card:
    """A plain card: a person's first-stage request, nothing held, no conflict."""
    shown = {
        "pk": pk,
        "current_position": 1,
        "is_selected": False,
        "url": f"/access/requests/{pk}/",
        "decide_url": f"/access/approvals/{pk}/decide/",
        "beneficiary_url": "/inventory/identities/3/",
        "entitlement": entitlement(pk, "medium"),
        "entitlement_label": f"System {pk} <&> / role-{pk} {ODD}",
        "risk_label": "Medium",
        "stage_note": "",
        "deputy_for": [],
        "conflicts": [],
        "submission_conflicts": [],
        "asked_by": f"Alice {ODD}",
        "asked_at": '<time datetime="2026-03-10T08:00:00+00:00">2026-03-10 08:00</time>',
        "waited": "1\xa0hour, 30\xa0minutes",
        "times_out": mark_safe('<span class="time-left" title="2026-03-13 08:00 UTC">times out in 2 d 22 h</span>'),
        "beneficiary": SimpleNamespace(name=f"Alice {ODD}"),
        "beneficiary_kind": "Person",
        "beneficiary_team": "Payments & <co>",
        "beneficiary_manager": None,
        "beneficiary_last_active": "never recorded",
        "duration_words": "2 hours",
        "shortened": False,
        "asked_duration_words": "",
        "renewal_of_id": None,
        "starts": "as soon as approved",
        "start_at": None,
        "justification_shown": f"Fix incident 42 {ODD}",
        "ticket": "",
        "intent_shown": None,
        "delegation_chain": [],
        "policy": {},
        "holdings": [],
        "holdings_shown": [],
        "holdings_hidden": False,
        "earlier_stages": [],
        "past_requests": [],
        "past_request_count": 0,
        "shorter": [("15", "15 min"), ("30", "30 min"), ("60", "1 hour")],
    }
    return Card(**{**shown, **fields})


def held(i: int, state: str = "in force", **grant) -> Holding:
    values = {"kind": GrantKind.JIT, "expires_at": NOW + timedelta(hours=3), "last_used_at": None, **grant}
    return Holding(entitlement(i), state, grant=GrantShown(100 + i, **values))


def asked(i: int, state: str = "pending", *, linkable: bool = True) -> Holding:
    return Holding(entitlement(i), state, request=other_request(200 + i, linkable=linkable))


def cards() -> list[Card]:
    """A card down every branch of the template."""
    holdings = [
        held(1),
        held(2, kind=GrantKind.STANDING, expires_at=None, last_used_at=NOW - timedelta(days=2)),
        held(3, "being provisioned"),
        asked(4),
        asked(5, "approved, not started", linkable=False),
    ]
    many = [held(10 + i) for i in range(10)]
    block = RuleShown(1, f"Pay & approve {ODD}", "high", "block", (1, 7))
    flag = RuleShown(2, "Deploy and audit", "medium", "flag", (4, 8))
    approvals = [
        SimpleNamespace(
            decision="approve",
            approver=login(f"Ent {ODD}"),
            decided_at=NOW - timedelta(hours=1),
            duration=timedelta(hours=1),
            start_at=NOW + timedelta(days=1),
            comment="ok " + "long " * 80,
        ),
        SimpleNamespace(
            decision="deny", approver=login("Bob"), decided_at=NOW, duration=None, start_at=None, comment=""
        ),
    ]
    stages = [
        StageShown(1, 8, 1, "entitlement_owner", "", "approved", approvals),
        StageShown(2, 8, 2, "custom_thing", "", "approved", []),
    ]
    absence = SimpleNamespace(approver=login(f"Away {ODD}"), ends_at=NOW + timedelta(days=3))
    return [
        card(),
        card(
            8,
            is_selected=True,
            current_position=3,
            stage_note=f"stage 3 of 3 · the system's owner · {ODD}",
            deputy_for=[absence, absence],
            conflicts=[Conflict(block, [holdings[0]]), Conflict(flag, [holdings[3], holdings[4], holdings[2]])],
            submission_conflicts=[{"rule": 9, "name": f"Old rule {ODD}", "severity": "low"}],
            times_out=mark_safe('<span class="time-left soon" title="2026-03-13 08:00 UTC">timing out now</span>'),
            beneficiary_kind="Service account, owned by Bob, suspended",
            beneficiary_manager=f"Manager {ODD}",
            shortened=True,
            duration_words="1 hour",
            asked_duration_words="2 hours",
            renewal_of_id=5,
            ticket=f"INC-1 {ODD}",
            intent_shown=f"read <logs> {ODD}",
            delegation_chain=[
                {"from": {"name": f"Alice {ODD}", "kind": "human"}, "to": {"name": "orch", "kind": "ai_agent"}},
                {"from": {"name": "orch", "kind": "ai_agent"}, "to": {"name": "worker", "kind": "workload"}},
            ],
            policy={"step_up": True},
            holdings=holdings,
            holdings_shown=holdings,
            earlier_stages=stages,
            past_requests=[other_request(30, "denied"), other_request(31, "cancelled", linkable=False)],
            past_request_count=5,
        ),
        card(9, holdings=many, holdings_shown=many[:8], holdings_hidden=True, start_at=NOW, starts="from <then>"),
        card(10, submission_conflicts=[{"rule": 3}], delegation_chain=[f"free text {ODD}"], current_position=None),
        card(11, past_requests=[other_request(40)], past_request_count=1, intent_shown=""),
    ]


def assert_same(written: str, drawn: str) -> None:
    diff = difflib.unified_diff(drawn.splitlines(), written.splitlines(), "template", "written", lineterm="")
    assert written == drawn, "\n".join(diff)


def template_card(req, form=None, querystring: str = "", may_read_inventory: bool = False) -> str:
    context = {"req": req, "form": form, "querystring": querystring, "may_read_inventory": may_read_inventory}
    return engines["django"].from_string(TEMPLATE_CARD).template.render(Context({**context, "csrf_token": TOKEN}))


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("may_read_inventory", [True, False])
def test_each_card_is_what_the_template_drew(may_read_inventory):
    for req in cards():
        drawn = template_card(req, None, f"risk_tier=high&q={ODD}", may_read_inventory)
        assert_same(_card(req, None, CSRF, f"risk_tier=high&q={ODD}", may_read_inventory), drawn)


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    "data",
    [
        {"decision": "deny", "comment": "x" * 4001, "stage_position": "1"},
        {"decision": "approve", "stage_position": "1", "duration_minutes": "0", "comment": ODD},
        {"decision": "approve", "stage_position": "1", "start_at": "not a time", "duration_minutes": "30"},
        {"decision": "maybe", "stage_position": "x"},
    ],
)
def test_a_card_shown_again_with_its_refused_form_is_what_the_template_drew(data):
    form = QueueDecisionForm(data)
    assert not form.is_valid()
    form.add_error(None, f"Refused: {ODD}")
    for req in cards():
        assert_same(_card(req, form, CSRF, "", True), template_card(req, form, "", True))


@pytest.mark.django_db
def test_the_queue_pages_cards_are_what_the_template_drew(
    client, alice, entitlement, submit, ent_owner, sys_owner, make_user
):
    # given: a queue whose cards have holdings, a conflict, another pending request and an earlier stage
    from jit.services.approvals import access_request_decide

    make_user("approver1", roles=("approver",))  # the rule's extra stage
    held = EntitlementFactory(name=f"payments-approve {ODD}")
    GrantFactory(identity=alice, entitlement=held)
    SodRuleFactory(name=f"Write and approve {ODD}", entitlements=[held, entitlement])
    first = submit(entitlement, ticket="INC-9")
    submit(EntitlementFactory(owner=entitlement.owner, system=entitlement.system), justification=ODD)
    access_request_decide(request_id=first.pk, approver=ent_owner, decision="approve", comment=f"fine {ODD}")
    client.force_login(sys_owner)
    # when
    response = client.get(reverse("jit:approval_queue"), {"order": "newest"})
    # then
    cards_shown = response.context["page_obj"].object_list
    assert cards_shown
    content = response.content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', content)[1]
    may_read_inventory = response.context["may_read_inventory"]
    for req in cards_shown:
        drawn = template_card(req, None, "order=newest", may_read_inventory).replace(TOKEN, token)
        start = content.index(f'<article id="req-{req.pk}"') - 1
        assert_same(content[start : content.index("</article>", start) + len("</article>\n")], drawn)
