"""An import never reverts an edit made while its file was being checked.

Planning reads the inventory without locks (seconds to minutes for a big file); the write locks
every row the plan changes or relies on and checks it still holds what the plan read. Any change
refuses the whole file, its rows named by line like bad rows, and nothing is written. The edits
here land between the two phases: through the normal services, from a hook after planning.
"""

import random
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent
from audit.services import Actor
from governance.choices import GrantStatus, LifecycleStatus
from governance.imports.plans import plan_for
from governance.imports.readers import read
from governance.imports.specs import REQUIRED_COLUMNS, allowed_columns
from governance.models import Entitlement, Grant, Identity, System
from governance.services import imports
from governance.services.catalogue import entitlement_retire, system_create, system_retire
from governance.services.grants import grant_issue, grant_revoke
from governance.services.identities import identity_create, identity_offboard, identity_update
from governance.services.imports import ImportConflict, ImportRejected, import_apply
from tests.concurrency import race, while_holding
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system()
MACHINES = "external_id,name,kind,team,owner_external_id\n"


def run(entity: str, text: str, **kwargs):
    return import_apply(actor=SYSTEM, entity=entity, fmt="csv", content=text.encode(), file_name="f.csv", **kwargs)


@contextmanager
def between_checking_and_writing(edit):
    """Run `edit` once the import has planned (read and checked every row), before it writes."""
    real = imports.plan_for

    def plan_then_edit(*args, **kwargs):
        plan = real(*args, **kwargs)
        edit()
        return plan

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imports, "plan_for", plan_then_edit)
        yield


def refused(entity: str, text: str, edit) -> list[tuple[int, str, str]]:
    with between_checking_and_writing(edit), pytest.raises(ImportConflict) as caught:
        run(entity, text)
    assert "changed while the file was being imported" in caught.value.message
    assert "nothing was imported" in caught.value.message
    return [(e.line, e.key, e.message) for e in caught.value.row_errors]


def imported_anything() -> bool:
    return AuditEvent.objects.filter(action=AuditAction.IMPORT_APPLIED).exists()


@pytest.fixture
def two_machines():
    """svc-1 and svc-2, owned by p-1, in team Before."""
    person = PersonFactory(external_id="p-1")
    first = MachineFactory(external_id="svc-1", name="one", team="Before", owner=person)
    second = MachineFactory(external_id="svc-2", name="two", team="Before", owner=person)
    return first, second


#
# Identities
#
def test_an_edit_between_checking_and_writing_refuses_the_file_naming_the_row_and_writes_nothing(two_machines):
    # given a file moving both machines to another team
    first, second = two_machines
    text = MACHINES + "svc-1,one,service_account,After,p-1\nsvc-2,two,service_account,After,p-1\n"
    history = Identity.history.count()

    # when someone renames svc-1 in the portal while the file is being imported
    errors = refused(
        "identities",
        text,
        lambda: identity_update(identity_id=first.pk, actor=SYSTEM, changes={"name": "one (renamed)"}),
    )

    # then the whole file is refused, the row named by line, and neither machine was touched by it
    assert errors == [(2, "svc-1", "identity 'svc-1' changed since you checked it; check again")]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.name, first.team) == ("one (renamed)", "Before")
    assert second.team == "Before"
    assert Identity.history.count() == history + 1  # the edit's own
    assert not imported_anything()
    assert not AuditEvent.objects.filter(action=AuditAction.IDENTITY_UPDATED, data__source="import").exists()


def test_an_edit_of_a_column_the_row_keeps_is_a_conflict_too(two_machines):
    # given a file changing svc-1's team and svc-2's name: one write sets both columns on both rows
    first, _second = two_machines
    text = MACHINES + "svc-1,one,service_account,After,p-1\nsvc-2,two renamed,service_account,Before,p-1\n"

    # when svc-1 is renamed meanwhile, a column its own row leaves as it was
    errors = refused(
        "identities", text, lambda: identity_update(identity_id=first.pk, actor=SYSTEM, changes={"name": "edited"})
    )

    # then it is refused rather than written back
    assert [line for line, _, _ in errors] == [2]
    first.refresh_from_db()
    assert (first.name, first.team) == ("edited", "Before")


def test_an_identity_created_with_the_same_external_id_meanwhile_is_a_conflict_not_a_crash():
    # given a file creating p-9
    text = "external_id,name,kind\np-8,Eight,human\np-9,Nine,human\n"

    # when someone registers p-9 in the portal meanwhile
    errors = refused(
        "identities", text, lambda: identity_create(actor=SYSTEM, kind="human", name="Nine", external_id="p-9")
    )

    # then
    assert errors == [(3, "p-9", "identity 'p-9' was created since you checked it; check again")]
    assert list(Identity.objects.values_list("external_id", flat=True)) == ["p-9"]


def test_a_key_taken_by_a_change_not_yet_committed_at_the_check_is_a_conflict_named_by_line(monkeypatch):
    # given a check that cannot see the other row (it committed after the check: here, no check at all)
    monkeypatch.setattr(imports, "_created_meanwhile", lambda plan: [])
    text = "external_id,name,kind\np-8,Eight,human\np-9,Nine,human\n"

    # when the database refuses the insert on its unique index
    errors = refused(
        "identities", text, lambda: identity_create(actor=SYSTEM, kind="human", name="Nine", external_id="p-9")
    )

    # then it is the same conflict, not a server error
    assert errors == [(3, "p-9", "identity 'p-9' was created since you checked it; check again")]
    assert not Identity.objects.filter(external_id="p-8").exists()


def test_a_live_name_taken_meanwhile_is_a_conflict_named_by_line():
    # given a file adding the Ledger system
    owner = PersonFactory(external_id="p-1")
    text = "external_id,name,owner_external_id\nsys-2,Ledger,p-1\n"

    # when someone adds a live system of that name in the portal meanwhile
    errors = refused("systems", text, lambda: system_create(actor=SYSTEM, name="Ledger", owner=owner))

    # then
    assert errors == [(2, "sys-2", "a live system named 'Ledger' appeared since you checked it; check again")]
    assert list(System.objects.values_list("external_id", flat=True)) == [None]


def test_an_owner_offboarded_meanwhile_refuses_the_rows_handing_machines_to_them(two_machines):
    # given a file handing svc-1 to p-2
    PersonFactory(external_id="p-2")
    p2 = Identity.objects.get(external_id="p-2")
    text = MACHINES + "svc-1,one,service_account,Before,p-2\nsvc-2,two,service_account,Before,p-1\n"

    # when p-2 leaves meanwhile
    errors = refused("identities", text, lambda: identity_offboard(identity_id=p2.pk, actor=SYSTEM, reason="left"))

    # then the row relying on p-2 being an active person is named
    assert errors == [(2, "svc-1", "owner 'p-2' changed since you checked it; check again")]
    assert Identity.objects.get(external_id="svc-1").owner.external_id == "p-1"


def test_without_edits_meanwhile_the_import_writes_and_the_same_file_again_is_a_no_op(two_machines):
    # given
    text = MACHINES + "svc-1,one,service_account,After,p-1\nsvc-2,two,service_account,After,p-1\np-5,Five,human,,\n"

    # when
    first = run("identities", text)
    events = AuditEvent.objects.count()
    again = run("identities", text)

    # then
    assert (first.created, first.updated, first.unchanged) == (1, 2, 0)
    assert set(Identity.objects.filter(kind="service_account").values_list("team", flat=True)) == {"After"}
    assert (again.created, again.updated, again.unchanged, again.changed) == (0, 0, 3, False)
    assert AuditEvent.objects.count() == events


def test_an_edit_of_a_row_the_file_leaves_as_it_is_refuses_nothing(two_machines):
    # given a file that changes svc-2 only
    first, second = two_machines
    text = MACHINES + "svc-1,one,service_account,Before,p-1\nsvc-2,two,service_account,After,p-1\n"

    # when svc-1 is edited meanwhile
    with between_checking_and_writing(
        lambda: identity_update(identity_id=first.pk, actor=SYSTEM, changes={"name": "edited"})
    ):
        result = run("identities", text)

    # then the import went ahead and the edit stands
    assert (result.updated, result.unchanged) == (1, 1)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.name, second.team) == ("edited", "After")


#
# Catalogue and grants
#
def test_a_system_retired_meanwhile_is_not_changed_by_the_import():
    system = SystemFactory(external_id="sys-1", name="Ledger", owner=PersonFactory(external_id="p-1"))
    text = "external_id,name,owner_external_id,description\nsys-1,Ledger,p-1,Books\n"
    errors = refused("systems", text, lambda: system_retire(system_id=system.pk, actor=SYSTEM, reason="gone"))
    assert errors == [(2, "sys-1", "system 'sys-1' changed since you checked it; check again")]
    system.refresh_from_db()
    assert system.status == LifecycleStatus.RETIRED and system.description == ""


def test_a_system_retired_meanwhile_takes_no_new_entitlements_from_the_import():
    system = SystemFactory(external_id="sys-1", owner=PersonFactory(external_id="p-1"))
    text = "external_id,system_external_id,name,owner_external_id\nent-1,sys-1,reader,p-1\n"
    errors = refused("entitlements", text, lambda: system_retire(system_id=system.pk, actor=SYSTEM, reason="gone"))
    assert errors == [(2, "ent-1", "system 'sys-1' changed since you checked it; check again")]
    assert not Entitlement.objects.exists()


def test_an_entitlement_changed_by_a_set_based_write_meanwhile_is_not_reverted():
    # given a file giving ent-1 a business purpose
    owner = PersonFactory(external_id="p-1")
    entitlement = EntitlementFactory(
        external_id="ent-1", name="reader", owner=owner, system=SystemFactory(external_id="sys-1", owner=owner)
    )
    text = "external_id,system_external_id,name,owner_external_id,business_purpose\nent-1,sys-1,reader,p-1,Read\n"

    # when an UPDATE that does not touch updated_at changes the same column meanwhile
    errors = refused(
        "entitlements",
        text,
        lambda: Entitlement.objects.filter(pk=entitlement.pk).update(business_purpose="Set elsewhere"),
    )

    # then what the plan read is compared, not the time of the last save
    assert errors == [(2, "ent-1", "entitlement 'ent-1' changed since you checked it; check again")]
    entitlement.refresh_from_db()
    assert entitlement.business_purpose == "Set elsewhere"


def test_an_entitlement_retired_meanwhile_gets_no_imported_grants():
    entitlement = EntitlementFactory(external_id="ent-1")
    MachineFactory(external_id="svc-1")
    text = "external_id,identity_external_id,entitlement_external_id,kind\ng-1,svc-1,ent-1,standing\n"
    errors = refused(
        "grants", text, lambda: entitlement_retire(entitlement_id=entitlement.pk, actor=SYSTEM, reason="gone")
    )
    assert errors == [(2, "g-1", "entitlement 'ent-1' changed since you checked it; check again")]
    assert not Grant.objects.exists()


def test_a_grant_revoked_meanwhile_takes_no_usage_from_the_feed():
    grant = GrantFactory(
        external_id="g-1", identity=MachineFactory(external_id="svc-1"), entitlement=EntitlementFactory(external_id="e")
    )
    used = (timezone.now() - timedelta(hours=1)).isoformat()
    text = f"external_id,identity_external_id,entitlement_external_id,kind,expires_at,last_used_at\ng-1,svc-1,e,standing,,{used}\n"
    errors = refused("grants", text, lambda: grant_revoke(grant_id=grant.pk, actor=SYSTEM, reason="done"))
    assert errors == [(2, "g-1", "grant 'g-1' changed since you checked it; check again")]
    grant.refresh_from_db()
    assert grant.status != GrantStatus.ACTIVE and grant.last_used_at is None


#
# Where a conflict is shown: the page, the worker's job, the command
#
def test_the_import_page_shows_the_conflicting_rows_like_bad_rows(client, admin_user, two_machines):
    client.force_login(admin_user)
    first, _ = two_machines
    upload = SimpleUploadedFile("people.csv", (MACHINES + "svc-1,one,service_account,After,p-1\n").encode())
    with between_checking_and_writing(
        lambda: identity_update(identity_id=first.pk, actor=SYSTEM, changes={"name": "edited"})
    ):
        response = client.post(reverse("governance:import"), {"entity": "identities", "format": "csv", "file": upload})
    assert response.status_code == 400
    content = response.content.decode()
    assert "Nothing was imported" in content and "changed while the file was being imported" in content
    assert "identity &#x27;svc-1&#x27; changed since you checked it; check again" in content
    assert [(e.line, e.key) for e in response.context["row_errors"]] == [(2, "svc-1")]


def test_a_worker_reports_a_conflict_as_a_rejected_job_with_its_rows(admin_user, two_machines):
    from governance.models import ImportJob
    from governance.services.import_jobs import import_job_run

    first, _ = two_machines
    job = ImportJob.objects.create(
        created_by=admin_user,
        entity="identities",
        format="csv",
        content=(MACHINES + "svc-1,one,service_account,After,p-1\n").encode(),
    )
    with between_checking_and_writing(
        lambda: identity_update(identity_id=first.pk, actor=SYSTEM, changes={"name": "edited"})
    ):
        assert import_job_run(job_id=job.pk) == ImportJob.Status.REJECTED
    job.refresh_from_db()
    assert "changed while the file was being imported" in job.message
    assert job.row_errors == [
        {"line": 2, "key": "svc-1", "message": "identity 'svc-1' changed since you checked it; check again"}
    ]


def test_the_command_prints_the_conflicting_rows_and_fails(tmp_path, capsys, two_machines):
    first, _ = two_machines
    path = tmp_path / "machines.csv"
    path.write_text(MACHINES + "svc-1,one,service_account,After,p-1\n")
    with (
        between_checking_and_writing(
            lambda: identity_update(identity_id=first.pk, actor=SYSTEM, changes={"name": "edited"})
        ),
        pytest.raises(CommandError, match="changed while the file was being imported"),
    ):
        call_command("import_inventory", "identities", str(path))
    assert "line 2 [svc-1]: identity 'svc-1' changed since you checked it; check again" in capsys.readouterr().err
    assert Identity.objects.get(pk=first.pk).team == "Before"


def test_a_conflict_is_a_kind_of_rejection():
    assert issubclass(ImportConflict, ImportRejected) and ImportConflict.status_code == 409


#
# The write phase runs again after a deadlock (state_change): from the plan as planned
#
def test_the_write_phase_run_again_after_a_rolled_back_attempt_writes_the_plan_once(two_machines):
    # given a plan creating a person and a machine owned by them, and updating svc-1
    text = MACHINES + "p-7,Seven,human,,\nsvc-7,seven,workload,Ops,p-7\nsvc-1,one,service_account,After,p-1\n"
    parsed = read(
        text.encode(), fmt="csv", allowed=allowed_columns("identities"), required=REQUIRED_COLUMNS["identities"]
    )
    plan = plan_for("identities", parsed.rows)
    result = imports.ImportResult("identities", "csv", "f.csv", "0" * 64, 3, plan.created, plan.updated, 0)

    class Deadlocked(Exception):
        pass

    # when a first attempt is rolled back after writing, and the write phase runs again
    with pytest.raises(Deadlocked), transaction.atomic():
        imports._apply(plan, result, actor=SYSTEM, file_name="f.csv", progress=None)
        raise Deadlocked
    imports._apply(plan, result, actor=SYSTEM, file_name="f.csv", progress=None)

    # then everything is there once, linked to the rows that exist
    seven = Identity.objects.get(external_id="p-7")
    assert Identity.objects.get(external_id="svc-7").owner_id == seven.pk
    assert Identity.objects.get(external_id="svc-1").team == "After"
    assert AuditEvent.objects.filter(action=AuditAction.IMPORT_APPLIED).count() == 1
    assert Identity.history.filter(external_id="p-7").count() == 1


@pytest.mark.postgres
def test_checking_what_the_plan_read_costs_the_same_queries_for_3_rows_as_for_60(count_queries):
    # given people and their machines, then files changing the team of 3 and of 60 of them
    run("identities", "external_id,name,kind\n" + "".join(f"p-{i},P{i},human\n" for i in range(60)))
    run("identities", MACHINES + "".join(f"m-{i},m{i},workload,Old,p-{i}\n" for i in range(60)))

    def team_file(n: int) -> str:
        return MACHINES + "".join(f"m-{i},m{i},workload,New{n},p-{(i + 1) % 60}\n" for i in range(n))

    # when / then: the lock-and-check is a query per batch and model, not per row
    assert count_queries(lambda: run("identities", team_file(3))) == count_queries(
        lambda: run("identities", team_file(60))
    )


#
# A real race on PostgreSQL: an edit racing the write is refused or comes after it, never reverted
#
ROUNDS = 8


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_edit_racing_the_write_is_refused_or_comes_after_it_never_reverted():
    """The file renames a machine and moves it to team Imported; the edit moves it to team Edited.

    Each round ends one of two ways: the import refused (the machine keeps its name), or the import
    applied first and the edit on top (the new name, team Edited). Team Imported would be the edit
    reverted. Which way a round goes is up to the scheduler; both are fine."""
    owner = PersonFactory(external_id="p-1")
    outcomes = []
    for round_ in range(ROUNDS):
        key = f"svc-r{round_}"
        machine = MachineFactory(external_id=key, name=f"original-{round_}", team="Before", owner=owner)
        text = MACHINES + f"{key},imported-{round_},service_account,Imported,p-1\n"
        planned = threading.Event()

        def plan_then_go(*args, real=imports.plan_for, planned=planned, **kwargs):
            plan = real(*args, **kwargs)
            planned.set()
            time.sleep(random.uniform(0, 0.03))  # jitter: either side may get to the row first
            return plan

        def edit(machine=machine, planned=planned):
            planned.wait(10)  # the file has been checked: the edit races its write
            time.sleep(random.uniform(0, 0.01))
            return identity_update(identity_id=machine.pk, actor=SYSTEM, changes={"team": "Edited"})

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(imports, "plan_for", plan_then_go)
            imported, edited = race(lambda text=text: run("identities", text), edit)

        assert isinstance(edited, Identity), edited
        machine.refresh_from_db()
        assert machine.team == "Edited"  # never reverted
        if isinstance(imported, ImportConflict):
            assert [(e.line, e.key) for e in imported.row_errors] == [(2, key)]
            assert machine.name == f"original-{round_}"  # refused: nothing of the file was written
            outcomes.append("refused")
        else:
            assert not isinstance(imported, Exception), imported
            assert imported.updated == 1 and machine.name == f"imported-{round_}"  # applied, the edit on top
            outcomes.append("applied first")
    assert len(outcomes) == ROUNDS
    assert AuditEvent.objects.filter(action=AuditAction.IMPORT_APPLIED).count() == outcomes.count("applied first")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_grants_import_being_written_lets_grants_of_its_entitlement_through_but_holds_its_retirement():
    # given a grants file checked and about to be written (its rows locked as the write phase locks them)
    entitlement = EntitlementFactory(external_id="ent-1")
    MachineFactory(external_id="svc-1")
    another = MachineFactory()
    text = "external_id,identity_external_id,entitlement_external_id,kind\ng-1,svc-1,ent-1,standing\n"
    parsed = read(text.encode(), fmt="csv", allowed=allowed_columns("grants"), required=REQUIRED_COLUMNS["grants"])
    plan = plan_for("grants", parsed.rows)
    assert imports._changed_since_planned(plan) == []

    moments = {}

    def finish():
        moments["import done"] = time.monotonic()

    def issue():
        grant = grant_issue(actor=SYSTEM, identity=another, entitlement=entitlement)
        moments["issued"] = time.monotonic()
        return grant

    def retire():
        entitlement_retire(entitlement_id=entitlement.pk, actor=SYSTEM, reason="gone")
        moments["retired"] = time.monotonic()

    # when a grant of the same entitlement is issued meanwhile: it does not wait (both hold it FOR SHARE)
    _, issued = while_holding(lambda: imports._changed_since_planned(plan), finish, issue)
    assert isinstance(issued, Grant), issued
    assert moments["issued"] < moments["import done"]

    # when the entitlement is retired meanwhile: it waits for the import's transaction to end
    while_holding(lambda: imports._changed_since_planned(plan), finish, retire)
    assert moments["retired"] > moments["import done"]
