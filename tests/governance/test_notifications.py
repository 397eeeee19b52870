"""People hear when their access starts and ends, once each, however often a message is delivered."""

from datetime import timedelta

import pytest
from django.core import mail

from audit.outbox import outbox_dispatch
from governance.models import Notification
from governance.services.grants import grant_confirm_provisioned, grant_confirm_revoked, grant_create, grant_revoke
from governance.services.notifications import notify
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db


def test_the_same_key_notifies_a_person_once_in_the_portal_and_by_email():
    person = PersonFactory()
    person.user.email = "p@example.org"
    person.user.save()
    for _ in range(2):
        notify(recipients=[person.user], kind="x", subject="Hello", key="once")
    outbox_dispatch()
    assert Notification.objects.filter(recipient=person.user).count() == 1
    assert len(mail.outbox) == 1


def test_a_machines_owners_hear_that_its_access_is_active_once():
    backup = PersonFactory()
    machine = MachineFactory(backup_owner=backup)
    entitlement = EntitlementFactory()
    grant = grant_create(actor=None, identity=machine, entitlement=entitlement, kind="jit", duration=timedelta(hours=1))
    for _ in range(2):  # a callback retried
        grant_confirm_provisioned(grant_id=grant.pk, actor=None)
    active = Notification.objects.filter(kind="grant.active")
    assert sorted(n.recipient_id for n in active) == sorted([machine.owner.user_id, backup.user_id])
    assert "until" in active[0].subject


def test_a_person_hears_that_their_access_expired_when_its_removal_is_confirmed():
    person = PersonFactory()
    grant = GrantFactory(identity=person, kind="jit", status="revoking", end_reason="expired")
    grant_confirm_revoked(grant_id=grant.pk, actor=None)
    assert Notification.objects.get(recipient=person.user, kind="grant.expired").link.endswith(f"/{grant.pk}/")


def test_a_revocation_by_someone_else_is_told_and_a_release_by_the_holder_is_not():
    person = PersonFactory()
    revoked = GrantFactory(identity=person)
    grant_revoke(grant_id=revoked.pk, actor=None, reason="audit finding")
    grant_confirm_revoked(grant_id=revoked.pk, actor=None)
    released = GrantFactory(identity=person, status="revoking", end_reason="released")
    grant_confirm_revoked(grant_id=released.pk, actor=None)
    assert list(Notification.objects.filter(recipient=person.user).values_list("kind", flat=True)) == ["grant.revoked"]
