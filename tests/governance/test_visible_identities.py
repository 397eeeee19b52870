"""What a person without inventory-wide read sees of the inventory: themself, what they own, back up,
manage or were delegated (directly or through a group), and nothing else; read through the indexes."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from guardian.shortcuts import assign_perm

from governance import policies, selectors
from governance.models import Identity
from tests.factories.governance import MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db


def visible(user) -> set[int]:
    return set(Identity.objects.filter(selectors._visible_identity_q(user)).values_list("pk", flat=True))


def test_a_person_sees_themself_and_what_they_answer_for_and_nothing_else():
    olu = PersonFactory(name="Olu Owner")
    owned, backed = MachineFactory(owner=olu), MachineFactory(backup_owner=olu)
    report = PersonFactory(manager=olu)
    delegated, via_group = MachineFactory(), MachineFactory()
    assign_perm(policies.DELEGATED_PERMISSION, olu.user, delegated)
    team = Group.objects.create(name="payments-oncall")
    olu.user.groups.add(team)
    assign_perm(policies.DELEGATED_PERMISSION, team, via_group)
    stranger = MachineFactory()

    seen = visible(olu.user)

    assert seen == {olu.pk, owned.pk, backed.pk, report.pk, delegated.pk, via_group.pk}
    assert stranger.pk not in seen
    assert {row.pk for row in selectors.identity_list(user=olu.user)} == seen


@pytest.mark.postgres
def test_the_set_is_read_through_indexes_not_by_walking_every_identity():
    # An OR of the same conditions with the delegations' subqueries can use no index: at 100,000
    # identities it read them all (28 ms) on every page of a requester's. Sequential scans are
    # discouraged here so the plan shows whether the indexes CAN serve it (before: one index read whole,
    # every row filtered by the OR).
    olu = PersonFactory()
    MachineFactory(owner=olu)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = Identity.objects.filter(selectors._visible_identity_q(olu.user)).values("pk").explain()
    # each way in is looked up in its own index; no condition is checked row by row over the table
    for index_condition in ("(id = ", "(owner_id = ", "(backup_owner_id = ", "(manager_id = "):
        assert f"Index Cond: {index_condition}" in plan, plan
    assert "SubPlan" not in plan and "Seq Scan on governance_identity" not in plan, plan
