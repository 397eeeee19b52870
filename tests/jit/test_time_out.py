"""When a pending request times out is worded by one tag (`jit_tags.time_out`) for every page that shows it."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import time_machine
from django.conf import settings
from django.template import engines
from django.template.loader import render_to_string
from django.utils import timezone

from jit.templatetags.jit_tags import time_out

# jit/_time_out.html as it was, drawn by template filters, before the tag.
TEMPLATE = (
    '{% load jit_tags %}{% with ends=req|times_out_at %}<span class="time-left{% if ends|expires_soon %} soon{% endif %}"'
    ' title="{{ ends|date:\'Y-m-d H:i T\' }}">{% with left=ends|timeleft %}{% if left == "expired" %}timing out now'
    "{% else %}times out in {{ left }}{% endif %}{% endwith %}</span>{% endwith %}\n"
)
NOW = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)  # the night before the clocks change in Europe


@pytest.mark.parametrize("zone", ["UTC", "Europe/London", "Pacific/Chatham"])
@pytest.mark.parametrize(
    "waited", [timedelta(0), timedelta(hours=30), settings.JIT_TIMEOUT_AFTER - timedelta(minutes=5), timedelta(days=9)]
)
def test_the_tag_draws_what_the_template_drew(zone, waited):
    req = SimpleNamespace(created_at=NOW - waited)
    with time_machine.travel(NOW, tick=False), timezone.override(zone):
        drawn = engines["django"].from_string(TEMPLATE).render({"req": req})
        assert time_out(req) + "\n" == drawn
        assert render_to_string("jit/_time_out.html", {"req": req}) == drawn


def test_a_request_past_its_time_is_timing_out_now_and_marked_soon():
    req = SimpleNamespace(created_at=NOW - settings.JIT_TIMEOUT_AFTER - timedelta(minutes=1))
    with time_machine.travel(NOW, tick=False):
        assert time_out(req).startswith('<span class="time-left soon"') and "timing out now" in time_out(req)
