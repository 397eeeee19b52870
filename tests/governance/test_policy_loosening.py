"""Loosening a high or critical entitlement's policy waits for a second admin; tightening applies at once."""

from datetime import timedelta

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from governance.choices import RiskTier
from governance.errors import InvalidTransition, PermissionRefused
from governance.models import Notification, PolicyChange, PolicyChangeStatus
from governance.services.catalogue import entitlement_update
from governance.services.policy_changes import policy_change_approve, policy_change_reject, policy_change_withdraw
from tests.factories.governance import EntitlementFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def critical(owner):
    return EntitlementFactory(
        owner=owner,
        risk_tier=RiskTier.CRITICAL,
        max_duration=timedelta(hours=2),
        approval_stages=[{"approver": "entitlement_owner", "quorum": 1}, {"approver": "system_owner", "quorum": 1}],
    )


@pytest.fixture
def first_admin():
    return with_role(PersonFactory(name="Ada Admin"), "admin").user


@pytest.fixture
def second_admin():
    return with_role(PersonFactory(name="Bo Admin"), "admin").user


def actions(entitlement) -> list[str]:
    return list(AuditEvent.objects.for_target(entitlement).order_by("seq").values_list("action", flat=True))


@pytest.mark.parametrize(
    "changes",
    [
        {"max_duration": timedelta(days=7)},
        {"risk_tier": RiskTier.LOW},
        {"auto_approve_machines": True},
        {"approval_stages": [{"approver": "entitlement_owner", "quorum": 1}]},
        {"justification_required": False},
        {"break_glass_eligible": True},
    ],
    ids=["raise-cap", "lower-tier", "auto-approve", "drop-stages", "no-justification", "break-glass"],
)
def test_an_owner_cannot_loosen_a_critical_entitlement_alone(critical, owner, changes):
    before = {name: getattr(critical, name) for name in changes}

    updated = entitlement_update(entitlement_id=critical.pk, actor=owner.user, changes=changes)

    critical.refresh_from_db()
    assert {name: getattr(critical, name) for name in changes} == before
    held = updated.held_policy_change
    assert held.status == PolicyChangeStatus.PENDING and set(held.after) >= set(changes)
    assert actions(critical) == ["entitlement.policy_change_proposed"]


def test_tightening_applies_at_once_and_only_the_loosening_waits(critical, owner):
    entitlement_update(
        entitlement_id=critical.pk,
        actor=owner.user,
        changes={"max_duration": timedelta(hours=1), "ticket_required": True, "auto_approve_machines": True},
    )

    critical.refresh_from_db()
    assert critical.max_duration == timedelta(hours=1) and critical.ticket_required
    assert not critical.auto_approve_machines
    assert PolicyChange.objects.get().after == {"auto_approve_machines": True}
    updated = AuditEvent.objects.for_target(critical).get(action="entitlement.updated")
    assert updated.data["after"] == {"max_duration": "P0DT01H00M00S", "ticket_required": True}


def test_a_low_risk_entitlement_is_loosened_at_once(owner):
    low = EntitlementFactory(owner=owner, risk_tier=RiskTier.LOW)

    entitlement_update(entitlement_id=low.pk, actor=owner.user, changes={"auto_approve_machines": True})

    low.refresh_from_db()
    assert low.auto_approve_machines and not PolicyChange.objects.exists()


def test_raising_the_tier_and_loosening_in_one_edit_still_waits(owner):
    medium = EntitlementFactory(owner=owner, risk_tier=RiskTier.MEDIUM)

    entitlement_update(
        entitlement_id=medium.pk, actor=owner.user, changes={"risk_tier": RiskTier.HIGH, "auto_approve_machines": True}
    )

    medium.refresh_from_db()
    assert medium.risk_tier == RiskTier.HIGH and not medium.auto_approve_machines


def test_another_admin_approves_and_the_change_applies_with_before_and_after(critical, first_admin, second_admin):
    held = entitlement_update(
        entitlement_id=critical.pk, actor=first_admin, changes={"max_duration": timedelta(days=1)}
    ).held_policy_change
    assert Notification.objects.filter(recipient=second_admin, kind="policy_change").exists()
    assert not Notification.objects.filter(recipient=first_admin, kind="policy_change").exists()

    policy_change_approve(change_id=held.pk, actor=second_admin, comment="incident follow-up")

    critical.refresh_from_db()
    assert critical.max_duration == timedelta(days=1)
    held.refresh_from_db()
    assert held.status == PolicyChangeStatus.APPLIED and held.decided_by == second_admin
    applied = AuditEvent.objects.for_target(critical).filter(action="entitlement.updated").get()
    assert applied.data["before"] == {"max_duration": "P0DT02H00M00S"}
    assert applied.data["after"] == {"max_duration": "P1DT00H00M00S"}
    assert actions(critical)[-2:] == ["entitlement.policy_change_approved", "entitlement.updated"]


def test_the_admin_who_asked_cannot_approve_it(critical, first_admin):
    held = entitlement_update(
        entitlement_id=critical.pk, actor=first_admin, changes={"risk_tier": RiskTier.LOW}
    ).held_policy_change

    with pytest.raises(PermissionRefused, match="another admin"):
        policy_change_approve(change_id=held.pk, actor=first_admin)
    critical.refresh_from_db()
    assert critical.risk_tier == RiskTier.CRITICAL


def test_an_owner_who_is_not_an_admin_cannot_approve_it(critical, owner, first_admin):
    held = entitlement_update(
        entitlement_id=critical.pk, actor=first_admin, changes={"risk_tier": RiskTier.LOW}
    ).held_policy_change

    with pytest.raises(PermissionRefused):
        policy_change_approve(change_id=held.pk, actor=owner.user)


def test_a_rejected_change_leaves_the_policy_and_is_final(critical, owner, second_admin):
    held = entitlement_update(
        entitlement_id=critical.pk, actor=owner.user, changes={"auto_approve_machines": True}
    ).held_policy_change

    policy_change_reject(change_id=held.pk, actor=second_admin, comment="no")

    critical.refresh_from_db()
    assert not critical.auto_approve_machines
    with pytest.raises(InvalidTransition):
        policy_change_approve(change_id=held.pk, actor=second_admin)


def test_the_asker_may_withdraw_and_nobody_else(critical, owner, second_admin):
    held = entitlement_update(
        entitlement_id=critical.pk, actor=owner.user, changes={"auto_approve_machines": True}
    ).held_policy_change
    with pytest.raises(PermissionRefused):
        policy_change_withdraw(change_id=held.pk, actor=second_admin)

    policy_change_withdraw(change_id=held.pk, actor=owner.user)

    assert PolicyChange.objects.get().status == PolicyChangeStatus.WITHDRAWN


def test_one_loosening_waits_at_a_time(critical, owner):
    entitlement_update(entitlement_id=critical.pk, actor=owner.user, changes={"auto_approve_machines": True})

    with pytest.raises(InvalidTransition, match="already waiting"):
        entitlement_update(entitlement_id=critical.pk, actor=owner.user, changes={"risk_tier": RiskTier.LOW})


def test_a_change_asked_against_a_policy_that_moved_since_is_not_applied(critical, owner, first_admin, second_admin):
    held = entitlement_update(
        entitlement_id=critical.pk, actor=owner.user, changes={"max_duration": timedelta(days=1)}
    ).held_policy_change
    entitlement_update(entitlement_id=critical.pk, actor=first_admin, changes={"max_duration": timedelta(hours=1)})

    with pytest.raises(InvalidTransition, match="changed since"):
        policy_change_approve(change_id=held.pk, actor=second_admin)
    critical.refresh_from_db()
    assert critical.max_duration == timedelta(hours=1)


def test_an_import_cannot_loosen_a_critical_entitlement(critical, first_admin):
    from governance.imports.plans import LOOSENING_BY_IMPORT
    from governance.services.imports import ImportRejected, import_apply

    critical.external_id, critical.system.external_id = "ent-1", "sys-1"
    critical.save()
    critical.system.save()
    critical.owner.external_id = "p-1"
    critical.owner.save()
    text = f"external_id,system_external_id,name,owner_external_id,risk_tier\nent-1,sys-1,{critical.name},p-1,low\n"

    with pytest.raises(ImportRejected) as caught:
        import_apply(actor=first_admin, entity="entitlements", fmt="csv", content=text.encode())

    assert caught.value.row_errors[0].message.startswith(LOOSENING_BY_IMPORT)
    critical.refresh_from_db()
    assert critical.risk_tier == RiskTier.CRITICAL


#
# The entitlement page and the API
#
def test_the_entitlement_page_shows_the_waiting_change_and_lets_another_admin_approve_it(
    client, critical, owner, second_admin
):
    entitlement_update(entitlement_id=critical.pk, actor=owner.user, changes={"auto_approve_machines": True})
    page = reverse("governance:entitlement_detail", args=[critical.pk])

    client.force_login(owner.user)
    shown = client.get(page).content.decode()
    assert "Policy change waiting for approval" in shown and "Withdraw my change" in shown
    assert "Approve and apply" not in shown

    client.force_login(second_admin)
    assert "Approve and apply" in client.get(page).content.decode()
    change = PolicyChange.objects.get()
    answer = client.post(reverse("governance:policy_change_approve", args=[change.pk]), follow=True)

    assert "Policy change approved and applied." in answer.content.decode()
    critical.refresh_from_db()
    assert critical.auto_approve_machines


def test_the_edit_page_says_what_waits(client, critical, owner):
    from governance.forms import EntitlementForm

    client.force_login(owner.user)
    form = EntitlementForm(instance=critical)
    as_shown = {name: form[name].value() for name in form.fields}
    post = {name: value for name, value in as_shown.items() if value not in (None, False)}
    answer = client.post(
        reverse("governance:entitlement_edit", args=[critical.pk]), {**post, "auto_approve_machines": "on"}, follow=True
    )

    assert "waits for another admin" in answer.content.decode()
    assert PolicyChange.objects.filter(entitlement=critical).exists()


def test_a_reject_without_a_reason_is_refused_with_a_message(client, critical, owner, second_admin):
    change = entitlement_update(
        entitlement_id=critical.pk, actor=owner.user, changes={"auto_approve_machines": True}
    ).held_policy_change
    client.force_login(second_admin)

    answer = client.post(reverse("governance:policy_change_reject", args=[change.pk]), {"comment": ""}, follow=True)

    assert "Say why you reject it" in answer.content.decode()
    change.refresh_from_db()
    assert change.status == PolicyChangeStatus.PENDING


def test_the_asker_posting_approve_gets_403(client, critical, first_admin):
    change = entitlement_update(
        entitlement_id=critical.pk, actor=first_admin, changes={"auto_approve_machines": True}
    ).held_policy_change
    client.force_login(first_admin)

    assert client.post(reverse("governance:policy_change_approve", args=[change.pk])).status_code == 403


def test_the_api_answers_202_with_what_waits(critical, owner):
    from tests.api import API, api

    answer = api(owner.user).patch(
        f"{API}/entitlements/{critical.pk}/", {"auto_approve_machines": True, "ticket_required": True}, format="json"
    )

    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["policy_change"]["after"] == {"auto_approve_machines": True}
    assert body["entitlement"]["auto_approve_machines"] is False and body["entitlement"]["ticket_required"] is True
