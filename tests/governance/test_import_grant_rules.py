"""A grants import meets the request path's rules: no grant to oneself, no pair an SoD "block" rule forbids."""

import pytest
from django.db import connection

from governance.choices import RiskTier
from governance.imports.grant_rules import SELF_GRANT
from governance.models import Grant
from governance.services import imports
from governance.services.imports import ImportConflict, ImportRejected, import_apply
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, SodRuleFactory

pytestmark = pytest.mark.django_db

HEADER = "external_id,identity_external_id,entitlement_external_id,kind,expires_at\n"


def import_grants(actor, *rows: str):
    content = (HEADER + "".join(f"{row}\n" for row in rows)).encode()
    return import_apply(actor=actor, entity="grants", fmt="csv", content=content, file_name="grants.csv")


def refused(actor, *rows: str) -> list[tuple[int, str]]:
    with pytest.raises(ImportRejected) as caught:
        import_grants(actor, *rows)
    return [(e.line, e.message) for e in caught.value.row_errors]


@pytest.fixture
def admin_person(admin_user):
    return PersonFactory(user=admin_user, external_id="p-admin")


def test_an_admin_cannot_import_a_standing_critical_grant_for_themself(admin_person):
    EntitlementFactory(external_id="db-root", risk_tier=RiskTier.CRITICAL)

    assert refused(admin_person.user, "g-1,p-admin,db-root,standing,") == [(2, SELF_GRANT)]
    assert not Grant.objects.exists()


def test_nor_for_a_machine_they_own_or_back_up(admin_person):
    MachineFactory(external_id="svc-mine", owner=admin_person)
    MachineFactory(external_id="svc-backed", backup_owner=admin_person)
    EntitlementFactory(external_id="db-root")

    assert refused(admin_person.user, "g-1,svc-mine,db-root,standing,", "g-2,svc-backed,db-root,standing,") == [
        (2, SELF_GRANT),
        (3, SELF_GRANT),
    ]


def test_another_admins_import_of_the_same_row_is_accepted(admin_person, make_user):
    EntitlementFactory(external_id="db-root", risk_tier=RiskTier.CRITICAL)
    other_admin = PersonFactory(user=make_user("admin2", roles=("admin",)))

    import_grants(other_admin.user, "g-1,p-admin,db-root,standing,")

    assert Grant.objects.get(external_id="g-1").identity == admin_person


def test_a_row_that_completes_a_blocked_pair_with_a_grant_held_is_refused(admin_user):
    machine = MachineFactory(external_id="svc-1")
    pay, approve = EntitlementFactory(external_id="pay"), EntitlementFactory(external_id="approve")
    SodRuleFactory(name="Pay and approve", action="block", entitlements=[pay, approve])
    GrantFactory(identity=machine, entitlement=pay)

    errors = refused(admin_user, "g-1,svc-1,approve,standing,")

    assert errors == [
        (2, "separation of duties (Pay and approve): the identity may not hold this entitlement with what it holds")
    ]
    assert Grant.objects.count() == 1


def test_a_blocked_pair_arriving_in_one_file_is_refused():
    MachineFactory(external_id="svc-1")
    pay, approve = EntitlementFactory(external_id="pay"), EntitlementFactory(external_id="approve")
    SodRuleFactory(name="Pay and approve", action="block", entitlements=[pay, approve])

    errors = refused(None, "g-1,svc-1,pay,standing,", "g-2,svc-1,approve,standing,")

    assert [line for line, _ in errors] == [3]
    assert not Grant.objects.exists()


def test_an_extra_stage_rule_or_an_inactive_block_rule_does_not_refuse_existing_access():
    MachineFactory(external_id="svc-1")
    pay, approve = EntitlementFactory(external_id="pay"), EntitlementFactory(external_id="approve")
    SodRuleFactory(action="extra_stage", entitlements=[pay, approve])
    SodRuleFactory(action="block", is_active=False, entitlements=[pay, approve])

    import_grants(None, "g-1,svc-1,pay,standing,", "g-2,svc-1,approve,standing,")

    assert Grant.objects.count() == 2


@pytest.mark.postgres
def test_a_pair_completed_after_the_file_was_checked_is_refused_when_written(monkeypatch):
    machine = MachineFactory(external_id="svc-1")
    pay, approve = EntitlementFactory(external_id="pay"), EntitlementFactory(external_id="approve")
    SodRuleFactory(name="Pay and approve", action="block", entitlements=[pay, approve])
    planned = imports.plan_for

    def plan_then_someone_is_granted_pay(*args, **kwargs):
        plan = planned(*args, **kwargs)
        GrantFactory(identity=machine, entitlement=pay)  # issued between the check and the write
        return plan

    monkeypatch.setattr(imports, "plan_for", plan_then_someone_is_granted_pay)

    with pytest.raises(ImportConflict) as caught:
        import_grants(None, "g-1,svc-1,approve,standing,")

    assert "separation of duties (Pay and approve)" in caught.value.row_errors[0].message
    assert not Grant.objects.filter(entitlement=approve).exists()
    assert connection.vendor == "postgresql"
