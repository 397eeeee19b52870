"""The dashboard's lists, written out in Python (jit/templatetags/dashboard_rows.py), draw what its template drew."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.template import engines
from django.utils import timezone

from governance.choices import GrantKind, GrantStatus
from jit.selectors import EntitlementNamed, IdentityNamed, PanelGrant, PanelNotice, PanelRequest, SystemNamed
from jit.templatetags.dashboard_rows import approval_rows, grant_rows, notice_rows, pending_rows

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)

# The lists as templates/portal/dashboard.html drew them with template tags, before `dashboard_rows`.
TEMPLATE_ROWS = {
    "grants": """{% load jit_tags %}{% for grant in rows %}
    <li><a href="{{ grant.url }}">{{ grant.entitlement.system.name }} / {{ grant.entitlement.name }}</a>{% if not grant.identity.is_human %} <small class="muted">for {{ grant.identity.name }}</small>{% endif %} — <span class="time-left{% if grant|expires_soon %} soon{% endif %}">{% if grant.expires_at %}{{ grant|timeleft }} left{% else %}standing{% endif %}</span></li>
  {% endfor %}""",
    "pending": """{% load jit_tags %}{% for req in rows %}
    <li><a href="{{ req.url }}">{{ req }}</a>: {{ req.entitlement.system.name }} / {{ req.entitlement.name }} for {{ req.beneficiary.name }} <small class="muted">waiting {{ req.created_at|timesince }} · {% include "jit/_time_out.html" %}</small></li>
  {% endfor %}""",
    "approvals": """{% load jit_tags %}{% for req in rows %}
    <li><a href="{{ req.url }}">{{ req }}</a>: {{ req.entitlement.system.name }} / {{ req.entitlement.name }} <span class="badge risk-{{ req.entitlement.risk_tier }}">{{ req.entitlement.get_risk_tier_display }}</span> for {{ req.beneficiary.name }}</li>
  {% endfor %}""",
    "notices": """{% load jit_tags %}{% for note in rows %}
    <li>{% if note.link %}<a href="{{ notices }}?open={{ note.pk }}">{{ note.subject }}</a>{% else %}{{ note.subject }}{% endif %} <small class="muted">{{ note.created_at|when }}</small></li>
  {% endfor %}""",
}

ODD = 'O\'Brien & <co> "x"'


def entitlement(i: int, risk_tier: str = "low") -> EntitlementNamed:
    return EntitlementNamed(f"role-{i} {ODD}", SystemNamed(f"System {i} <&>"), risk_tier)


def grants() -> list[PanelGrant]:
    def grant(i, kind, expires_at, holder_kind="human", status=GrantStatus.ACTIVE):
        holder = IdentityNamed(f"holder-{i} {ODD}", holder_kind)
        return PanelGrant(i, f"/inventory/grants/{i}/", status, kind, expires_at, entitlement(i), holder)

    return [
        grant(1, GrantKind.JIT, NOW + timedelta(minutes=20)),  # soon
        grant(2, GrantKind.JIT, NOW + timedelta(hours=3, minutes=5), "service_account"),
        grant(3, GrantKind.STANDING, None, "api_key"),
        grant(4, GrantKind.JIT, NOW - timedelta(minutes=1)),  # past its expiry, the sweep not there yet
        grant(5, GrantKind.JIT, NOW + timedelta(days=3), status=GrantStatus.PENDING_PROVISION),
        grant(6, GrantKind.JIT, NOW + timedelta(seconds=20), "workload"),
    ]


def requests() -> list[PanelRequest]:
    def request(i, created_at, risk_tier, kind="human"):
        beneficiary = IdentityNamed(f"beneficiary-{i} {ODD}", kind)
        return PanelRequest(i, f"/access/requests/{i}/", created_at, None, None, entitlement(i, risk_tier), beneficiary)

    return [
        request(1, NOW - timedelta(minutes=3), "low"),
        request(2, NOW - timedelta(hours=71, minutes=30), "medium", "ai_agent"),  # times out within the hour
        request(3, NOW - timedelta(hours=73), "high"),  # past its time-out
        request(4, NOW - timedelta(days=2, hours=5), "critical", "service_account"),
        request(5, NOW, "made-up <tier>"),
    ]


def notices() -> list[PanelNotice]:
    return [
        PanelNotice(1, f"Approval needed: {ODD}", "/access/approvals/", NOW - timedelta(minutes=5)),
        PanelNotice(1234, "Bob was offboarded", "", NOW - timedelta(days=9)),
        PanelNotice(3, "Just now", "/x/", NOW),
    ]


@pytest.mark.parametrize(
    "name, written, rows, extra",
    [
        ("grants", grant_rows, grants, ()),
        ("pending", pending_rows, requests, ()),
        ("approvals", approval_rows, requests, ()),
        ("notices", notice_rows, notices, ("/access/notifications/?a=1&b=<2>",)),
    ],
)
@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/St_Johns"])
def test_the_rows_are_what_the_template_drew(name, written, rows, extra, zone):
    template = engines["django"].from_string(TEMPLATE_ROWS[name])
    with time_machine.travel(NOW, tick=False), timezone.override(zone):
        context = {"rows": rows(), **({"notices": extra[0]} if extra else {})}
        assert written(rows(), *extra) == template.render(context)
