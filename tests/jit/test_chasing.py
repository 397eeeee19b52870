"""Chasing: per-stage reminders and escalations, time-outs from submission, lapsed activation windows."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.utils import timezone

from audit.models import AuditEvent
from audit.verify import verify_chain
from governance.choices import RiskTier
from governance.errors import InvalidTransition
from governance.models import Notification
from jit.choices import RequestStatus
from jit.models import ApprovalStage
from jit.services.approvals import access_request_decide
from jit.services.chasing import (
    access_request_escalate,
    access_request_lapse,
    access_request_remind,
    chase_pending_requests,
    lapse_unactivated_requests,
)
from jit.services.requests import access_request_activate
from jit.tasks import access_requests_chase_task
from tests.factories.governance import EntitlementFactory, PersonFactory

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) + timedelta(days=1)


def at(hours: float):
    return time_machine.travel(T0 + timedelta(hours=hours), tick=False)


def approve(request, user):
    return access_request_decide(request_id=request.pk, approver=user, decision="approve")


def chase(hours: float) -> dict[str, int]:
    with at(hours):
        return chase_pending_requests()


@pytest.fixture
def fallback(db):
    """Someone in the fallback group, who escalation adds to a waiting stage."""
    user = PersonFactory(name="Fallback").user
    user.groups.add(Group.objects.get(name="admin"))
    return user


def stage_events(request, action: str) -> list:
    events = AuditEvent.objects.for_target(request).filter(action=action).order_by("seq")
    return [event.data["stage"] for event in events]


#
# Reminders and escalations per stage
#
def test_second_stage_is_reminded_and_escalated_from_its_own_start(submit, entitlement, ent_owner, sys_owner, fallback):
    # given: stage 1 approved 3 hours after submission, before anyone needed reminding
    with at(0):
        request = submit(entitlement)
    with at(3):
        approve(request, ent_owner)
    # then: stage 2 is reminded 4 hours after *it* started, not after the request was submitted
    assert chase(5) == {"timed_out": 0, "escalated": 0, "reminded": 0}
    assert chase(7) == {"timed_out": 0, "escalated": 0, "reminded": 1}
    first, second = request.stages.order_by("position")
    second.refresh_from_db()
    assert second.reminded_at == T0 + timedelta(hours=7)
    first.refresh_from_db()
    assert first.reminded_at is None and first.escalated_at is None
    assert Notification.objects.filter(recipient=sys_owner, key=f"request:{request.pk}:stage:2:reminder").count() == 1
    assert not Notification.objects.filter(recipient=ent_owner, kind="request.reminder").exists()
    # and escalated 24 hours after it started
    assert chase(26)["escalated"] == 0
    assert chase(27) == {"timed_out": 0, "escalated": 1, "reminded": 0}
    assert fallback in second.eligible.all() and fallback not in first.eligible.all()
    assert Notification.objects.filter(recipient=fallback, key=f"request:{request.pk}:stage:2:escalated").count() == 1
    assert stage_events(request, "request.reminded") == [2]
    assert stage_events(request, "request.escalated") == [2]
    # the time-out still counts from submission
    assert chase(71)["timed_out"] == 0
    assert chase(72)["timed_out"] == 1
    request.refresh_from_db()
    assert request.status == RequestStatus.TIMED_OUT
    assert verify_chain().ok


def test_each_stage_is_reminded_once_and_escalated_once(submit, entitlement, ent_owner, sys_owner, fallback):
    with at(0):
        request = submit(entitlement)
    # stage 1: reminded, escalated, each once however often the chaser runs
    assert chase(4)["reminded"] == 1
    assert chase(4.5)["reminded"] == 0
    assert chase(24) == {"timed_out": 0, "escalated": 1, "reminded": 0}
    assert chase(24.5) == {"timed_out": 0, "escalated": 0, "reminded": 0}
    # stage 2 starts when stage 1 is approved, and gets its own reminder and escalation
    with at(30):
        approve(request, ent_owner)
    assert chase(33) == {"timed_out": 0, "escalated": 0, "reminded": 0}
    assert chase(34)["reminded"] == 1
    assert chase(35)["reminded"] == 0
    assert chase(54)["escalated"] == 1
    assert chase(55) == {"timed_out": 0, "escalated": 0, "reminded": 0}
    assert stage_events(request, "request.reminded") == [1, 2]
    assert stage_events(request, "request.escalated") == [1, 2]
    keys = set(
        Notification.objects.filter(kind__in=["request.reminder", "request.escalated"]).values_list("key", flat=True)
    )
    assert keys == {
        f"request:{request.pk}:stage:{position}:{kind}" for position in (1, 2) for kind in ("reminder", "escalated")
    }
    stages = ApprovalStage.objects.filter(request=request).order_by("position")
    assert [(s.reminded_at, s.escalated_at) for s in stages] == [
        (T0 + timedelta(hours=4), T0 + timedelta(hours=24)),
        (T0 + timedelta(hours=34), T0 + timedelta(hours=54)),
    ]


def test_a_nudge_chosen_for_a_stage_that_was_approved_meanwhile_does_nothing(submit, entitlement, ent_owner, fallback):
    # given: the chaser picked stage 1, then stage 1 was approved before the nudge ran
    with at(0):
        request = submit(entitlement)
    with at(25):
        approve(request, ent_owner)
        # then: stage 2, which only just started, is neither reminded nor escalated
        assert access_request_remind(request_id=request.pk, stage_position=1) is False
        assert access_request_escalate(request_id=request.pk, stage_position=1) is False
    assert ApprovalStage.objects.filter(request=request).exclude(reminded_at=None).count() == 0
    assert ApprovalStage.objects.filter(request=request).exclude(escalated_at=None).count() == 0
    assert not AuditEvent.objects.filter(action__in=["request.reminded", "request.escalated"]).exists()


def test_selection_queries_do_not_grow_with_the_number_of_requests(
    submit, entitlement, django_assert_max_num_queries, fallback
):
    entitlements = [entitlement] + [
        EntitlementFactory(risk_tier=RiskTier.MEDIUM, approval_stages=entitlement.approval_stages) for _ in range(2)
    ]
    with at(0):
        for each in entitlements:
            submit(each)
    with at(1):
        # the database's clock, then one selection per kind of chase, nothing due
        with django_assert_max_num_queries(4):
            assert chase_pending_requests() == {"timed_out": 0, "escalated": 0, "reminded": 0}
        with django_assert_max_num_queries(2):  # the database's clock, one selection
            assert lapse_unactivated_requests() == 0


#
# Activation windows
#
@pytest.fixture
def high():
    """High risk: once approved, the holder must activate within 8 hours."""
    return EntitlementFactory(risk_tier=RiskTier.HIGH, auto_approve_machines=False)


def test_approved_request_not_activated_in_its_window_lapses_once(submit, high, alice):
    # given
    with at(0):
        request = submit(high, duration=timedelta(hours=1))
        approve(request, high.owner.user)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED and request.activation_deadline == T0 + timedelta(hours=8)
    # not yet
    with at(8):
        assert lapse_unactivated_requests() == 0
    # when: the beat task runs after the window
    with at(8.1):
        assert access_requests_chase_task()["lapsed"] == 1
    # then
    request.refresh_from_db()
    assert request.status == RequestStatus.TIMED_OUT and request.grant is None
    assert request.decision_note == "Not activated within its window."
    assert AuditEvent.objects.for_target(request).filter(action="request.activation_lapsed").count() == 1
    assert Notification.objects.filter(recipient=alice.user, key=f"request:{request.pk}:lapsed").count() == 1
    # and running again changes nothing
    updated = request.updated_at
    with at(9):
        assert access_requests_chase_task()["lapsed"] == 0
        assert access_request_lapse(request_id=request.pk) is False
        with pytest.raises(InvalidTransition):
            access_request_activate(request_id=request.pk, actor=alice.user)
    request.refresh_from_db()
    assert request.status == RequestStatus.TIMED_OUT and request.updated_at == updated
    assert AuditEvent.objects.filter(action="request.activation_lapsed").count() == 1
    assert Notification.objects.filter(kind="request.lapsed").count() == 1
    assert verify_chain().ok


def test_request_activated_in_time_is_left_alone(submit, high, alice):
    with at(0):
        request = submit(high, duration=timedelta(hours=1))
        approve(request, high.owner.user)
    with at(7):
        access_request_activate(request_id=request.pk, actor=alice.user)
    with at(9):
        assert lapse_unactivated_requests() == 0
        assert access_request_lapse(request_id=request.pk) is False
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED and request.grant is not None
    assert not AuditEvent.objects.filter(action="request.activation_lapsed").exists()


def test_only_requests_waiting_for_activation_lapse(submit, high, entitlement, ent_owner, sys_owner):
    # an approved request with no window got its grant; a pending one is the chaser's, not the lapse's
    with at(0):
        medium = submit(entitlement)
        approve(medium, ent_owner)
        approve(medium, sys_owner)
        pending = submit(high, duration=timedelta(hours=1))
    with at(100):
        assert lapse_unactivated_requests() == 0
    medium.refresh_from_db()
    pending.refresh_from_db()
    assert medium.status == RequestStatus.APPROVED and pending.status == RequestStatus.PENDING
