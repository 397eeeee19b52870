"""The catalogue services refuse what would break other parts: reserved external ids, clashing names."""

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from audit.models import AuditEvent
from governance.errors import ValidationFailed
from governance.models import Entitlement, System
from governance.services import catalogue
from governance.services.catalogue import entitlement_create, entitlement_update, system_create, system_update
from governance.services.external_ids import refuse_reserved_external_id
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db
API = "/api/v1"


@pytest.fixture
def admin():
    identity = PersonFactory(name="Sam")
    identity.user.groups.add(Group.objects.get(name="admin"))
    return identity


#
# The "portal:" namespace is the export's key for records without an external id
#
@pytest.mark.parametrize("value", ["portal:1", "PORTAL:12", " portal:3"])
def test_an_external_id_in_the_portals_namespace_is_refused(value):
    with pytest.raises(ValidationFailed) as caught:
        refuse_reserved_external_id(value)
    assert "external_id" in caught.value.field_errors


@pytest.mark.parametrize("value", [None, "", "svc-1", "my-portal:1"])
def test_other_external_ids_are_accepted(value):
    refuse_reserved_external_id(value)


def test_a_stored_reserved_external_id_sent_back_unchanged_is_no_change():
    refuse_reserved_external_id("portal:9", current="portal:9")


def test_an_admin_cannot_give_a_system_another_records_portal_key(admin):
    # given a system created in the portal (exported as portal:<id>) and another one
    portal_made = SystemFactory(external_id=None)
    other = SystemFactory(external_id="sys-2")
    events = AuditEvent.objects.count()

    # when / then: neither creating nor editing may take the portal's key
    with pytest.raises(ValidationFailed) as caught:
        system_update(system_id=other.pk, actor=admin.user, changes={"external_id": f"portal:{portal_made.pk}"})
    assert "external_id" in caught.value.field_errors
    with pytest.raises(ValidationFailed):
        system_create(actor=admin.user, name="New", owner=PersonFactory(), external_id=f"portal:{portal_made.pk}")
    other.refresh_from_db()
    assert other.external_id == "sys-2" and not System.objects.filter(name="New").exists()
    assert AuditEvent.objects.count() == events


def test_an_owner_cannot_give_an_entitlement_a_portal_key(admin):
    # given
    entitlement = EntitlementFactory(external_id="ent-1")

    # when / then
    with pytest.raises(ValidationFailed) as caught:
        entitlement_update(entitlement_id=entitlement.pk, actor=admin.user, changes={"external_id": "portal:1"})
    assert "external_id" in caught.value.field_errors
    with pytest.raises(ValidationFailed):
        entitlement_create(
            actor=admin.user, system=entitlement.system, name="new", owner=PersonFactory(), external_id="portal:1"
        )
    entitlement.refresh_from_db()
    assert entitlement.external_id == "ent-1"
    assert not Entitlement.objects.filter(name="new").exists()


def test_an_owner_cannot_give_an_identity_another_records_portal_key(admin):
    from governance.models import Identity
    from governance.services.identities import identity_create, identity_update
    from tests.factories.governance import MachineFactory

    bot = MachineFactory(external_id="bot-1")
    with pytest.raises(ValidationFailed) as caught:
        identity_update(identity_id=bot.pk, actor=admin.user, changes={"external_id": f"portal:{admin.pk}"})
    assert "external_id" in caught.value.field_errors
    with pytest.raises(ValidationFailed):
        identity_create(
            actor=admin.user, kind="service_account", name="new-bot", owner=admin, external_id=f"portal:{bot.pk}"
        )
    bot.refresh_from_db()
    assert bot.external_id == "bot-1" and not Identity.objects.filter(name="new-bot").exists()


def test_the_api_answers_a_portal_key_with_a_field_error(admin):
    # given
    system = SystemFactory(external_id="sys-1")
    client = APIClient()
    client.force_authenticate(admin.user)

    # when
    response = client.patch(f"{API}/systems/{system.pk}/", {"external_id": "portal:77"}, format="json")

    # then
    assert response.status_code == 400 and "external_id" in response.json()["errors"], response.json()
    system.refresh_from_db()
    assert system.external_id == "sys-1"


#
# A live name taken by a concurrent writer is a field error, not a 500
#
@pytest.fixture
def name_taken_meanwhile(monkeypatch):
    """Another writer saves the same live name just after the checks passed, as a concurrent one can."""
    checked = catalogue.full_clean_or_fail

    def then_taken(obj, exclude=None):
        checked(obj, exclude=exclude)
        if isinstance(obj, System):
            SystemFactory(name=obj.name)
        else:
            EntitlementFactory(system=obj.system, name=obj.name)

    monkeypatch.setattr(catalogue, "full_clean_or_fail", then_taken)


def test_a_system_name_taken_meanwhile_is_reported_beside_the_name(name_taken_meanwhile):
    # when / then: creating
    with pytest.raises(ValidationFailed) as caught:
        system_create(actor=None, name="Billing", owner=PersonFactory())
    assert "name" in caught.value.field_errors
    assert not System.objects.filter(name="Billing").exists()  # the service's transaction, the other writer's too

    # and renaming
    other = SystemFactory(name="Payroll")
    with pytest.raises(ValidationFailed) as caught:
        system_update(system_id=other.pk, actor=None, changes={"name": "Ledger"})
    assert "name" in caught.value.field_errors
    other.refresh_from_db()
    assert other.name == "Payroll"


def test_an_entitlement_name_taken_meanwhile_is_reported_beside_the_name(name_taken_meanwhile):
    # given
    system = SystemFactory()

    # when / then: creating
    with pytest.raises(ValidationFailed) as caught:
        entitlement_create(actor=None, system=system, name="db-admin", owner=PersonFactory())
    assert "name" in caught.value.field_errors
    assert not Entitlement.objects.filter(system=system, name="db-admin").exists()

    # and renaming
    other = EntitlementFactory(system=system, name="db-reader")
    with pytest.raises(ValidationFailed) as caught:
        entitlement_update(entitlement_id=other.pk, actor=None, changes={"name": "db-owner"})
    assert "name" in caught.value.field_errors
    other.refresh_from_db()
    assert other.name == "db-reader"
