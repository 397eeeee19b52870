"""The request pages use the inventory's display helpers (`{% load jit_tags %}` = `{% load grant_tags %}`)."""

from datetime import datetime

from django.conf import settings
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from audit.kernel import clock
from audit.kernel.html import html_text
from audit.templatetags.times import stamp
from governance.templatetags.grant_tags import expires_soon, register, timeleft

__all__ = ["register"]


@register.filter
def times_out_at(request) -> datetime:
    """When a pending request times out if nobody decides it."""
    return request.created_at + settings.JIT_TIMEOUT_AFTER


@register.simple_tag
def time_out(request) -> SafeString:
    """When a pending request times out, as every page words it (the request's page and list, the queue's
    cards, the dashboard): "times out in 2 d 3 h" or "timing out now", the moment on hover, marked when soon."""
    ends = times_out_at(request)
    left = timeleft(ends)
    words = "timing out now" if left == "expired" else f"times out in {left}"
    title = stamp(timezone.localtime(ends), seconds=False, zone=True)  # = |date:"Y-m-d H:i T"
    soon = " soon" if expires_soon(ends) else ""
    return mark_safe(f'<span class="time-left{soon}" title="{html_text(title)}">{html_text(words)}</span>')


#
# Intent and delegation chains (issue 14)
#
KIND_WORDS = {
    "human": "person",
    "ai_agent": "agent",
    "service_account": "service account",
    "workload": "workload",
    "api_key": "API key",
}


@register.filter
def intent_summary(request) -> str:
    """The declared intent in words: "Task T-123: read on db/orders: nightly reconciliation"."""
    task, action, resource = request.intent_task, request.intent_action, request.intent_resource
    what = f"{action} on {resource}" if action and resource else action or (f"on {resource}" if resource else "")
    parts = [f"Task {task}" if task else "", what, request.intent]
    return ": ".join(part for part in parts if part)


@register.filter
def on_behalf_of(chain) -> str:
    """A verified chain, initiator first: "Alice (person) → orchestrator-7 (agent) → worker-3 (agent, caller)".

    Requests made before chains were verified kept free text: shown as it was given."""
    hops = [hop for hop in chain or () if isinstance(hop, dict)]
    if not hops:
        return ", ".join(str(hop) for hop in chain or ())
    ends = [hops[0]["from"], *(hop["to"] for hop in hops)]
    words = [f"{end['name']} ({KIND_WORDS.get(end['kind'], end['kind'])})" for end in ends]
    last = ends[-1]
    words[-1] = f"{last['name']} ({KIND_WORDS.get(last['kind'], last['kind'])}, caller)"
    return " → ".join(words)


@register.filter
def delegation_status(delegation) -> str:
    """active, expired or revoked, as of now (the process's clock: a read)."""
    return delegation.status_at(clock.now())
