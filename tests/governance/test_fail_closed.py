"""Only an explicit system actor skips permission checks: a machine identity acting without a login
is checked like anyone, and refused where no rule lets it act."""

import pytest

from audit.services import Actor
from governance.errors import PermissionRefused
from governance.models import Grant, System
from governance.services.catalogue import system_update
from governance.services.common import check, is_system
from governance.services.grants import grant_create, grant_revoke
from governance.services.identities import identity_suspend
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, SystemFactory

pytestmark = pytest.mark.django_db


def test_only_none_or_the_explicit_system_actor_is_the_system(admin_user):
    machine = MachineFactory()
    assert is_system(None)
    assert is_system(Actor.system())
    assert not is_system(Actor(identity=machine))
    assert not is_system(Actor(user=admin_user))
    assert not is_system(admin_user)


def test_an_unrelated_machine_cannot_revoke_another_machines_grant():
    grant = GrantFactory()
    stranger = MachineFactory()
    with pytest.raises(PermissionRefused):
        grant_revoke(grant_id=grant.pk, actor=Actor(identity=stranger), reason="take it")
    grant.refresh_from_db()
    assert grant.status == "active"


def test_a_machine_cannot_change_a_systems_settings():
    system = SystemFactory(name="Billing")
    with pytest.raises(PermissionRefused):
        system_update(system_id=system.pk, actor=Actor(identity=MachineFactory()), changes={"name": "Hijacked"})
    assert System.objects.get(pk=system.pk).name == "Billing"


def test_a_machine_cannot_grant_itself_access_or_suspend_another():
    machine, victim = MachineFactory(), MachineFactory()
    entitlement = EntitlementFactory()
    with pytest.raises(PermissionRefused):
        grant_create(actor=Actor(identity=machine), identity=machine, entitlement=entitlement)
    with pytest.raises(PermissionRefused):
        identity_suspend(identity_id=victim.pk, actor=Actor(identity=machine), reason="because")
    assert not Grant.objects.filter(identity=machine).exists()
    victim.refresh_from_db()
    assert victim.status == "active"


def test_an_anonymous_user_is_refused_not_treated_as_the_system():
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(PermissionRefused):
        check(AnonymousUser(), lambda user, obj: True, None, "no")


def test_the_system_still_acts_for_tasks():
    grant = GrantFactory()
    grant_revoke(grant_id=grant.pk, actor=None, reason="expired by the sweep")
    grant.refresh_from_db()
    assert grant.status != "active"
