"""The approval queue's cards (templates/jit/_queue_results.html, jit/_queue_row.html), written out in Python.

A card shows some 60 values (the request, the beneficiary, what they hold, conflicts, earlier stages, past
requests, the decision form). Drawn by template tags, a card cost ~1 ms (every value looked up, escaped and
localised, loops and ifs over the same attributes), a page of twenty more than the rest of the request
together. Here a card costs ~60 µs. The markup, whitespace included, is what the template drew: keep it so
(tests/jit/test_queue_cards.py compares the two). The words on a card are worked out by the selector
(`jit.selectors_queue.queue_cards`); this only places them.

`{% load queue_cards %}`, then `{% queue_cards page_obj.object_list querystring may_read_inventory %}` for a
page, or `{% queue_card req form querystring may_read_inventory %}` for one card again with its refused form.
"""

from collections.abc import Iterable

from django import template
from django.template.defaultfilters import stringformat, truncatechars
from django.template.defaulttags import CsrfTokenNode
from django.utils.safestring import SafeString, mark_safe

from audit.kernel.html import html_text as h
from audit.templatetags.times import when
from governance.templatetags.grant_tags import approver_label, duration, person

from .jit_tags import on_behalf_of

register = template.Library()


@register.simple_tag(takes_context=True)
def queue_cards(context, cards: Iterable, querystring: str = "", may_read_inventory: bool = False) -> SafeString:
    """A page's cards, each with its decision form (no refused decision: `form` None)."""
    csrf = CsrfTokenNode().render(context)
    return mark_safe("".join(_card(req, None, csrf, querystring, may_read_inventory) for req in cards))


@register.simple_tag(takes_context=True)
def queue_card(context, req, form=None, querystring: str = "", may_read_inventory: bool = False) -> SafeString:
    """One card, shown again in place with its refused decision's `form` and errors."""
    return mark_safe(_card(req, form, CsrfTokenNode().render(context), querystring, may_read_inventory))


def _card(req, form, csrf: str, querystring: str, may_read_inventory: bool) -> str:
    pk = req.pk
    conflict_class = " has-conflict" if req.conflicts else ""
    return (
        f'\n<article id="req-{pk}" class="queue-row{conflict_class}" aria-labelledby="req-{pk}-title">'
        f"\n  {_header(req)}"
        f"\n  {_conflicts(req)}"
        '\n  <div class="grid queue-context">'
        f"\n    {_facts(req, may_read_inventory)}"
        f"\n    {_context(req, may_read_inventory)}"
        "\n  </div>"
        f"\n  {_form(req, form, csrf, querystring)}"
        "\n</article>\n"
    )


def _header(req) -> str:
    pk, name = req.pk, h(str(req))
    checked = " checked" if req.is_selected else ""
    note = f'<small class="muted">{h(req.stage_note)}</small>' if req.stage_note else ""
    deputy = "".join(
        f'<small class="badge status-pending">As deputy for {h(person(absence.approver))}'
        f" (away until {h(when(absence.ends_at, 'exact'))})</small>"
        for absence in req.deputy_for
    )
    return (
        "<header>"
        f'\n    <span class="queue-select"><input type="checkbox" name="selected" value="{pk}:{h(req.current_position)}"'
        f' form="bulk-form" id="select-{pk}"{checked}><label for="select-{pk}">Select'
        f' <span class="visually-hidden">{name}</span></label></span>'
        f'\n    <strong id="req-{pk}-title"><a href="{h(req.url)}">{name}</a>: {h(req.entitlement_label)}</strong>'
        f'\n    <span class="badge risk-{h(req.entitlement.risk_tier)}">{h(req.risk_label)}</span>'
        f"\n    {note}"
        f"\n    {deputy}"
        "\n  </header>"
    )


def _request_named(request) -> str:
    """Another request, linked when I may open it."""
    return f'<a href="{h(request.url)}">{h(str(request))}</a>' if request.linkable else h(str(request))


def _other(other) -> str:
    """What a conflict's request completes the rule with: another request, or what is held."""
    entitlement = f"{h(other.entitlement.system_name)} / {h(other.entitlement.name)}"
    if other.request:
        state = "also pending" if other.state == "pending" else h(other.state)
        return f"{_request_named(other.request)} ({entitlement}, {state})"
    held = "just approved, being provisioned" if other.state == "being provisioned" else "held now"
    return f"{entitlement} ({held})"


def _conflicts(req) -> str:
    if not req.conflicts:
        return ""
    items = []
    for conflict in req.conflicts:
        rule = conflict.rule
        others = " and ".join(_other(other) for other in conflict.others)
        outcome = ": the rule forbids holding both" if rule.action == "block" else ": it needs an extra approval"
        together = " Approving both breaks it; decide them together." if conflict.pending_requests else ""
        items.append(
            f"\n      <li>Together with {others},"
            f"\n      this request breaks <strong>{h(rule.name)}</strong>"
            f' <span class="badge risk-{h(rule.severity)}">{h(rule.get_severity_display())}</span>{outcome}.{together}'
            "\n      </li>\n    "
        )
    return (
        '\n  <div class="queue-conflict" role="note" aria-label="Separation-of-duties conflict">'
        "\n    <strong>Separation of duties.</strong>"
        '\n    <ul class="compact">'
        f"\n    {''.join(items)}"
        "\n    </ul>"
        "\n  </div>\n  "
    )


def _facts(req, may_read_inventory: bool) -> str:
    """Who asked, how long it waited, for whom, for how long, from when and why."""
    beneficiary = h(req.beneficiary.name)
    if may_read_inventory:
        beneficiary = f'<a href="{h(req.beneficiary_url)}">{beneficiary}</a>'
    manager = ""
    if req.beneficiary_manager is not None:
        manager = f"<li>Manager: {h(req.beneficiary_manager)}</li>"
    shortened = ""
    if req.shortened:
        shortened = (
            f' <small class="muted">(asked {h(req.asked_duration_words)}; shortened at an earlier stage)</small>'
        )
    extension = " (extension)" if req.renewal_of_id else ""
    ticket = f" · ticket {h(req.ticket)}" if req.ticket else ""
    intent = ""
    if req.intent_shown is not None:
        intent = f'<dt>Intent</dt><dd class="intent">{h(req.intent_shown)}</dd>'
    chain = ""
    if req.delegation_chain:
        chain = f'<dt>On behalf of</dt><dd class="delegation-chain">{h(on_behalf_of(req.delegation_chain))}</dd>'
    return (
        "<dl>"
        f"\n      <dt>Asked by</dt><dd>{h(req.asked_by)}, {h(req.asked_at)}</dd>"
        f"\n      <dt>Waiting</dt><dd>{h(req.waited)} · {req.times_out}</dd>"
        f'\n      <dt>For</dt><dd>{beneficiary} <small class="muted">{h(req.beneficiary_kind)}</small>'
        '\n        <ul class="compact beneficiary-facts">'
        f"\n          <li>Team: {h(req.beneficiary_team)}</li>"
        f"\n          {manager}"
        '\n          <li>Title: <span class="muted">the inventory records no job title</span></li>'
        f"\n          <li>Last active: {h(req.beneficiary_last_active)}</li>"
        "\n        </ul>"
        "\n      </dd>"
        f"\n      <dt>Duration</dt><dd>{h(req.duration_words)}{shortened}{extension}</dd>"
        f"\n      <dt>Starts</dt><dd>{h(req.starts)}</dd>"
        f"\n      <dt>Justification</dt><dd>{h(req.justification_shown)}{ticket}</dd>"
        f"\n      {intent}"
        f"\n      {chain}"
        "\n    </dl>"
    )


def _findings(req) -> str:
    if not (req.conflicts or req.submission_conflicts):
        return "None"
    live = "".join(f'<span class="badge risk-{h(c.rule.severity)}">{h(c.rule.name)}</span> ' for c in req.conflicts)
    earlier = "".join(
        f'<span class="badge risk-{h(c.get("severity", ""))}">{h(c.get("name", ""))}</span>'
        ' <small class="muted">(at submission)</small> '
        for c in req.submission_conflicts
    )
    return live + earlier


def _holding(holding) -> str:
    entitlement = holding.entitlement
    if holding.grant:
        grant = holding.grant
        if holding.state == "being provisioned":
            end = ", just approved: being provisioned"
        elif grant.expires_at:
            end = f", until {h(grant.until)}"
        else:
            end = ""
        # The template's branch for a grant ended on a new line; the one for a request did not.
        detail = f'<small class="muted">{h(grant.kind_label)}{end} · last used {h(grant.last_use)}</small>\n          '
    else:
        detail = f'<small class="muted">{_request_named(holding.request)} {h(holding.state)}</small>'
    return (
        f"\n        <li>{h(entitlement.label)}"
        f' <span class="badge risk-{h(entitlement.risk_tier)}">{h(entitlement.get_risk_tier_display())}</span>'
        f"\n          {detail}"
        "\n        </li>"
    )


def _holdings(req, may_read_inventory: bool) -> str:
    if not req.holdings:
        return "nothing"
    shown = "".join(_holding(holding) for holding in req.holdings_shown)
    more = ""
    if req.holdings_hidden:
        see_all = f': <a href="{h(req.beneficiary_url)}">see all</a>' if may_read_inventory else ""
        more = f'<small class="muted">{len(req.holdings)} in all{see_all}</small>'
    return f'<ul class="compact holdings">{shown}</ul>{more}'


def _approval(approval) -> str:
    verb = "approved" if approval.decision == "approve" else "denied"
    text = f"{verb} by {h(person(approval.approver))} {h(when(approval.decided_at))}"
    if approval.duration:
        text += f", for {h(duration(approval.duration))} only"
    if approval.start_at:
        text += f", from {h(when(approval.start_at, 'exact'))}"
    if approval.comment:
        text += f": “{h(truncatechars(approval.comment, 300))}”"
    else:
        text += " (no comment)"
    return text


def _earlier_stages(req) -> str:
    if not req.earlier_stages:
        return ""
    stages = "".join(
        f"\n        <li>Stage {stage.position} ({h(approver_label(stage.approver_source))}): "
        f"{'; '.join(_approval(approval) for approval in stage.decisions) or 'decided'}</li>"
        for stage in req.earlier_stages
    )
    return f'<dt>Earlier stages</dt><dd><ul class="compact earlier-stages">{stages}</ul></dd>'


def _past_requests(req) -> str:
    past = req.past_requests
    if not past:
        return "none"
    items = "".join(
        f"<li>{_request_named(other)}: {h(other.entitlement.label)}"
        f' <span class="badge status-{h(other.status)}">{h(other.get_status_display())}</span></li>'
        for other in past
    )
    more = f'<small class="muted">{req.past_request_count} in all</small>' if req.past_request_count > len(past) else ""
    return f'<ul class="compact">{items}</ul>{more}'


def _context(req, may_read_inventory: bool) -> str:
    """What the approver weighs beside the request: conflicts, what the beneficiary holds, earlier stages."""
    step_up = "<dt>Step-up</dt><dd><strong>renewed repeatedly</strong></dd>" if req.policy.get("step_up") else ""
    return (
        "<dl>"
        f"\n      <dt>SoD findings</dt><dd>{_findings(req)}</dd>"
        f"\n      {step_up}"
        f"\n      <dt>Holds now</dt><dd>{_holdings(req, may_read_inventory)}</dd>"
        f"\n      {_earlier_stages(req)}"
        f"\n      <dt>Past requests</dt><dd>{_past_requests(req)}</dd>"
        "\n    </dl>"
    )


def _errors(errors, tag: str, ident: str = "") -> str:
    """A field's errors, each announced (`role="alert"`), beside the field `ident` names."""
    attribute = f' id="{ident}"' if ident else ""
    return "".join(f'<{tag} class="field-error"{attribute} role="alert">{h(error)}</{tag}>' for error in errors)


def _invalid(form, name: str, ident: str) -> str:
    if form and form[name].errors:
        return f' aria-invalid="true" aria-describedby="{ident}"'
    return ""


def _form(req, form, csrf: str, querystring: str) -> str:
    """The card's own decision: a comment, approve or deny; less time or a later start folded away."""
    pk, url = req.pk, h(req.decide_url)
    non_field = _errors(form.non_field_errors(), "p") if form else ""
    comment = h(form["comment"].value() or "") if form else ""
    comment_errors = _errors(form["comment"].errors, "small", f"comment-{pk}-error") if form else ""
    decision_errors = _errors(form["decision"].errors, "small") if form else ""
    opened = ""
    if form and (
        form["duration_minutes"].errors
        or form["start_at"].errors
        or form["duration_minutes"].value()
        or form["start_at"].value()
    ):
        opened = " open"
    duration_errors = _errors(form["duration_minutes"].errors, "small", f"duration-{pk}-error") if form else ""
    return (
        f'<form method="post" action="{url}" hx-post="{url}" hx-target="#req-{pk}" hx-swap="outerHTML"'
        f' aria-label="Decide on {h(str(req))}">'
        f"\n    {csrf}"
        f'\n    <input type="hidden" name="query" value="{h(querystring)}">'
        f'\n    <input type="hidden" name="stage_position" value="{h(req.current_position)}">'
        '\n    <input type="hidden" name="time_zone" value="">'
        f"\n    {non_field}"
        f'\n    <label for="comment-{pk}">Comment (required to deny)</label>'
        f'\n    <textarea id="comment-{pk}" name="comment" rows="2" maxlength="4000"'
        f"{_invalid(form, 'comment', f'comment-{pk}-error')}>{comment}</textarea>"
        f"\n    {comment_errors}"
        f"\n    {decision_errors}"
        f'\n    <details class="approve-less"{opened}>'
        "\n      <summary>Less time, or a later start</summary>"
        '\n      <div class="grid">'
        "\n        <div>"
        f'\n          <label for="duration-{pk}">Approve for</label>'
        f'\n          <select id="duration-{pk}" name="duration_minutes"'
        f"{_invalid(form, 'duration_minutes', f'duration-{pk}-error')}>"
        f'\n            <option value="">As asked: {h(req.duration_words)}</option>'
        f"\n            {_shorter_options(req, form)}"
        "\n          </select>"
        f"\n          {duration_errors}"
        "\n        </div>"
        f"\n        {_start(req, form)}"
        "\n      </div>"
        "\n    </details>"
        '\n    <div class="grid">'
        '\n      <button type="submit" name="decision" value="approve">Approve</button>'
        '\n      <button type="submit" name="decision" value="deny" class="danger outline">Deny</button>'
        "\n    </div>"
        "\n  </form>"
    )


def _shorter_options(req, form) -> str:
    """The `<option>`s to approve for less time (`req.shorter`: minutes and words), the one the refused
    form asked for selected."""
    chosen = stringformat(form["duration_minutes"].value(), "s") if form else ""  # as |stringformat:"s"
    return "".join(
        f'<option value="{h(minutes)}"{" selected" if minutes == chosen else ""}>{h(words)}</option>'
        for minutes, words in req.shorter
    )


def _start(req, form) -> str:
    """A later start: not for an extension, which runs on from the grant it extends."""
    if req.renewal_of_id:
        return ""
    pk = req.pk
    errors = form["start_at"].errors if form else []
    value = h(form["start_at"].value() or "") if form else ""
    described = f"start-{pk}-help" + (f" start-{pk}-error" if errors else "")
    invalid = ' aria-invalid="true"' if errors else ""
    asked = "as asked, " if req.start_at else ""
    return (
        "<div>"
        f'\n          <label for="start-{pk}">Start no earlier than <small class="muted">(your time)</small></label>'
        f'\n          <input type="datetime-local" id="start-{pk}" name="start_at" value="{value}"'
        f' aria-describedby="{described}"{invalid}>'
        f'\n          <small id="start-{pk}-help" class="muted">Empty: {asked}{h(req.starts)}.</small>'
        f"\n          {_errors(errors, 'small', f'start-{pk}-error')}"
        "\n        </div>"
    )
