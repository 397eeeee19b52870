"""An object's audit events on its page are shown only to those who may see them (issue 11, point 6).

The audit trail is closed to approvers and owners: reading the inventory shows them the object, not
its history. Auditors and admins (who read the trail) see every object's events; the people who
answer for an object (an identity's owners, a system's owner, an entitlement's owners, and for a
grant those and the owners of a machine holder) see that object's own. Nobody else sees any: not an
approver, not the owner of something else, not the person an identity is.
"""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from governance.services import catalogue, grants, identities
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db

SECRET = "reason-only-the-trail-knows"
# The event each object of the world has, as the events panel names it.
ACTION = {
    "bob": "identity.suspended",
    "bot": "identity.suspended",
    "system": "system.updated",
    "grant": "grant.revoke_requested",
}


@pytest.fixture
def admin():
    return with_role(PersonFactory(name="Ana Admin"), "admin")


@pytest.fixture
def world(admin):
    """A person, a machine, a system and a grant, each with an event (the reasons name SECRET)."""
    bob = PersonFactory(name="Bob Person")
    owner = with_role(PersonFactory(name="Olu Owner"), "owner")
    bot = MachineFactory(name="billing-bot", owner=owner)
    entitlement = EntitlementFactory(owner=owner, system__owner=owner)
    grant = GrantFactory(identity=bot, entitlement=entitlement)
    identities.identity_suspend(identity_id=bob.pk, actor=admin.user, reason=SECRET)
    identities.identity_suspend(identity_id=bot.pk, actor=admin.user, reason=SECRET)
    catalogue.system_update(system_id=entitlement.system_id, actor=admin.user, changes={"criticality": "critical"})
    grants.grant_revoke(grant_id=grant.pk, actor=admin.user, reason=SECRET)
    return {"bob": bob, "owner": owner, "bot": bot, "system": entitlement.system, "grant": grant}


def page(client, user, name: str, obj):
    client.force_login(user)
    response = client.get(reverse(f"governance:{name}", args=[obj.pk]))
    assert response.status_code == 200
    return response


def shown(client, user, name: str, obj) -> list[AuditEvent]:
    response = page(client, user, name, obj)
    events = list(response.context["events"])
    assert (SECRET in response.content.decode()) == any(SECRET in str(e.data) for e in events)
    return events


def approver():
    return with_role(PersonFactory(name="Abe Approver"), "approver")


def owner_of_something_else():
    other = with_role(PersonFactory(name="Oda Other"), "owner")
    MachineFactory(owner=other)
    EntitlementFactory(owner=other, system__owner=other)
    return other


@pytest.mark.parametrize("who", [approver, owner_of_something_else], ids=["approver", "owner-of-something-else"])
@pytest.mark.parametrize(
    "name,key",
    [("identity_detail", "bob"), ("identity_detail", "bot"), ("system_detail", "system"), ("grant_detail", "grant")],
)
def test_inventory_readers_see_the_object_but_none_of_its_audit_events(client, world, who, name, key):
    reader = who()
    assert shown(client, reader.user, name, world[key]) == []
    assert ACTION[key] not in page(client, reader.user, name, world[key]).content.decode()


def test_a_person_does_not_read_the_audit_trail_of_their_own_identity(client, world):
    bob = world["bob"]
    identities.identity_reactivate(identity_id=bob.pk, actor=None, reason="back")
    assert shown(client, bob.user, "identity_detail", bob) == []


@pytest.mark.parametrize(
    "name,key,action",
    [
        ("identity_detail", "bot", "identity.suspended"),
        ("system_detail", "system", "system.updated"),
        ("grant_detail", "grant", "grant.revoke_requested"),
    ],
)
def test_those_who_answer_for_an_object_see_its_own_events(client, world, name, key, action):
    events = shown(client, world["owner"].user, name, world[key])
    assert action in [e.action for e in events] and all(e.target_id == str(world[key].pk) for e in events)


@pytest.mark.parametrize("role", ["auditor", "admin"])
@pytest.mark.parametrize(
    "name,key",
    [("identity_detail", "bob"), ("identity_detail", "bot"), ("system_detail", "system"), ("grant_detail", "grant")],
)
def test_readers_of_the_audit_trail_see_every_objects_events(client, world, role, name, key):
    reader = PersonFactory(user__roles=[role])
    events = shown(client, reader.user, name, world[key])
    assert ACTION[key] in [e.action for e in events] and all(e.target_id == str(world[key].pk) for e in events)
    assert ACTION[key] in page(client, reader.user, name, world[key]).content.decode()
