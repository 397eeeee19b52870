"""A connector that keeps failing leaves the grant visibly failed, with its owner told, never waiting forever."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent, OutboxMessage, OutboxStatus
from audit.outbox import outbox_dispatch, outbox_retry
from governance.choices import GrantStatus
from governance.connectors import CONNECTORS, BaseConnector, Outcome
from governance.errors import InvalidTransition, PermissionRefused
from governance.models import Notification
from governance.services.grants import grant_create, grant_retry_provision, grant_revoke
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db


class UnreachableConnector(BaseConnector):
    def provision(self, grant) -> Outcome:
        raise ConnectionError("target unreachable")

    def revoke(self, grant) -> Outcome:
        raise ConnectionError("target unreachable")


class WorkingConnector(BaseConnector):
    def provision(self, grant) -> Outcome:
        return Outcome.CONFIRMED

    def revoke(self, grant) -> Outcome:
        return Outcome.CONFIRMED


@pytest.fixture
def connector(monkeypatch, settings):
    """Point the `manual` connector at a stand-in target; one attempt before a message goes dead."""
    settings.OUTBOX_MAX_ATTEMPTS = 1

    def use(cls):
        monkeypatch.setitem(CONNECTORS, "manual", f"{__name__}.{cls.__name__}")

    return use


def _issue():
    entitlement = EntitlementFactory()
    return grant_create(actor=None, identity=MachineFactory(), entitlement=entitlement)


def test_provisioning_that_goes_dead_marks_the_grant_failed_and_tells_the_system_owner(connector):
    connector(UnreachableConnector)
    grant = _issue()
    assert outbox_dispatch().dead == 1
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PROVISION_FAILED and "target unreachable" in grant.last_error
    assert AuditEvent.objects.filter(action="grant.provision_failed", target_id=str(grant.pk)).count() == 1
    owner = grant.entitlement.system.owner.user
    assert Notification.objects.filter(recipient=owner, kind="grant.connector_failed").count() == 1


def test_the_system_owner_retries_provisioning_and_the_grant_becomes_active(connector):
    connector(UnreachableConnector)
    grant = _issue()
    outbox_dispatch()
    connector(WorkingConnector)  # the target is back
    grant_retry_provision(grant_id=grant.pk, actor=grant.entitlement.system.owner.user)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PENDING_PROVISION
    outbox_dispatch()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE and grant.last_error == ""
    assert AuditEvent.objects.filter(action="grant.provision_retried", target_id=str(grant.pk)).count() == 1


def test_only_the_system_owner_retries_and_only_a_failed_grant(connector):
    connector(UnreachableConnector)
    grant = _issue()
    with pytest.raises(InvalidTransition):
        grant_retry_provision(grant_id=grant.pk, actor=grant.entitlement.system.owner.user)
    outbox_dispatch()
    with pytest.raises(PermissionRefused):
        grant_retry_provision(grant_id=grant.pk, actor=PersonFactory().user)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PROVISION_FAILED


def test_an_admin_retrying_the_dead_message_finishes_the_work(connector, admin_user):
    connector(UnreachableConnector)
    grant = _issue()
    outbox_dispatch()
    connector(WorkingConnector)
    outbox_retry(message_id=OutboxMessage.objects.get(kind="connector.provision").pk, actor=admin_user)
    outbox_dispatch()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE


def test_removal_that_goes_dead_marks_the_grant_revoke_failed_never_revoked(connector):
    connector(UnreachableConnector)
    grant = GrantFactory()
    grant_revoke(grant_id=grant.pk, actor=None, reason="no longer needed")
    assert outbox_dispatch().dead == 1
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKE_FAILED and grant.revoked_at is None
    assert OutboxMessage.objects.get(kind="connector.revoke").status == OutboxStatus.DEAD


def test_retry_granting_from_the_grant_page(client, connector):
    connector(UnreachableConnector)
    grant = _issue()
    outbox_dispatch()
    connector(WorkingConnector)
    url = reverse("governance:grant_detail", args=[grant.pk])
    client.force_login(grant.entitlement.system.owner.user)
    assert b"Retry granting" in client.get(url).content
    response = client.post(reverse("governance:grant_retry_provision", args=[grant.pk]), follow=True)
    assert b"Provisioning asked again" in response.content
    outbox_dispatch()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE


def test_someone_else_cannot_retry_from_the_page(client, connector):
    connector(UnreachableConnector)
    grant = _issue()
    outbox_dispatch()
    client.force_login(grant.identity.owner.user)  # may see the grant, may not act for the system
    response = client.post(reverse("governance:grant_retry_provision", args=[grant.pk]), follow=True)
    assert response.status_code == 403
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PROVISION_FAILED
    assert not AuditEvent.objects.filter(action="grant.provision_retried").exists()
