"""Automatic approval under conditions each entitlement's admins set (issue 14, item 6).

Each condition on its own: a low-risk machine request is approved automatically when it holds and
goes to people when it fails, and the snapshot and the audit trail say which.
"""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import Actor
from governance.choices import FindingKind, IdentityStatus, RiskTier
from governance.errors import ValidationFailed
from governance.forms import EntitlementForm
from governance.models import Finding, PolicyChange
from governance.services.catalogue import entitlement_update
from governance.services.grants import grant_confirm_revoked, grant_revoke
from jit.choices import RequestStatus
from jit.services.requests import access_request_cancel
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db

ALL_CONDITIONS = [
    "kind",
    "risk",
    "beneficiary_owner_active",
    "entitlement_owner_active",
    "findings",
    "duration",
    "intent",
    "rate",
    "no_sod_conflict",
    "no_step_up",
    "requester_not_owner",
]


@pytest.fixture
def auto(db):
    """Low risk, automatic approval on with the default conditions."""
    return EntitlementFactory(name="logs-read", risk_tier=RiskTier.LOW, auto_approve_machines=True)


@pytest.fixture
def ask(submit, alice_bot):
    """Alice asks for her bot, for 30 minutes unless told otherwise."""

    def do(entitlement, **kw):
        kw.setdefault("beneficiary", alice_bot)
        kw.setdefault("duration", timedelta(minutes=30))
        return submit(entitlement, **kw)

    return do


def failed(request) -> list[str]:
    return [c["condition"] for c in request.policy["auto_approval"] if not c["held"]]


def assert_automatic(request):
    assert request.status == RequestStatus.APPROVED, request.policy["auto_approval"]
    assert request.policy["auto_approve"] and not failed(request)


def assert_to_people(request, condition: str):
    assert request.status == RequestStatus.PENDING
    assert not request.policy["auto_approve"]
    assert failed(request) == [condition]
    assert request.stages.filter(status="pending").exists()


def set_conditions(entitlement, **conditions):
    for name, value in conditions.items():
        setattr(entitlement, name, value)
    entitlement.save()
    return entitlement


def end(request):
    """The grant ends (revoked and confirmed), so the same access may be asked for again."""
    grant_revoke(grant_id=request.grant_id, actor=Actor.system(), reason="done")
    grant_confirm_revoked(grant_id=request.grant_id, actor=Actor.system())


#
# The defaults: as automatic approval always was
#
def test_the_defaults_approve_a_low_risk_machine_request_and_say_which_conditions_held(ask, auto):
    request = ask(auto)

    assert_automatic(request)
    assert [c["condition"] for c in request.policy["auto_approval"]] == ALL_CONDITIONS
    event = AuditEvent.objects.get(action="request.auto_approved")
    assert [c["condition"] for c in event.data["conditions"]] == ALL_CONDITIONS
    assert all(c["held"] for c in event.data["conditions"])
    assert {
        "condition": "duration",
        "held": True,
        "detail": "duration 30 minutes <= 30 days (the entitlement's maximum)",
    } in event.data["conditions"]


def test_with_the_switch_off_no_condition_is_checked(ask):
    request = ask(EntitlementFactory(risk_tier=RiskTier.LOW))

    assert request.status == RequestStatus.PENDING and request.policy["auto_approval"] == []


#
# Each condition on its own
#
@pytest.mark.parametrize(
    ("kinds", "automatic"),
    [(["service_account"], True), (["workload", "ai_agent"], False), ([], None)],
    ids=["kind-listed", "kind-not-listed", "no-kind"],
)
def test_identity_kinds(ask, auto, kinds, automatic):
    if automatic is None:
        # an empty list with the switch on is refused when saved (the form and the API say so)
        auto.auto_approve_kinds = kinds
        with pytest.raises(Exception, match="at least one kind"):
            auto.full_clean()
        return
    request = ask(set_conditions(auto, auto_approve_kinds=kinds))
    if automatic:
        assert_automatic(request)
    else:
        assert_to_people(request, "kind")


def test_a_person_is_approved_automatically_only_when_people_are_a_listed_kind(submit, alice):
    entitlement = EntitlementFactory(risk_tier=RiskTier.LOW, auto_approve_machines=True)
    assert_to_people(submit(entitlement, duration=timedelta(minutes=30)), "kind")

    other = set_conditions(
        EntitlementFactory(risk_tier=RiskTier.LOW, auto_approve_machines=True), auto_approve_kinds=["human"]
    )
    assert_automatic(submit(other, duration=timedelta(minutes=30)))


@pytest.mark.parametrize(
    ("tier", "max_risk", "automatic"),
    [
        (RiskTier.MEDIUM, RiskTier.LOW, False),
        (RiskTier.MEDIUM, RiskTier.MEDIUM, True),
        (RiskTier.LOW, RiskTier.MEDIUM, True),
        (RiskTier.HIGH, RiskTier.MEDIUM, False),
    ],
    ids=["medium-above-low", "medium-at-medium", "low-below-medium", "high-above-medium"],
)
def test_risk_tier_at_most(ask, auto, tier, max_risk, automatic):
    request = ask(set_conditions(auto, risk_tier=tier, auto_approve_max_risk=max_risk))

    if automatic:
        assert_automatic(request)
    else:
        assert_to_people(request, "risk")


def test_raising_the_tier_later_switches_automatic_approval_off(ask, auto):
    entitlement_update(entitlement_id=auto.pk, actor=auto.owner.user, changes={"risk_tier": RiskTier.MEDIUM})

    assert_to_people(ask(auto), "risk")


def test_the_machines_owner_must_be_active(ask, auto, alice, alice_bot):
    # given the bot's owner suspended; its backup owner asks
    backup = PersonFactory()
    alice_bot.backup_owner = backup
    alice_bot.save()
    alice.status = IdentityStatus.SUSPENDED
    alice.save()

    request = ask(auto, actor=backup.user)

    assert_to_people(request, "beneficiary_owner_active")
    assert {"condition": "beneficiary_owner_active", "held": False, "detail": "no active owner"} in request.policy[
        "auto_approval"
    ]


def test_the_entitlements_owner_must_be_active(ask, auto):
    owner = auto.owner
    owner.status = IdentityStatus.SUSPENDED
    owner.save()

    # no active owner: not even a person may approve it, so it is refused outright
    with pytest.raises(ValidationFailed, match="no active owner"):
        ask(auto)


def open_finding(identity, severity: str, *, status: str = "open") -> Finding:
    now = timezone.now()
    return Finding.objects.create(
        key=f"stale:{identity.pk}:{severity}:{status}",
        kind=FindingKind.STALE,
        severity=severity,
        status=status,
        identity=identity,
        details={"subject": identity.name},
        first_seen_at=now,
        last_seen_at=now,
    )


@pytest.mark.parametrize(
    ("tolerated", "severity", "automatic"),
    [
        ("medium", "high", False),
        ("medium", "critical", False),
        ("medium", "medium", True),
        ("none", "low", False),
        ("high", "high", True),
        ("critical", "critical", True),
    ],
    ids=["default-high-blocks", "default-critical-blocks", "default-medium-passes", "none-any-blocks", "high", "never"],
)
def test_open_findings_of_the_beneficiary(ask, auto, alice_bot, tolerated, severity, automatic):
    open_finding(alice_bot, severity)

    request = ask(set_conditions(auto, auto_approve_max_finding_severity=tolerated))

    if automatic:
        assert_automatic(request)
    else:
        assert_to_people(request, "findings")


def test_resolved_findings_and_other_identities_findings_do_not_count(ask, auto, alice_bot):
    open_finding(alice_bot, "critical", status="resolved")
    open_finding(MachineFactory(), "critical")

    assert_automatic(ask(auto))


@pytest.mark.parametrize(
    ("minutes", "asked", "automatic"),
    [(30, 30, True), (30, 31, False), (60, 31, True)],
    ids=["at-the-limit", "a-minute-above", "below"],
)
def test_duration_at_most_n_minutes(ask, auto, minutes, asked, automatic):
    request = ask(set_conditions(auto, auto_approve_max_minutes=minutes), duration=timedelta(minutes=asked))

    if automatic:
        assert_automatic(request)
    else:
        assert_to_people(request, "duration")
        assert "duration 31 minutes > 30 minutes" in [c["detail"] for c in request.policy["auto_approval"]]


INTENT = {"intent_task": "JIRA-42", "intent_action": "read", "intent_resource": "logs/prod", "intent": "debug"}
PART_KWARG = {"task": "intent_task", "action": "intent_action", "resource": "intent_resource", "text": "intent"}


@pytest.mark.parametrize("part", ["task", "action", "resource", "text"])
def test_each_intent_field_required(ask, auto, part, alice_bot):
    set_conditions(auto, auto_approve_intent_fields=[part])
    without = {name: value for name, value in INTENT.items() if name != PART_KWARG[part]}

    request = ask(auto, **without)

    assert_to_people(request, "intent")
    assert {"condition": "intent", "held": False, "detail": f"missing {part}"} in request.policy["auto_approval"]
    access_request_cancel(request_id=request.pk, actor=request.requester)

    assert_automatic(ask(auto, **INTENT))


def test_no_intent_field_is_required_by_default(ask, auto):
    assert_automatic(ask(auto))


def test_at_most_k_automatic_approvals_per_hour_for_one_identity(ask, auto, alice_bot):
    set_conditions(auto, auto_approve_max_per_hour=2)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        first = ask(auto)
        assert_automatic(first)
        end(first)
    with time_machine.travel(start + timedelta(minutes=10), tick=False):
        second = ask(auto)
        assert_automatic(second)
        end(second)
        # another identity has its own count
        assert_automatic(ask(auto, beneficiary=MachineFactory(owner=alice_bot.owner)))
    with time_machine.travel(start + timedelta(minutes=20), tick=False):
        third = ask(auto)
        assert_to_people(third, "rate")
        assert "2 automatic approvals in the last hour, at most 2" in [
            c["detail"] for c in third.policy["auto_approval"]
        ]
        access_request_cancel(request_id=third.pk, actor=third.requester)
    # the first approval leaves the hour: one more is allowed, not two
    with time_machine.travel(start + timedelta(minutes=61), tick=False):
        fourth = ask(auto)
        assert_automatic(fourth)
        end(fourth)
        assert_to_people(ask(auto), "rate")


def test_the_fixed_conditions_still_hold(submit, auto, alice_bot):
    # the system's owner asks for a machine they own: they could rewrite the policy themselves
    owner = auto.system.owner
    bot = MachineFactory(owner=owner)

    request = submit(auto, actor=owner.user, beneficiary=bot, duration=timedelta(minutes=30))

    assert_to_people(request, "requester_not_owner")


def test_the_audit_event_carries_the_conditions_that_held(ask, auto):
    set_conditions(auto, auto_approve_max_minutes=45, auto_approve_intent_fields=["task"], auto_approve_max_per_hour=3)

    request = ask(auto, intent_task="JIRA-7")

    event = AuditEvent.objects.get(action="request.auto_approved")
    assert event.data["conditions"] == [c for c in request.policy["auto_approval"] if c["held"]]
    details = {c["condition"]: c["detail"] for c in event.data["conditions"]}
    assert details["duration"] == "duration 30 minutes <= 45 minutes"
    assert details["intent"] == "gives task"
    assert details["rate"] == "0 automatic approvals in the last hour, at most 3"


#
# Pages
#
def test_the_request_page_says_why_or_why_not(client, ask, auto, alice):
    client.force_login(alice.user)
    approved = ask(auto)
    page = client.get(reverse("jit:request_detail", args=[approved.pk])).content.decode()
    assert "Approved automatically by policy" in page and "duration 30 minutes" in page

    end(approved)
    set_conditions(auto, auto_approve_max_minutes=10)
    pending = ask(auto)
    page = client.get(reverse("jit:request_detail", args=[pending.pk])).content.decode()
    assert "Not approved automatically because:" in page
    assert "duration 30 minutes &gt; 10 minutes" in page


def test_the_entitlement_page_shows_the_conditions_in_words(client, auto, alice):
    set_conditions(
        auto,
        auto_approve_kinds=["workload", "ai_agent"],
        auto_approve_max_minutes=45,
        auto_approve_intent_fields=["task", "resource"],
        auto_approve_max_per_hour=3,
        auto_approve_max_finding_severity="none",
    )
    client.force_login(alice.user)

    page = client.get(reverse("governance:entitlement_detail", args=[auto.pk])).content.decode()

    for words in [
        "the identity&#x27;s kind is workload or AI agent",
        "risk tier is at most low",
        "the identity has no open hygiene finding",
        "the duration is at most 45 minutes",
        "the declared intent gives its task id and resource",
        "fewer than 3 times in the last hour",
        "no separation-of-duties conflict",
    ]:
        assert words in page, words


def test_the_entitlement_page_says_when_automatic_approval_is_off(client, alice):
    entitlement = EntitlementFactory()
    client.force_login(alice.user)

    page = client.get(reverse("governance:entitlement_detail", args=[entitlement.pk])).content.decode()

    assert "Off: every request goes to its approvers." in page


#
# The form
#
def form_post(entitlement, **changes) -> dict:
    form = EntitlementForm(instance=entitlement)
    post = {name: form[name].value() for name in form.fields}
    post = {name: value for name, value in post.items() if value not in (None, False)}
    post.update(changes)
    return {name: value for name, value in post.items() if value is not None}


@pytest.fixture
def admin():
    return with_role(PersonFactory(name="Ada Admin"), "admin").user


def test_the_form_has_an_automatic_approval_fieldset_and_saves_the_conditions(client, auto, admin):
    client.force_login(admin)
    url = reverse("governance:entitlement_edit", args=[auto.pk])
    page = client.get(url).content.decode()
    assert "<legend><strong>Automatic approval</strong></legend>" in page
    assert "Approve automatically when the conditions below hold" in page

    answer = client.post(
        url,
        form_post(
            auto,
            auto_approve_kinds=["workload", "service_account"],
            auto_approve_max_risk="low",
            auto_approve_max_finding_severity="none",
            auto_approve_max_minutes="45",
            auto_approve_intent_fields=["resource", "task"],
            auto_approve_max_per_hour="5",
        ),
    )

    assert answer.status_code == 302, answer.content.decode()
    auto.refresh_from_db()
    assert auto.auto_approve_kinds == ["service_account", "workload"]
    assert auto.auto_approve_max_finding_severity == "none"
    assert auto.auto_approve_max_minutes == 45 and auto.auto_approve_max_per_hour == 5
    assert auto.auto_approve_intent_fields == ["task", "resource"]
    event = AuditEvent.objects.filter(action="entitlement.updated").latest("seq")
    assert event.data["after"]["auto_approve_max_minutes"] == 45


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"auto_approve_max_minutes": "0"}, "auto_approve_max_minutes", "greater than or equal to 1"),
        ({"auto_approve_max_minutes": str(31 * 24 * 60)}, "auto_approve_max_minutes", "maximum duration"),
        (
            {"max_duration_hours": "1", "auto_approve_max_minutes": "90"},
            "auto_approve_max_minutes",
            "maximum duration (60 minutes)",
        ),
        ({"auto_approve_kinds": []}, "auto_approve_kinds", "at least one kind"),
        ({"auto_approve_kinds": ["robot"]}, "auto_approve_kinds", "Select a valid choice"),
        ({"auto_approve_intent_fields": ["mood"]}, "auto_approve_intent_fields", "Select a valid choice"),
        ({"auto_approve_max_per_hour": "0"}, "auto_approve_max_per_hour", "greater than or equal to 1"),
        ({"auto_approve_max_risk": "extreme"}, "auto_approve_max_risk", "Select a valid choice"),
        ({"auto_approve_max_finding_severity": "dire"}, "auto_approve_max_finding_severity", "Select a valid choice"),
    ],
    ids=[
        "minutes-zero",
        "minutes-above-cap",
        "minutes-above-new-cap",
        "no-kind",
        "bad-kind",
        "bad-part",
        "rate-zero",
        "bad-risk",
        "bad-severity",
    ],
)
def test_the_form_refuses_bad_conditions_beside_their_fields(client, auto, admin, changes, field, message):
    client.force_login(admin)
    post = form_post(auto, **changes)
    if changes.get("auto_approve_kinds") == []:
        post.pop("auto_approve_kinds", None)

    answer = client.post(reverse("governance:entitlement_edit", args=[auto.pk]), post)

    assert answer.status_code == 400
    errors = answer.context["form"].errors
    assert field in errors and message in " ".join(errors[field]), errors


def test_raising_the_cap_and_the_minutes_together_is_accepted(client, auto, admin):
    set_conditions(auto, max_duration=timedelta(hours=1))
    client.force_login(admin)

    answer = client.post(
        reverse("governance:entitlement_edit", args=[auto.pk]),
        form_post(auto, max_duration_hours="2", auto_approve_max_minutes="90"),
    )

    assert answer.status_code == 302
    auto.refresh_from_db()
    assert auto.auto_approve_max_minutes == 90 and auto.max_duration == timedelta(hours=2)


#
# The API
#
def test_the_api_reads_and_writes_the_conditions(auto, admin):
    from tests.api import API, api

    client = api(admin)
    body = client.get(f"{API}/entitlements/{auto.pk}/").json()
    assert body["auto_approve_kinds"] == ["service_account", "api_key", "workload", "ai_agent"]
    assert body["auto_approve_max_risk"] == "low" and body["auto_approve_max_finding_severity"] == "medium"
    assert body["auto_approve_max_minutes"] is None and body["auto_approve_intent_fields"] == []
    assert body["auto_approve_max_per_hour"] is None

    answer = client.patch(
        f"{API}/entitlements/{auto.pk}/",
        {"auto_approve_max_minutes": 20, "auto_approve_intent_fields": ["task"], "auto_approve_max_per_hour": 4},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    auto.refresh_from_db()
    assert (auto.auto_approve_max_minutes, auto.auto_approve_intent_fields, auto.auto_approve_max_per_hour) == (
        20,
        ["task"],
        4,
    )

    refused = client.patch(f"{API}/entitlements/{auto.pk}/", {"auto_approve_max_minutes": 10**6}, format="json")
    assert refused.status_code == 400 and "auto_approve_max_minutes" in refused.content.decode()
    refused = client.patch(f"{API}/entitlements/{auto.pk}/", {"auto_approve_kinds": ["robot"]}, format="json")
    assert refused.status_code == 400 and "auto_approve_kinds" in refused.content.decode()


#
# Widening a condition loosens the policy
#
@pytest.fixture
def guarded():
    """A high-risk entitlement whose admins let agents through automatically under tight conditions."""
    entitlement = EntitlementFactory(
        risk_tier=RiskTier.HIGH,
        max_duration=timedelta(hours=4),
        auto_approve_machines=True,
        auto_approve_kinds=["ai_agent"],
        auto_approve_max_risk=RiskTier.HIGH,
        auto_approve_max_finding_severity="low",
        auto_approve_max_minutes=30,
        auto_approve_intent_fields=["task", "resource"],
        auto_approve_max_per_hour=2,
    )
    return entitlement


@pytest.mark.parametrize(
    "changes",
    [
        {"auto_approve_kinds": ["workload", "ai_agent"]},
        {"auto_approve_max_risk": RiskTier.CRITICAL},
        {"auto_approve_max_finding_severity": "medium"},
        {"auto_approve_max_minutes": 60},
        {"auto_approve_max_minutes": None},
        {"auto_approve_intent_fields": ["task"]},
        {"auto_approve_max_per_hour": 5},
        {"auto_approve_max_per_hour": None},
    ],
    ids=[
        "more-kinds",
        "higher-risk",
        "worse-findings",
        "longer",
        "minutes-removed",
        "fewer-intent",
        "higher-rate",
        "rate-removed",
    ],
)
def test_widening_a_condition_waits_for_a_second_admin(guarded, admin, changes):
    before = {name: getattr(guarded, name) for name in changes}

    updated = entitlement_update(entitlement_id=guarded.pk, actor=admin, changes=changes)

    change = updated.held_policy_change
    assert change is not None and set(change.after) == set(changes)
    guarded.refresh_from_db()
    assert {name: getattr(guarded, name) for name in changes} == before


@pytest.mark.parametrize(
    "changes",
    [
        {"auto_approve_kinds": ["ai_agent"]},
        {"auto_approve_max_risk": RiskTier.MEDIUM},
        {"auto_approve_max_finding_severity": "none"},
        {"auto_approve_max_minutes": 15},
        {"auto_approve_intent_fields": ["task", "action", "resource"]},
        {"auto_approve_max_per_hour": 1},
    ],
    ids=["same-kinds", "lower-risk", "stricter-findings", "shorter", "more-intent", "lower-rate"],
)
def test_narrowing_a_condition_applies_at_once(guarded, admin, changes):
    updated = entitlement_update(entitlement_id=guarded.pk, actor=admin, changes=changes)

    assert getattr(updated, "held_policy_change", None) is None
    assert not PolicyChange.objects.exists()
    guarded.refresh_from_db()
    assert {name: getattr(guarded, name) for name in changes} == changes


def test_a_held_widening_is_shown_in_words_on_the_entitlement_page(client, guarded, admin):
    entitlement_update(
        entitlement_id=guarded.pk,
        actor=admin,
        changes={"auto_approve_max_per_hour": None, "auto_approve_kinds": ["workload", "ai_agent"]},
    )
    client.force_login(admin)

    page = client.get(reverse("governance:entitlement_detail", args=[guarded.pk])).content.decode()

    assert "no limit" in page and "workload or AI agent" in page


#
# The policy alone
#
def test_the_default_conditions_decide_as_the_fixed_ones_did():
    from dataclasses import replace

    from jit.policy import evaluate
    from tests.jit.test_policy import BASE

    machine = replace(
        BASE,
        beneficiary_kind="service_account",
        requester_is_beneficiary=False,
        requester_owns_beneficiary=True,
        risk_tier="low",
        auto_approve_machines=True,
    )
    assert evaluate(machine).auto_approve
    assert [c["condition"] for c in evaluate(machine).auto_approval] == ALL_CONDITIONS
    failing = {
        "kind": replace(machine, beneficiary_kind="human", requester_is_beneficiary=True),
        "risk": replace(machine, risk_tier="medium"),
        "requester_not_owner": replace(machine, requester_controls_entitlement=True),
        "no_step_up": replace(machine, is_renewal=True, renewals_in_window=3),
    }
    for condition, facts in failing.items():
        decision = evaluate(facts)
        assert not decision.auto_approve
        assert [c["condition"] for c in decision.auto_approval if not c["held"]] == [condition]
    # with the switch off nothing is checked, whatever the conditions
    assert evaluate(replace(machine, auto_approve_machines=False)).auto_approval == []


def test_a_second_admin_applies_a_held_widening(guarded, admin):
    from governance.services.policy_changes import policy_change_approve

    change = entitlement_update(
        entitlement_id=guarded.pk, actor=admin, changes={"auto_approve_max_per_hour": None}
    ).held_policy_change

    policy_change_approve(change_id=change.pk, actor=with_role(PersonFactory(), "admin").user)

    guarded.refresh_from_db()
    assert guarded.auto_approve_max_per_hour is None


def test_the_longest_automatic_approval_is_judged_with_the_cap(guarded, admin):
    # given no limit of its own (up to the 4-hour cap)
    set_conditions(guarded, auto_approve_max_minutes=None)

    # when the cap is raised (held) and a limit within the new cap set, which alone would tighten
    updated = entitlement_update(
        entitlement_id=guarded.pk,
        actor=admin,
        changes={"max_duration": timedelta(hours=8), "auto_approve_max_minutes": 360},
    )

    # then the limit waits with the cap: applied alone it would outrun the cap still in force
    assert set(updated.held_policy_change.after) == {"max_duration", "auto_approve_max_minutes"}
    guarded.refresh_from_db()
    assert guarded.max_duration == timedelta(hours=4) and guarded.auto_approve_max_minutes is None
