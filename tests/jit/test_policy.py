"""The policy engine is a pure function: these tests need no database."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from jit.policy import PolicyInput, SodRuleFacts, evaluate

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BASE = PolicyInput(
    requester_is_beneficiary=True,
    requester_owns_beneficiary=False,
    requester_is_machine=False,
    beneficiary_kind="human",
    beneficiary_status="active",
    beneficiary_may_self_request=False,
    entitlement_id=1,
    entitlement_live=True,
    entitlement_requestable=True,
    entitlement_owner_active=True,
    risk_tier="medium",
    allowed_kinds=("human", "service_account"),
    stages=({"approver": "entitlement_owner", "quorum": 1},),
    auto_approve_machines=False,
    justification_required=True,
    ticket_required=False,
    max_duration=timedelta(days=1),
    default_duration=timedelta(hours=8),
    duration=timedelta(hours=2),
    justification="because",
    ticket="",
    intent="",
    start_at=None,
    now=NOW,
    held_entitlement_ids=frozenset(),
    sod_rules=(),
)


def test_a_plain_request_is_allowed_and_routed_to_the_entitlement_owner():
    decision = evaluate(BASE)
    assert decision.allowed and decision.stages == [{"approver": "entitlement_owner", "quorum": 1}]
    assert decision.duration_seconds == 7200 and decision.max_duration_seconds == 86400


def test_duration_above_the_maximum_is_refused_with_the_maximum_named():
    decision = evaluate(replace(BASE, duration=timedelta(days=2)))
    assert not decision.allowed
    assert decision.field_errors["duration"] == ["The maximum duration for this entitlement is 24 hours."]


def test_missing_justification_or_ticket_is_refused():
    decision = evaluate(replace(BASE, justification="  ", ticket_required=True))
    assert set(decision.field_errors) == {"justification", "ticket"}


def test_default_duration_is_capped_by_the_maximum():
    decision = evaluate(replace(BASE, duration=None, default_duration=timedelta(days=3)))
    assert decision.allowed and decision.duration_seconds == 86400


def test_suspended_beneficiary_and_foreign_identity_are_refused():
    assert "suspended" in evaluate(replace(BASE, beneficiary_status="suspended")).reasons[0]
    decision = evaluate(replace(BASE, requester_is_beneficiary=False))
    assert decision.field_errors["beneficiary"] == ["You may request only for yourself or for an identity you own."]


def test_entitlement_without_active_owner_cannot_be_requested():
    assert not evaluate(replace(BASE, entitlement_owner_active=False)).allowed


def test_critical_risk_needs_a_quorum_of_two():
    decision = evaluate(replace(BASE, risk_tier="critical", min_quorum=2))
    assert decision.stages[-1]["quorum"] == 2


def test_sod_conflict_blocks_or_adds_a_stage():
    rule = SodRuleFacts(7, "Pay and approve", frozenset({1, 2}), "extra_stage", "high")
    decision = evaluate(replace(BASE, held_entitlement_ids=frozenset({2}), sod_rules=(rule,)))
    assert decision.allowed and decision.sod_conflicts[0]["rule"] == 7
    assert decision.stages[-1]["reason"] == "SoD: Pay and approve"
    blocked = evaluate(replace(BASE, held_entitlement_ids=frozenset({2}), sod_rules=(replace(rule, action="block"),)))
    assert not blocked.allowed
    # not held: no conflict
    assert not evaluate(replace(BASE, sod_rules=(rule,))).sod_conflicts


def test_machine_identity_low_risk_is_approved_automatically_only_when_allowed():
    machine = replace(
        BASE,
        beneficiary_kind="service_account",
        requester_is_beneficiary=False,
        requester_owns_beneficiary=True,
        risk_tier="low",
        auto_approve_machines=True,
    )
    assert evaluate(machine).auto_approve
    assert not evaluate(replace(machine, risk_tier="medium")).auto_approve
    assert not evaluate(replace(machine, beneficiary_kind="human", requester_is_beneficiary=True)).auto_approve
    assert not evaluate(replace(machine, requester_controls_entitlement=True)).auto_approve


def test_repeated_renewals_require_step_up():
    renewal = replace(BASE, is_renewal=True, renewals_in_window=3)
    decision = evaluate(renewal)
    assert decision.step_up and decision.stages[-1]["reason"].startswith("Step-up")
    assert evaluate(replace(BASE, is_renewal=True, cumulative_active=timedelta(days=15))).step_up
    assert not evaluate(replace(BASE, is_renewal=True, renewals_in_window=1)).step_up


def test_start_must_be_within_bounds():
    assert "start_at" in evaluate(replace(BASE, start_at=NOW + timedelta(days=30))).field_errors
    assert "start_at" in evaluate(replace(BASE, start_at=NOW - timedelta(hours=1))).field_errors
    assert evaluate(replace(BASE, start_at=NOW + timedelta(days=1))).allowed


def test_agent_may_request_for_itself_only_when_allowed():
    agent = replace(BASE, beneficiary_kind="ai_agent", requester_is_machine=True, allowed_kinds=("ai_agent",))
    assert not evaluate(agent).allowed
    assert evaluate(replace(agent, beneficiary_may_self_request=True)).allowed


def test_an_extension_may_not_outrun_one_grants_maximum_from_now():
    renewal = replace(BASE, is_renewal=True, renewal_time_left=timedelta(hours=23), duration=timedelta(hours=2))
    decision = evaluate(renewal)
    assert not decision.allowed
    assert decision.field_errors["duration"] == [
        "This grant still has 23 hours left and may run at most 24 hours from now; extend it by at most 1 hour."
    ]
    assert evaluate(replace(renewal, duration=timedelta(hours=1))).allowed


def test_a_persons_intent_is_no_justification_but_a_machines_declared_task_is():
    person = replace(BASE, justification="", intent="rotate the keys")
    assert evaluate(person).field_errors["justification"]
    machine = replace(person, requester_is_machine=True, beneficiary_kind="service_account")
    assert "justification" not in evaluate(machine).field_errors


def test_only_a_machine_declares_a_delegation_chain():
    decision = evaluate(replace(BASE, has_delegation_chain=True))
    assert decision.field_errors["delegation_chain"] == [
        "Only a machine identity acting for someone declares a delegation chain."
    ]


@pytest.mark.parametrize(
    ("delta", "said"),
    [
        (timedelta(days=7), "7 days"),
        (timedelta(hours=24), "24 hours"),
        (timedelta(minutes=30), "30 minutes"),
        (timedelta(hours=1, minutes=30), "1 hour 30 minutes"),
        (timedelta(hours=48, minutes=45), "2 days 45 minutes"),
    ],
)
def test_durations_are_said_without_dropping_minutes(delta, said):
    from jit.policy import human_duration

    assert human_duration(delta) == said


@pytest.mark.parametrize(("typed", "hours"), [("1.500", "1.5"), ("0.010", "0.01"), ("2", "2"), ("100", "100")])
def test_hours_typed_with_trailing_zeros_are_the_same_hours(typed, hours):
    from decimal import Decimal

    from jit.forms import duration_hours_field

    assert duration_hours_field("Duration").clean(typed) == Decimal(hours)


@pytest.mark.parametrize(
    ("delta", "shown"),
    [
        (timedelta(minutes=30), "30 min"),
        (timedelta(hours=1, minutes=30), "1 h 30 min"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(days=7), "7 days"),
    ],
)
def test_pages_show_durations_without_a_zero_hour(delta, shown):
    from governance.templatetags.grant_tags import duration

    assert duration(delta) == shown
