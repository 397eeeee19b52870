"""`/health/`'s overdue grants: the right answer, read cheaply whatever the planner's statistics say.

The check asks for the earliest expiry among active grants (the first entry of the partial index on
active expiries) rather than counting or testing for overdue rows, which let a stale estimate pick a
full scan of every grant.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.kernel.clock import database_now
from governance.choices import GrantKind, GrantStatus
from jit.health import OVERDUE_TOLERANCE, check_expiry_sweep
from jit.models import Heartbeat
from jit.services.expiry import SWEEP
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def sweep_just_ran():
    Heartbeat.objects.update_or_create(name=SWEEP, defaults={"last_run_at": database_now()})


def _jit(expires_in: timedelta, **kw):
    expires_at = database_now() + expires_in
    return GrantFactory(kind=GrantKind.JIT, granted_at=expires_at - timedelta(hours=1), expires_at=expires_at, **kw)


def test_healthy_without_grants_or_with_only_standing_and_future_ones():
    ok, detail = check_expiry_sweep()
    assert ok and "last sweep" in detail
    GrantFactory()  # standing: no expiry at all
    _jit(timedelta(hours=1))
    assert check_expiry_sweep()[0]


def test_a_grant_just_past_its_expiry_is_within_the_tolerance():
    # the sweep runs every minute: a grant a minute late is not yet a failing sweep
    _jit(-OVERDUE_TOLERANCE + timedelta(seconds=30))
    assert check_expiry_sweep()[0]


def test_an_active_grant_past_the_tolerance_is_overdue_even_among_many_fine_ones():
    _jit(timedelta(hours=2))
    GrantFactory()
    late = _jit(-OVERDUE_TOLERANCE - timedelta(minutes=3))
    ok, detail = check_expiry_sweep()
    assert not ok and "overdue" in detail
    # once the sweep has taken it (no longer active), health is green again
    late.status = GrantStatus.REVOKING
    late.save(update_fields=["status"])
    assert check_expiry_sweep()[0]


def test_ended_grants_long_past_their_expiry_do_not_count():
    for status in (GrantStatus.REVOKING, GrantStatus.EXPIRED, GrantStatus.REVOKED):
        _jit(-timedelta(days=3), status=status)
    assert check_expiry_sweep()[0]


@pytest.mark.postgres
def test_the_check_reads_the_partial_index_even_when_the_statistics_say_most_grants_are_overdue():
    # given statistics taken while 2,000 active grants were overdue, then a sweep that ended them
    # all (before autovacuum analyses the table again): the state in which EXISTS chose a full scan
    owner = MachineFactory().owner
    entitlement = EntitlementFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO governance_identity (name, kind, status, email, team, description, credential_type,"
            " secret_location, may_self_request, created_at, updated_at, owner_id)"
            " SELECT 'health-' || g, 'service_account', 'active', '', '', '', '', '', false, now(), now(), %s"
            " FROM generate_series(1, 2000) g",
            [owner.pk],
        )
        cursor.execute(
            "INSERT INTO governance_grant (identity_id, entitlement_id, kind, status, granted_at, expires_at, reason,"
            " end_reason, no_renew, connector_reference, last_error, created_at, updated_at)"
            " SELECT id, %s, 'jit', 'active', now() - interval '2 hours', now() - interval '1 hour', '', '', false,"
            " '', '', now(), now() FROM governance_identity WHERE name LIKE 'health-%%'",
            [entitlement.pk],
        )
        cursor.execute("ANALYZE governance_grant")
        cursor.execute("UPDATE governance_grant SET status = 'revoking' WHERE status = 'active'")
    # when health is asked
    with CaptureQueriesContext(connection) as captured:
        ok, _detail = check_expiry_sweep()
    # then it is green, and its question about grants reads the partial index, not the table
    assert ok
    (sql,) = [q["sql"] for q in captured.captured_queries if "governance_grant" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "gov_grant_active_expiry_idx" in plan, plan
    assert "Seq Scan" not in plan and "Gather" not in plan, plan
