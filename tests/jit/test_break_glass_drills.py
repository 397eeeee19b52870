"""Break-glass drills: admins schedule and cancel them, an activation for one carries it out and is reported
as a drill, and one nobody carries out within a day is marked missed."""

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import Notification
from jit.choices import DrillStatus
from jit.models import BreakGlassDrill
from jit.services.break_glass_reviews import drill_cancel, drill_schedule, drills_mark_missed
from jit.tasks import break_glass_chase_task

from .break_glass_helpers import eligibility_for, person

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) + timedelta(days=1)
DRILLS = reverse("jit:break_glass_drill_list")


def at(hours: float):
    return time_machine.travel(T0 + timedelta(hours=hours), tick=False)


@pytest.fixture
def admin(db):
    return person("Ada", roles=["admin"])


@pytest.fixture
def eligibility(db):
    return eligibility_for(person("Holly"), expires_at=T0 + timedelta(days=30))


def schedule(admin, eligibility, hours=48, notes="Quarterly drill.", now=0):
    with at(now):
        return drill_schedule(
            actor=admin.user, eligibility_id=eligibility.pk, scheduled_for=T0 + timedelta(hours=hours), notes=notes
        )


def test_an_admin_schedules_a_drill_and_the_eligible_person_hears_of_it(admin, eligibility):
    drill = schedule(admin, eligibility)
    assert drill.status == DrillStatus.SCHEDULED and drill.created_by == admin.user
    event = AuditEvent.objects.for_target(drill).get(action=AuditAction.BREAK_GLASS_DRILL_SCHEDULED)
    assert event.data["eligibility"] == eligibility.pk and event.actor_user_id == admin.user.pk
    notice = Notification.objects.get(kind="break_glass.drill_scheduled")
    assert notice.recipient == eligibility.identity.user


@pytest.mark.parametrize(
    ("hours", "field"),
    [(-1, "scheduled_for"), (24 * 31, "scheduled_for")],  # in the past; after the eligibility ends
)
def test_a_drill_outside_the_eligibility_is_refused(admin, eligibility, hours, field):
    with pytest.raises(ValidationFailed) as failed:
        schedule(admin, eligibility, hours=hours)
    assert field in failed.value.field_errors
    assert not BreakGlassDrill.objects.exists()
    assert not AuditEvent.objects.filter(action=AuditAction.BREAK_GLASS_DRILL_SCHEDULED).exists()


def test_an_ended_eligibility_has_no_drill(admin, eligibility):
    eligibility.is_active = False
    eligibility.save()
    with pytest.raises(ValidationFailed) as failed:
        schedule(admin, eligibility)
    assert "eligibility" in failed.value.field_errors
    assert not BreakGlassDrill.objects.exists()


@pytest.mark.parametrize("roles", [["requester", "approver", "owner"], ["auditor"]])
def test_only_admins_schedule_and_cancel(admin, eligibility, roles):
    someone = person("Sam", roles=roles)
    with pytest.raises(PermissionRefused):
        schedule(someone, eligibility)
    drill = schedule(admin, eligibility)
    with pytest.raises(PermissionRefused):
        drill_cancel(actor=someone.user, drill_id=drill.pk)
    drill.refresh_from_db()
    assert drill.status == DrillStatus.SCHEDULED


def test_cancel_once(admin, eligibility):
    drill = schedule(admin, eligibility)
    drill_cancel(actor=admin.user, drill_id=drill.pk, reason="Change freeze.")
    drill.refresh_from_db()
    assert drill.status == DrillStatus.CANCELLED
    with pytest.raises(InvalidTransition):
        drill_cancel(actor=admin.user, drill_id=drill.pk)
    assert AuditEvent.objects.for_target(drill).filter(action=AuditAction.BREAK_GLASS_DRILL_CANCELLED).count() == 1


def test_a_drill_nobody_ran_within_a_day_is_missed_once(admin, eligibility):
    drill = schedule(admin, eligibility, hours=48)
    with at(48 + 23.9):
        assert drills_mark_missed() == 0
    with at(48 + 24):
        assert break_glass_chase_task()["drills_missed"] == 1
        assert drills_mark_missed() == 0
    drill.refresh_from_db()
    assert drill.status == DrillStatus.MISSED
    assert AuditEvent.objects.for_target(drill).filter(action=AuditAction.BREAK_GLASS_DRILL_MISSED).count() == 1
    assert Notification.objects.filter(recipient=admin.user, kind="break_glass.drill_missed").count() == 1


def test_a_drill_carried_out_is_reported_as_a_drill(admin, client):
    """Through the activation service (H1's `break_glass_activate`, `drill_id=`): done, and in the report."""
    factories = pytest.importorskip("tests.factories.break_glass")
    eligibility = factories.EligibilityFactory(expires_at=T0 + timedelta(days=30))
    drill = schedule(admin, eligibility, hours=1)
    with at(1):
        activation = factories.activate(eligibility, drill_id=drill.pk, incident_reference="DRILL-Q4")
    drill.refresh_from_db()
    assert drill.status == DrillStatus.DONE and drill.activation_id == activation.pk
    assert activation.is_drill
    with at(30):
        assert drills_mark_missed() == 0
        client.force_login(person("Audrey", roles=["auditor"]).user)
        report = client.get(reverse("jit:break_glass_report"), {"drill": "yes"})
        export = client.get(reverse("jit:break_glass_report_csv"), {"drill": "yes"})
        drills = client.get(DRILLS)
    assert "DRILL-Q4" in report.content.decode()
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [(row["incident reference"], row["drill"]) for row in rows] == [("DRILL-Q4", "drill")]
    assert "Carried out" in drills.content.decode()


#
# The page
#
def test_the_drill_page_schedules_with_errors_beside_the_fields(client, admin, eligibility):
    with at(0):
        client.force_login(admin.user)
        page = client.get(DRILLS)
        assert page.status_code == 200 and "Schedule the drill" in page.content.decode()
        past = (T0 - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        refused = client.post(
            reverse("jit:break_glass_drill_create"), {"eligibility": eligibility.pk, "scheduled_for": past}
        )
        assert refused.status_code == 400 and 'id="id_scheduled_for_error"' in refused.content.decode()
        assert not BreakGlassDrill.objects.exists()
        later = (T0 + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
        done = client.post(
            reverse("jit:break_glass_drill_create"),
            {"eligibility": eligibility.pk, "scheduled_for": later, "notes": "Q4"},
            follow=True,
        )
        assert "scheduled for" in done.content.decode()
        drill = BreakGlassDrill.objects.get()
        cancelled = client.post(reverse("jit:break_glass_drill_cancel", args=[drill.pk]), follow=True)
        assert f"{drill} cancelled." in cancelled.content.decode()
    drill.refresh_from_db()
    assert drill.status == DrillStatus.CANCELLED


def test_auditors_read_drills_without_the_form_and_others_are_refused(client, admin, eligibility):
    schedule(admin, eligibility)
    with at(0):
        client.force_login(person("Audrey", roles=["auditor"]).user)
        page = client.get(DRILLS)
        assert page.status_code == 200 and "Schedule the drill" not in page.content.decode()
        assert "Quarterly drill." in page.content.decode()
        drill = BreakGlassDrill.objects.get()
        assert client.post(reverse("jit:break_glass_drill_cancel", args=[drill.pk])).status_code == 403
        client.force_login(person("Rex", roles=["requester"]).user)
        assert client.get(DRILLS).status_code == 403
    drill.refresh_from_db()
    assert drill.status == DrillStatus.SCHEDULED


def test_the_drill_list_costs_the_same_for_one_drill_or_many(client, admin, eligibility):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    schedule(admin, eligibility)
    with at(0):
        client.force_login(admin.user)
        with CaptureQueriesContext(connection) as one:
            assert client.get(DRILLS).status_code == 200
    for i in range(8):
        other = eligibility_for(person(f"Oncall{i}"), expires_at=T0 + timedelta(days=30))
        drill = schedule(admin, other, hours=10 + i)
        if i % 3 == 0:
            with at(0):
                drill_cancel(actor=admin.user, drill_id=drill.pk)
    with at(0), CaptureQueriesContext(connection) as many:
        page = client.get(DRILLS)
    assert page.content.decode().count("Quarterly drill.") == 9
    assert len(one) == len(many), (len(one), len(many))
