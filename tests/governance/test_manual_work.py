"""Access waiting on a person (the manual connector) is chased, then escalated, each once per phase."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from audit.models import AuditEvent
from governance.choices import GrantKind, GrantStatus
from governance.models import Notification
from governance.services.grants import grant_confirm_provisioned
from governance.services.manual_work import chase_manual_work
from tests.factories.governance import GrantFactory, PersonFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def waiting():
    return GrantFactory(
        identity=PersonFactory(),
        kind=GrantKind.JIT,
        status=GrantStatus.PENDING_PROVISION,
        granted_at=None,
        expires_at=None,
        approved_duration=timedelta(hours=2),
    )


def test_the_system_owner_is_reminded_then_the_admins_are_told_once_each(waiting, admin_user):
    owner = waiting.entitlement.system.owner.user
    start = timezone.now()
    with time_machine.travel(start + timedelta(hours=2), tick=False):
        assert chase_manual_work() == {"escalated": 0, "reminded": 0}
    with time_machine.travel(start + timedelta(hours=9), tick=False):
        assert chase_manual_work() == {"escalated": 0, "reminded": 1}
        assert chase_manual_work() == {"escalated": 0, "reminded": 0}
    with time_machine.travel(start + timedelta(hours=25), tick=False):
        assert chase_manual_work() == {"escalated": 1, "reminded": 0}
        assert chase_manual_work() == {"escalated": 0, "reminded": 0}
    reminder = Notification.objects.get(recipient=owner, kind="grant.manual_reminder")
    assert reminder.subject.startswith("Still waiting: put in place") and reminder.link.endswith(f"/{waiting.pk}/")
    assert Notification.objects.filter(recipient=admin_user, kind="grant.manual_escalation").count() == 1
    actions = list(AuditEvent.objects.filter(target_id=str(waiting.pk)).values_list("action", flat=True))
    assert actions.count("grant.manual_work_reminded") == 1 and actions.count("grant.manual_work_escalated") == 1


def test_confirmed_work_is_not_chased_and_removal_is_chased_afresh(waiting):
    owner = waiting.entitlement.system.owner.user
    grant_confirm_provisioned(grant_id=waiting.pk, actor=owner)
    start = timezone.now()
    with time_machine.travel(start + timedelta(hours=9), tick=False):
        assert chase_manual_work()["reminded"] == 0
        waiting.refresh_from_db()
        waiting.status = GrantStatus.REVOKING
        waiting.save()
    with time_machine.travel(start + timedelta(hours=18), tick=False):
        assert chase_manual_work()["reminded"] == 1
    assert Notification.objects.get(recipient=owner, kind="grant.manual_reminder").subject.startswith(
        "Still waiting: remove"
    )


def test_systems_with_a_connector_are_not_chased_by_hand(waiting):
    system = waiting.entitlement.system
    system.connector = "webhook"
    system.save(update_fields=["connector"])
    with time_machine.travel(timezone.now() + timedelta(days=3), tick=False):
        assert chase_manual_work() == {"escalated": 0, "reminded": 0}
