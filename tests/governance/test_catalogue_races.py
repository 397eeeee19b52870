"""Retiring and naming in the catalogue, raced on PostgreSQL with real concurrent connections.

Retirement is made slow on purpose (a retirement hook that takes a moment, after the live grants
were read): without the locks, a grant or an entitlement created meanwhile slips past it. Which
side wins a round is up to the scheduler; every round must end consistent either way.
"""

import time

import pytest
from django.contrib.auth.models import Group

from audit.services import hold_the_chain, state_change
from governance.choices import GrantStatus, LifecycleStatus
from governance.errors import DomainError, ValidationFailed
from governance.locks import lock_ids
from governance.models import Entitlement, Grant, System
from governance.services import catalogue
from governance.services.catalogue import entitlement_create, entitlement_retire, system_create, system_retire
from governance.services.common import full_clean_or_fail
from governance.services.grants import grant_issue
from tests.concurrency import race, while_holding
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, SystemFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROUNDS = 6
# Access that exists or is being given, and nobody is removing: what a retired entitlement must never have.
KEPT = [GrantStatus.PENDING_PROVISION, GrantStatus.ACTIVE, GrantStatus.PROVISION_FAILED]


def only_domain_errors(results) -> None:
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, DomainError)]
    assert not unexpected, unexpected


@pytest.fixture
def slow_retirement(monkeypatch):
    """Retiring an entitlement takes a moment after it has revoked the grants it found."""

    def take_a_moment(entitlement, actor):
        time.sleep(0.1)

    monkeypatch.setattr(catalogue, "RETIREMENT_HOOKS", [*catalogue.RETIREMENT_HOOKS, take_a_moment])


def test_a_grant_issued_while_its_entitlement_retires_is_refused_or_revoked(slow_retirement):
    for _ in range(ROUNDS):
        # given a live entitlement and an identity about to be granted it
        entitlement, machine = EntitlementFactory(), MachineFactory()

        # when the grant and the retirement happen at once
        results = race(
            lambda e=entitlement, m=machine: grant_issue(actor=None, identity=m, entitlement=e),
            lambda e=entitlement: entitlement_retire(entitlement_id=e.pk, actor=None, reason="replaced"),
        )

        # then the entitlement is retired, and the grant was refused or is being removed
        only_domain_errors(results)
        assert not isinstance(results[1], Exception), results
        if isinstance(results[0], Exception):
            assert isinstance(results[0], ValidationFailed) and "retired" in results[0].message
        entitlement.refresh_from_db()
        assert entitlement.status == LifecycleStatus.RETIRED
        assert not Grant.objects.filter(entitlement=entitlement, status__in=KEPT).exists()


def test_a_grant_issued_while_its_system_retires_is_refused_or_revoked(slow_retirement):
    for _ in range(ROUNDS):
        # given
        entitlement, machine = EntitlementFactory(), MachineFactory()

        # when
        results = race(
            lambda e=entitlement, m=machine: grant_issue(actor=None, identity=m, entitlement=e),
            lambda s=entitlement.system: system_retire(system_id=s.pk, actor=None, reason="decommissioned"),
        )

        # then
        only_domain_errors(results)
        assert not isinstance(results[1], Exception), results
        assert not Grant.objects.filter(entitlement=entitlement, status__in=KEPT).exists()


def test_an_entitlement_added_while_its_system_retires_is_refused_or_retired(slow_retirement):
    for number in range(ROUNDS):
        # given a live system (with one entitlement, so that retiring it takes a moment)
        system = EntitlementFactory().system
        owner = PersonFactory()

        # when an entitlement is added as the system retires
        results = race(
            lambda s=system, o=owner, n=number: entitlement_create(actor=None, system=s, name=f"new-{n}", owner=o),
            lambda s=system: system_retire(system_id=s.pk, actor=None, reason="decommissioned"),
        )

        # then the system is retired and has no live entitlement
        only_domain_errors(results)
        assert not isinstance(results[1], Exception), results
        if isinstance(results[0], Exception):
            assert isinstance(results[0], ValidationFailed) and "retired" in results[0].message
        assert System.objects.get(pk=system.pk).status == LifecycleStatus.RETIRED
        assert not Entitlement.objects.filter(system=system, status=LifecycleStatus.ACTIVE).exists()


def checks_then_a_moment(obj, exclude=None):
    """The services' last check before saving, followed by a moment in which another writer may save."""
    full_clean_or_fail(obj, exclude=exclude)
    time.sleep(0.1)


def test_two_systems_created_with_one_name_at_once_give_one_system_and_a_name_error(monkeypatch):
    # given the checks are slow to become a row (both creators pass them before either saves)
    monkeypatch.setattr(catalogue, "full_clean_or_fail", checks_then_a_moment)
    for number in range(ROUNDS):
        owner = PersonFactory()

        # when two admins add a system of the same name at once
        results = race(*[lambda o=owner, n=number: system_create(actor=None, name=f"Billing {n}", owner=o)] * 2)

        # then one system exists, and the other admin is told beside the name field (never a 500)
        only_domain_errors(results)
        assert System.objects.filter(name=f"Billing {number}").count() == 1
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(errors) == 1 and "name" in errors[0].field_errors, results


def test_two_entitlements_created_with_one_name_at_once_give_one_and_a_name_error(monkeypatch):
    # given
    monkeypatch.setattr(catalogue, "full_clean_or_fail", checks_then_a_moment)
    for number in range(ROUNDS):
        system, owner = SystemFactory(), PersonFactory()

        # when
        results = race(
            *[lambda s=system, o=owner, n=number: entitlement_create(actor=None, system=s, name=f"db-{n}", owner=o)] * 2
        )

        # then
        only_domain_errors(results)
        assert Entitlement.objects.filter(system=system, name=f"db-{number}").count() == 1
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(errors) == 1 and "name" in errors[0].field_errors, results


def test_an_admin_changing_a_users_roles_while_their_identity_is_suspended_does_not_deadlock(admin_user):
    # given a suspension under way: it holds the identity's row and is about to turn the login off
    person = PersonFactory()
    user = person.user

    @state_change  # what the admin's change form is (AdminWritesAreStateChangesMiddleware)
    def admin_edits_the_user():  # save the user, then its groups
        user.first_name = "Renamed"
        user.save()
        user.groups.add(Group.objects.get(name="auditor"))

    # when an admin edits that user meanwhile
    suspended, edited = while_holding(
        lambda: (lock_ids(type(person), [person.pk]), type(user).objects.filter(pk=user.pk).update(is_active=False)),
        hold_the_chain,  # the suspension's commit: its events go onto the chain
        admin_edits_the_user,
    )

    # then both go through, one after the other
    assert not isinstance(suspended, Exception), suspended
    assert not isinstance(edited, Exception), edited
    user.refresh_from_db()
    assert user.first_name == "Renamed" and user.groups.filter(name="auditor").exists()
