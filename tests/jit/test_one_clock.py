"""One clock: times that decide or record a state change are the database's, whatever a machine's clock says.

A machine whose clock is off is simulated by moving this process's clock only (time-machine) while
the database clock does not follow it (CLOCK_FOLLOWS_TIME_TRAVEL off): the database keeps real time.
"""

from datetime import datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection

from audit.choices import AuditAction
from audit.handlers import EMAIL
from audit.models import AuditEvent, OutboxMessage, OutboxStatus
from audit.outbox import outbox_dispatch, outbox_enqueue
from audit.services import audit_event_record, export_recorded
from governance.choices import GrantStatus
from governance.models import Grant
from jit.choices import RequestStatus
from jit.models import Heartbeat
from jit.services.approvals import access_request_decide
from jit.services.expiry import SWEEP, grants_expire_due
from jit.tasks import access_requests_start_scheduled_task
from tests.factories.governance import GrantFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

SKEW = timedelta(minutes=10)
EMAIL_PAYLOAD = {"to": ["a@example.org"], "subject": "Approval needed", "body": "Request #1 awaits you."}


@pytest.fixture(autouse=True)
def real_database_clock(settings):
    """The database clock keeps real time while a test moves this machine's clock."""
    settings.CLOCK_FOLLOWS_TIME_TRAVEL = False


def database_time() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def clock_ahead():
    """This machine's clock runs ten minutes ahead of the database's (and keeps running)."""
    return time_machine.travel(database_time() + SKEW)


def clock_behind():
    """This machine's clock runs ten minutes behind the database's."""
    return time_machine.travel(database_time() - SKEW)


def test_a_scheduled_start_does_not_begin_early_on_a_machine_whose_clock_runs_ahead(
    submit, entitlement, ent_owner, sys_owner
):
    # given a request to start in five minutes, by the database's clock
    request = submit(entitlement, start_at=database_time() + timedelta(minutes=5))
    with clock_ahead():
        # when the last approval, then the scheduled start, run where the clock thinks it has started
        for approver in (ent_owner, sys_owner):
            access_request_decide(request_id=request.pk, approver=approver, decision="approve")
        started = access_requests_start_scheduled_task()
    # then the access waits for its start
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED and request.grant_id is None
    assert started == 0


def test_audit_events_are_stamped_with_the_database_time_not_the_machines(alice):
    with clock_ahead():
        before = database_time()
        written_at_once = audit_event_record(actor=alice.user, action=AuditAction.EXPORT_DOWNLOADED, data={})
        export_recorded(actor=alice.user, what="grants", filters={}, file_format="csv")  # a service's, at commit
        after = database_time()
    by_service = AuditEvent.objects.order_by("-seq").first()
    assert before <= written_at_once.occurred_at <= by_service.occurred_at <= after
    assert after - before < timedelta(seconds=1)


def test_the_sweep_expires_and_beats_by_the_database_clock(alice):
    # given a grant that expires in five minutes, by the database's clock
    grant = GrantFactory(identity=alice, status=GrantStatus.ACTIVE, expires_at=database_time() + timedelta(minutes=5))
    with clock_ahead():
        before = database_time()
        expired = grants_expire_due()
        after = database_time()
    # then it is not expired early, and the heartbeat is the database's time, not ten minutes ahead
    assert expired == 0 and Grant.objects.get(pk=grant.pk).status == GrantStatus.ACTIVE
    assert before <= Heartbeat.objects.get(name=SWEEP).last_run_at <= after


def test_health_reports_a_stopped_sweep_by_the_database_clock(client, admin_user):
    # given the last sweep more than three intervals ago, by the database's clock (beat stopped)
    stopped = database_time() - 3 * settings.EXPIRY_SWEEP_INTERVAL - timedelta(minutes=1)
    Heartbeat.objects.update_or_create(name=SWEEP, defaults={"last_run_at": stopped})
    client.force_login(admin_user)
    # when a web node whose clock runs behind (to which that sweep looks recent) is asked
    with clock_behind():
        sweep = client.get("/health/").json()["checks"]["expiry_sweep"]
    # then the sweep is reported stopped
    assert not sweep["ok"] and "last sweep" in sweep["detail"]


def test_health_reports_overdue_grants_by_the_database_clock(client, admin_user, alice):
    # given a sweep that just ran, and a grant that expired five minutes ago, by the database's clock
    Heartbeat.objects.update_or_create(name=SWEEP, defaults={"last_run_at": database_time()})
    GrantFactory(identity=alice, status=GrantStatus.ACTIVE, expires_at=database_time() - timedelta(minutes=5))
    client.force_login(admin_user)
    # when a web node whose clock runs behind is asked
    with clock_behind():
        sweep = client.get("/health/").json()["checks"]["expiry_sweep"]
    # then the grant is overdue
    assert not sweep["ok"] and "overdue" in sweep["detail"]


def test_the_outbox_delivers_by_the_database_clock_whatever_the_machines_say():
    # given a message enqueued on a machine whose clock runs ahead: due now, by the database's clock
    with clock_ahead():
        outbox_enqueue(kind=EMAIL, payload=EMAIL_PAYLOAD, idempotency_key="ahead")
    # when a dispatcher whose clock runs behind looks for due messages
    with clock_behind():
        delivered = outbox_dispatch().delivered
    # then it is delivered now, not in ten or twenty minutes
    assert delivered == 1 and OutboxMessage.objects.get().status == OutboxStatus.DELIVERED
