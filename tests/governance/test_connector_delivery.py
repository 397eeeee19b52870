"""A target is called with no transaction open and no row locked; a permanent refusal fails at once;
a failed removal is asked again by beat until the target confirms it."""

from datetime import timedelta

import psycopg
import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent, OutboxMessage, OutboxStatus
from audit.outbox import outbox_dispatch
from governance.choices import GrantStatus
from governance.connectors import CONNECTORS, BaseConnector, Outcome, PermanentError, Result
from governance.models import Notification
from governance.services.grants import grant_create, grant_revoke, grants_retry_failed_revocations
from governance.tasks import revocations_retry_task
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory

seen: dict[str, object] = {}


def _other_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("options", None)
    return psycopg.connect(**params, autocommit=True)


class ProbingConnector(BaseConnector):
    """Looks, from the target's side, at what the portal holds while it is being called."""

    def provision(self, grant) -> Result:
        seen["in_atomic_block"] = connection.in_atomic_block
        with _other_connection() as other:
            other.execute("SET lock_timeout = '200ms'")
            # Both rows the delivery concerns can be locked by anyone else meanwhile: nothing waits on the target.
            other.execute("SELECT id FROM governance_grant WHERE id = %s FOR UPDATE NOWAIT", [grant.pk])
            other.execute(
                "SELECT id FROM audit_outboxmessage WHERE payload->>'grant_id' = %s FOR UPDATE NOWAIT", [str(grant.pk)]
            )
            seen["locks"] = "free"
        return Result(Outcome.CONFIRMED, reference="probe-1", detail="probe granted the access")


class RefusingConnector(BaseConnector):
    def provision(self, grant) -> Outcome:
        raise PermanentError("401 Unauthorized: the token was refused")

    def revoke(self, grant) -> Outcome:
        raise PermanentError("role does not exist")


class FlakyConnector(BaseConnector):
    def revoke(self, grant) -> Outcome:
        raise ConnectionRefusedError("connection refused")


class WorkingConnector(BaseConnector):
    def revoke(self, grant) -> Result:
        return Result(Outcome.CONFIRMED, detail="REVOKE done")


@pytest.fixture
def use(monkeypatch):
    def use(cls):
        monkeypatch.setitem(CONNECTORS, "manual", f"{__name__}.{cls.__name__}")

    return use


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_target_is_called_with_no_transaction_open_and_nothing_locked(use):
    use(ProbingConnector)
    seen.clear()
    grant = grant_create(actor=None, identity=MachineFactory(), entitlement=EntitlementFactory())
    outbox_dispatch()
    assert OutboxMessage.objects.get(kind="connector.provision").status == OutboxStatus.DELIVERED
    assert seen == {"in_atomic_block": False, "locks": "free"}
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE and grant.connector_reference == "probe-1"
    activated = AuditEvent.objects.get(action="grant.activated", target_id=str(grant.pk))
    assert activated.data["confirmation"] == "probe granted the access"


@pytest.mark.django_db
def test_a_permanent_refusal_fails_at_once_and_names_the_connector_to_owner_and_admins(use, settings, admin_user):
    settings.OUTBOX_MAX_ATTEMPTS = 8
    use(RefusingConnector)
    grant = grant_create(actor=None, identity=MachineFactory(), entitlement=EntitlementFactory())
    result = outbox_dispatch()
    assert (result.dead, result.failed) == (1, 0)
    message = OutboxMessage.objects.get(kind="connector.provision")
    assert message.status == OutboxStatus.DEAD and message.attempts == 1  # no retry storm
    grant.refresh_from_db()
    system = grant.entitlement.system
    assert grant.status == GrantStatus.PROVISION_FAILED
    assert f"manual connector of {system.name}" in grant.last_error and "401 Unauthorized" in grant.last_error
    told = set(Notification.objects.filter(kind="grant.connector_failed").values_list("recipient", flat=True))
    assert told == {admin_user.pk, system.owner.user_id}


@pytest.mark.django_db
def test_a_retriable_error_is_tried_again_later_never_shown_as_revoked(use, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 3
    use(FlakyConnector)
    grant = GrantFactory()
    grant_revoke(grant_id=grant.pk, actor=None, reason="left the team")
    assert outbox_dispatch().failed == 1
    message = OutboxMessage.objects.get(kind="connector.revoke")
    assert message.status == OutboxStatus.PENDING and message.next_attempt_at > timezone.now()
    assert "ConnectionRefusedError" in message.last_error
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING and grant.revoked_at is None


@pytest.mark.django_db
def test_beat_asks_again_for_failed_removals_until_the_target_confirms(use, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 1
    use(RefusingConnector)
    grant = GrantFactory()
    grant_revoke(grant_id=grant.pk, actor=None, reason="left the team")
    outbox_dispatch()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKE_FAILED
    assert grants_retry_failed_revocations() == 0  # too soon: not a retry storm either

    use(WorkingConnector)  # the target is fixed
    with time_machine.travel(timezone.now() + timedelta(minutes=settings.REVOKE_FAILED_RETRY_MINUTES + 1)):
        assert revocations_retry_task() == {"retried": 1}
        outbox_dispatch()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED and grant.revoked_at is not None
    revoked = AuditEvent.objects.get(action="grant.revoked", target_id=str(grant.pk))
    assert revoked.data["confirmation"] == "REVOKE done"
