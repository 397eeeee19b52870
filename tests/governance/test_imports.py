"""Inventory import and export (issue 3, item 6): all rows or none, idempotent, spreadsheet-safe."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent
from audit.services import Actor
from governance.choices import GrantKind, GrantStatus, IdentityKind
from governance.imports.exports import csv_chunks, json_chunks
from governance.models import Entitlement, Grant, Identity, System
from governance.services.imports import ImportRejected, import_apply
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db

HEADER = (
    "external_id,name,kind,status,email,team,owner_external_id,backup_owner_external_id,manager_external_id,"
    "credential_type,secret_location,last_rotated_at,rotation_period_days,last_used_at,may_self_request"
)
GOOD_IDENTITIES = "\n".join(
    [
        HEADER,
        "p-1,Ada Lovelace,human,active,ada@example.org,Platform,,,,,,,,,false",
        "p-2,Grace Hopper,human,active,grace@example.org,Platform,,,p-1,,,,,,",
        # Owned by people defined above and below it in the same file.
        "svc-1,billing-sync,service_account,active,,Payments,p-3,p-2,,static_secret,secrets_manager,2024-05-01T10:00:00Z,90,,false",
        "p-3,Alan Turing,human,active,alan@example.org,Payments,,,p-1,,,,,,",
        "key-1,ci-deploy-key,api_key,active,,Platform,p-1,,,static_secret,ci_cd,2024-01-01,30,2024-06-01T08:30:00+02:00,",
        "agent-1,triage-bot,ai_agent,active,,Support,p-2,,,short_lived_token,secrets_manager,,,,true",
    ]
)


def run(entity: str, text: str | bytes, fmt: str = "csv", **kwargs):
    content = text.encode() if isinstance(text, str) else text
    return import_apply(actor=Actor.system(), entity=entity, fmt=fmt, content=content, file_name=f"f.{fmt}", **kwargs)


def rejected(entity: str, text: str, fmt: str = "csv") -> list[tuple[int, str]]:
    with pytest.raises(ImportRejected) as caught:
        run(entity, text, fmt)
    return [(e.line, e.message) for e in caught.value.row_errors]


def export_text(entity: str, fmt: str = "csv") -> str:
    return "".join(json_chunks(entity) if fmt == "json" else csv_chunks(entity))


#
# Validation: every bad row reported, nothing written
#
def test_a_malformed_csv_imports_nothing_and_reports_every_bad_row_by_line():
    # given a file with one good row and five distinct bad ones
    PersonFactory(external_id="boss")
    text = "\n".join(
        [
            HEADER,
            "ok-1,Fine Person,human,active,fine@example.org,,,,,,,,,,",
            "bad-1,Bad Kind,robot,active,,,,,,,,,,,",
            "bad-2,No Owner,service_account,active,,,,,,,,,,,",
            "bad-3,Unknown Owner,api_key,active,,,ghost,,,,,,,,",
            "bad-4,Short row,human",
            "ok-1,Duplicate,human,active,,,,,,,,,,,",
            "bad-5,Bad date,workload,active,,,boss,,,,,yesterday,,,",
        ]
    )
    before = AuditEvent.objects.count()

    # when
    errors = rejected("identities", text)

    # then each bad row is reported with its line and reason, and nothing was written
    lines = {line for line, _ in errors}
    assert lines == {3, 4, 5, 6, 7, 8}
    reasons = dict(errors)
    assert "robot" in reasons[3]
    assert "needs an owner" in reasons[4]
    assert "unknown owner external id 'ghost'" in reasons[5]
    assert "expected 15 columns, found 3" in reasons[6]
    assert "duplicate external_id 'ok-1' (first on line 2)" in reasons[7]
    assert "ISO 8601" in reasons[8]
    assert not Identity.objects.filter(external_id="ok-1").exists()
    assert AuditEvent.objects.count() == before


def test_a_bom_and_crlf_are_accepted():
    # given the good file as Excel writes it
    content = b"\xef\xbb\xbf" + GOOD_IDENTITIES.replace("\n", "\r\n").encode() + b"\r\n"

    # when
    result = run("identities", content)

    # then
    assert (result.created, result.updated, result.unchanged) == (6, 0, 0)
    svc = Identity.objects.get(external_id="svc-1")
    assert svc.owner.external_id == "p-3" and svc.backup_owner.external_id == "p-2"
    assert Identity.objects.get(external_id="p-3").manager.external_id == "p-1"
    key = Identity.objects.get(external_id="key-1")
    assert key.last_used_at == datetime(2024, 6, 1, 6, 30, tzinfo=UTC)
    assert key.rotation_period_days == 30


def test_the_same_good_file_twice_changes_nothing_the_second_time():
    # given the file imported once, with a history row and an audit event per identity plus a summary
    first = run("identities", GOOD_IDENTITIES)
    assert first.created == 6
    assert AuditEvent.objects.filter(action=AuditAction.IDENTITY_CREATED).count() == 6
    summary = AuditEvent.objects.get(action=AuditAction.IMPORT_APPLIED)
    assert summary.data["created"] == 6 and len(summary.data["sha256"]) == 64
    assert Identity.history.count() == 6
    events, history = AuditEvent.objects.count(), Identity.history.count()

    # when the same file comes again
    second = run("identities", GOOD_IDENTITIES)

    # then nothing is created, updated, saved or audited
    assert (second.created, second.updated, second.unchanged) == (0, 0, 6)
    assert AuditEvent.objects.count() == events
    assert Identity.history.count() == history


def test_a_changed_row_updates_only_that_identity_and_audits_the_difference():
    # given
    run("identities", GOOD_IDENTITIES)
    changed = GOOD_IDENTITIES.replace(
        "billing-sync,service_account,active,,Payments", "billing-sync,service_account,active,,Finance"
    )

    # when
    result = run("identities", changed)

    # then
    assert (result.created, result.updated, result.unchanged) == (0, 1, 5)
    event = AuditEvent.objects.get(action=AuditAction.IDENTITY_UPDATED)
    assert event.data["before"] == {"team": "Payments"} and event.data["after"] == {"team": "Finance"}
    assert Identity.objects.get(external_id="svc-1").team == "Finance"


def test_unknown_owner_is_refused():
    errors = rejected("identities", f"{HEADER}\nsvc-9,lonely,service_account,active,,,nobody,,,,,,,,\n")
    assert errors == [(2, "unknown owner external id 'nobody'")]


def test_owner_must_be_a_person():
    MachineFactory(external_id="m-1")
    errors = rejected("identities", f"{HEADER}\nsvc-9,chained,service_account,active,,,m-1,,,,,,,,\n")
    assert errors == [(2, "owner must be a human identity (m-1)")]


def test_people_follow_the_same_rules_as_in_the_portal():
    PersonFactory(external_id="p-boss")
    PersonFactory(external_id="p-gone", status="offboarded")
    text = "\n".join(
        [
            HEADER,
            "p-8,Owned Person,human,active,,,p-boss,,,,,,,,",
            "p-9,Left Manager,human,active,,,,,p-gone,,,,,,",
        ]
    )
    errors = rejected("identities", text)
    assert errors[0] == (2, "a person has no owner; their manager answers for them")
    assert errors[1][0] == 3 and "p-gone" in errors[1][1]
    assert not Identity.objects.filter(external_id__in=["p-8", "p-9"]).exists()


def test_duplicate_external_id_is_refused():
    text = "external_id,name,kind\np-1,One,human\np-2,Two,human\np-1,Again,human\n"
    assert rejected("identities", text) == [(4, "duplicate external_id 'p-1' (first on line 2)")]


def test_wrong_column_count_is_refused():
    text = "external_id,name,kind\np-1,One,human,extra\np-2,Two\n"
    assert rejected("identities", text) == [(2, "expected 3 columns, found 4"), (3, "expected 3 columns, found 2")]


def test_missing_required_column_is_refused():
    errors = rejected("identities", "external_id,name\np-1,One\n")
    assert errors == [(1, "missing required column(s): kind")]


def test_status_cannot_be_changed_by_import():
    PersonFactory(external_id="p-1", name="One")
    errors = rejected("identities", "external_id,name,kind,status\np-1,One,human,offboarded\n")
    assert "suspend or offboard in the portal" in errors[0][1]


def test_a_short_row_ending_before_its_external_id_is_reported_by_line():
    # given a file whose external_id is its last column, and a row that stops before it
    text = "name,kind,external_id\nsvc-a,human\nOne,human,p-1\n"

    # when
    errors = rejected("identities", text)

    # then the row is reported like any other of the wrong width, and nothing was written
    assert errors == [(2, "expected 3 columns, found 2")]
    assert not Identity.objects.exists()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_nul_character_in_a_cell_is_reported_by_line_not_a_server_error(fmt):
    text = (
        "external_id,name,kind\np-1,Ad\x00a,human\np-2,Bea,human\n"
        if fmt == "csv"
        else '[\n{"external_id": "p-1", "name": "Ad\\u0000a", "kind": "human"}\n]'
    )

    errors = rejected("identities", text, fmt=fmt)

    assert errors == [(2, "column 'name' contains a NUL character")]
    assert not Identity.objects.exists()


ENTITLEMENT_HEADER = "external_id,system_external_id,name,owner_external_id,max_duration_hours,review_cadence_days"


@pytest.mark.parametrize(
    ("entity", "row", "reason"),
    [
        (
            "identities",
            "external_id,name,kind,owner_external_id,rotation_period_days\nsvc-1,bot,service_account,owner-1,99999999999",
            "rotation_period_days must be at most 2147483647",
        ),
        (
            "entitlements",
            f"{ENTITLEMENT_HEADER}\nent-1,sys-1,admin,owner-1,,99999999999",
            "review_cadence_days must be at most",
        ),
        (
            "entitlements",
            f"{ENTITLEMENT_HEADER}\nent-1,sys-1,admin,owner-1,1e20,",
            "max_duration_hours must be at most",
        ),
        (
            "entitlements",
            f"{ENTITLEMENT_HEADER}\nent-1,sys-1,admin,owner-1,1e-9,",
            "max_duration_hours must be at least",
        ),
    ],
)
def test_a_number_the_database_cannot_hold_is_reported_by_line(entity, row, reason):
    # given the owner and the system the rows refer to
    owner = PersonFactory(external_id="owner-1")
    SystemFactory(external_id="sys-1", owner=owner)
    events = AuditEvent.objects.count()

    # when
    errors = rejected(entity, row)

    # then the cell is refused before anything is written
    assert len(errors) == 1 and errors[0][0] == 2 and reason in errors[0][1], errors
    assert not Identity.objects.filter(external_id="svc-1").exists()
    assert not Entitlement.objects.exists()
    assert AuditEvent.objects.count() == events


def test_the_same_numbers_in_json_are_refused_too():
    PersonFactory(external_id="owner-1")
    row = {"external_id": "svc-1", "name": "bot", "kind": "service_account", "owner_external_id": "owner-1"}
    text = json.dumps([{**row, "rotation_period_days": 10**12}])
    assert rejected("identities", text, "json") == [(1, "rotation_period_days must be at most 2147483647")]


def test_an_import_that_hands_an_identity_to_another_owner_drops_the_former_owners_delegates():
    from governance import policies
    from governance.services.delegation import delegates_of, identity_delegate

    # given a machine its owner delegated to a colleague
    former, new = PersonFactory(external_id="p-old"), PersonFactory(external_id="p-new")
    colleague = PersonFactory(external_id="p-colleague")
    bot = MachineFactory(external_id="svc-1", owner=former, team="Payments")
    identity_delegate(identity_id=bot.pk, actor=former.user, delegate=colleague)
    assert delegates_of(bot) == [colleague]

    # when an import names another owner (and changes the team)
    header = "external_id,name,kind,owner_external_id,team"
    result = run("identities", f"{header}\nsvc-1,{bot.name},service_account,p-new,Finance\n")

    # then the new owner starts with no delegates, and the handover is audited as one
    assert result.updated == 1
    bot.refresh_from_db()
    assert bot.owner == new and delegates_of(bot) == []
    assert not type(colleague.user).objects.get(pk=colleague.user_id).has_perm(policies.DELEGATED_PERMISSION, bot)
    removed = AuditEvent.objects.get(action=AuditAction.IDENTITY_DELEGATION_REMOVED)
    assert removed.data == {"delegate": colleague.pk, "reason": "owner changed"}
    handed = AuditEvent.objects.get(action=AuditAction.IDENTITY_OWNER_CHANGED)
    assert handed.target_id == str(bot.pk)
    assert handed.data["before"] == {"owner": former.pk} and handed.data["after"] == {"owner": new.pk}
    assert handed.data["source"] == "import"
    updated = AuditEvent.objects.get(action=AuditAction.IDENTITY_UPDATED)
    assert updated.data["before"] == {"team": "Payments"} and updated.data["after"] == {"team": "Finance"}


def test_an_import_that_keeps_the_owner_keeps_the_delegates():
    from governance.services.delegation import delegates_of, identity_delegate

    # given
    owner, colleague = PersonFactory(external_id="p-owner"), PersonFactory()
    bot = MachineFactory(external_id="svc-1", owner=owner, team="Payments")
    identity_delegate(identity_id=bot.pk, actor=owner.user, delegate=colleague)

    # when only the team changes
    run("identities", f"external_id,name,kind,owner_external_id,team\nsvc-1,{bot.name},service_account,p-owner,Ops\n")

    # then
    assert delegates_of(bot) == [colleague]
    assert not AuditEvent.objects.filter(action=AuditAction.IDENTITY_OWNER_CHANGED).exists()


#
# Systems, entitlements, grants
#
def test_catalogue_and_grants_import_and_reimport_as_no_ops():
    # given owners in the inventory
    PersonFactory(external_id="owner-1")
    MachineFactory(external_id="svc-1")
    systems = "external_id,name,description,owner_external_id,criticality,connector\nsys-1,Billing,Money,owner-1,high,manual\n"
    entitlements = (
        "external_id,system_external_id,name,owner_external_id,business_purpose,risk_tier,requestable,"
        "max_duration_hours,justification_required,ticket_required,auto_approve_machines,break_glass_eligible,"
        "allowed_identity_kinds,review_cadence_days,approval_stages\n"
        'ent-1,sys-1,db-admin,owner-1,Run the DB,critical,true,1.5,true,true,false,true,human;service_account,30,"[{""approver"": ""system_owner"", ""quorum"": 1}]"\n'
    )
    expires = (timezone.now() + timedelta(days=2)).isoformat()
    grants = (
        f"external_id,identity_external_id,entitlement_external_id,kind,expires_at\ng-1,svc-1,ent-1,jit,{expires}\n"
    )

    # when
    assert run("systems", systems).created == 1
    assert run("entitlements", entitlements).created == 1
    assert run("grants", grants).created == 1

    # then
    ent = Entitlement.objects.get(external_id="ent-1")
    assert ent.system == System.objects.get(external_id="sys-1")
    assert ent.max_duration == timedelta(minutes=90)
    assert ent.allowed_identity_kinds == ["human", "service_account"]
    assert ent.approval_stages == [{"approver": "system_owner", "quorum": 1}]
    grant = Grant.objects.get(external_id="g-1")
    assert grant.status == GrantStatus.ACTIVE and grant.kind == GrantKind.JIT and grant.granted_at is not None
    assert AuditEvent.objects.filter(action=AuditAction.GRANT_CREATED).count() == 1
    events = AuditEvent.objects.count()
    for entity, text in [("systems", systems), ("entitlements", entitlements), ("grants", grants)]:
        result = run(entity, text)
        assert (result.created, result.updated, result.unchanged) == (0, 0, 1)
    assert AuditEvent.objects.count() == events


def test_a_usage_feed_moves_a_grants_last_use_forward_and_clears_its_unused_finding():
    from governance.services.findings import findings_scan

    long_ago = timezone.now() - timedelta(days=200)
    grant = GrantFactory(
        external_id="g-1",
        identity=MachineFactory(external_id="svc-1"),
        entitlement=EntitlementFactory(external_id="ent-1"),
        granted_at=long_ago,
    )
    findings_scan()
    assert grant.findings.filter(kind="excessive_privilege", status="open").exists()
    header = "external_id,identity_external_id,entitlement_external_id,kind,expires_at,last_used_at\n"
    used = (timezone.now() - timedelta(days=1)).replace(microsecond=0)
    # when the target reports a recent use
    result = run("grants", header + f"g-1,svc-1,ent-1,standing,,{used.isoformat()}\n")
    # then only the last use changed, audited, and the finding resolves on the next scan
    grant.refresh_from_db()
    assert result.updated == 1 and grant.last_used_at == used and grant.status == GrantStatus.ACTIVE
    event = AuditEvent.objects.get(action=AuditAction.GRANT_USAGE_RECORDED)
    assert list(event.data["after"]) == ["last_used_at"] and event.data["source"] == "import"
    findings_scan()
    assert not grant.findings.filter(kind="excessive_privilege", status="open").exists()
    # an older report changes nothing, a future one is refused
    assert run("grants", header + f"g-1,svc-1,ent-1,standing,,{long_ago.isoformat()}\n").unchanged == 1
    future = (timezone.now() + timedelta(days=1)).isoformat()
    assert rejected("grants", header + f"g-1,svc-1,ent-1,standing,,{future}\n") == [
        (2, "last_used_at is in the future")
    ]
    EntitlementFactory(external_id="ent-2")
    assert rejected("grants", header + f"g-2,svc-1,ent-2,standing,,{future}\n") == [
        (2, "last_used_at is in the future")
    ]


def test_a_grant_that_already_exists_live_is_refused():
    grant = GrantFactory(
        identity=MachineFactory(external_id="svc-1"), entitlement=EntitlementFactory(external_id="ent-1")
    )
    text = "external_id,identity_external_id,entitlement_external_id,kind,expires_at\ng-2,svc-1,ent-1,standing,\ng-3,svc-1,nope,standing,\n"
    errors = rejected("grants", text)
    assert errors == [
        (2, "the identity already holds a live grant of this entitlement"),
        (3, "unknown entitlement external id 'nope'"),
    ]
    assert Grant.objects.count() == 1 and grant.pk


def test_an_entitlement_in_an_unknown_system_is_refused():
    PersonFactory(external_id="owner-1")
    text = "external_id,system_external_id,name,owner_external_id,risk_tier\nent-1,sys-x,admin,owner-1,extreme\n"
    errors = rejected("entitlements", text)
    assert (2, "risk_tier: 'extreme' is not one of low, medium, high, critical") in errors


#
# Export
#
def test_export_escapes_cells_a_spreadsheet_would_run():
    # given
    PersonFactory(external_id="p-1", name='=HYPERLINK("http://evil")', team="+1 team")

    # when
    rows = list(csv.DictReader(io.StringIO(export_text("identities"))))

    # then
    assert rows[0]["name"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["team"] == "'+1 team"


def test_an_export_reimported_is_a_no_op_including_escaped_cells_and_portal_objects():
    # given people and machines, one created in the portal (no external id), one with a formula-like name
    owner = PersonFactory(external_id=None, name="-Dash Person")
    MachineFactory(external_id="svc-1", owner=owner, name="@svc")
    SystemFactory(external_id="sys-1", owner=owner)
    EntitlementFactory(external_id=None, owner=owner, max_duration=timedelta(seconds=1000))
    events = AuditEvent.objects.count()

    # when each export is imported back
    for entity in ("identities", "systems", "entitlements", "grants"):
        result = run(entity, export_text(entity))

        # then nothing changes
        assert result.created == result.updated == 0, entity
    assert AuditEvent.objects.count() == events


def test_json_round_trip():
    # given the good CSV imported, then exported as JSON
    run("identities", GOOD_IDENTITIES)
    exported = export_text("identities", "json")
    items = json.loads(exported)
    assert {item["external_id"] for item in items} == {"p-1", "p-2", "p-3", "svc-1", "key-1", "agent-1"}
    assert items[0].keys() == set(HEADER.split(","))

    # when the JSON is imported back, and again into an empty inventory
    assert run("identities", exported, "json").unchanged == 6
    Identity.objects.update(manager=None, backup_owner=None)
    Identity.objects.filter(kind__in=IdentityKind.non_human()).delete()
    Identity.objects.all().delete()
    result = run("identities", exported, "json")

    # then the inventory is rebuilt as it was
    assert result.created == 6
    svc = Identity.objects.get(external_id="svc-1")
    assert svc.owner.external_id == "p-3" and svc.last_rotated_at.year == 2024
    assert Identity.objects.get(external_id="agent-1").may_self_request is True
    assert export_text("identities", "json").count("\n") == exported.count("\n")


def test_json_errors_name_the_line_of_each_object():
    text = '[\n  {"external_id": "p-1", "name": "One", "kind": "human"},\n  {"external_id": "p-2", "name": "", "kind": "human"},\n  {"external_id": "p-3", "kind": "human", "colour": "red"}\n]'
    errors = rejected("identities", text, "json")
    assert errors == [
        (3, "name is required"),
        (4, "missing required column(s): name"),
        (4, "unknown column(s): colour"),
    ]


#
# Commands
#
def test_import_command_dry_run_writes_nothing_and_invalid_files_fail(tmp_path, capsys):
    # given
    good = tmp_path / "people.csv"
    good.write_text(GOOD_IDENTITIES)
    bad = tmp_path / "bad.csv"
    bad.write_text("external_id,name,kind\np-1,One,robot\n")

    # when / then
    call_command("import_inventory", "identities", str(good), "--dry-run")
    assert Identity.objects.count() == 0
    call_command("import_inventory", "identities", str(good))
    assert Identity.objects.count() == 6
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_inventory", "identities", str(bad))
    assert "line 2 [p-1]: kind: 'robot'" in capsys.readouterr().err


def test_export_command_writes_a_file(tmp_path):
    PersonFactory(external_id="p-1")
    out = tmp_path / "out.csv"
    call_command("export_inventory", "identities", "--format", "csv", "-o", str(out))
    assert out.read_text().startswith("external_id,name,kind")


#
# Pages
#
def test_upload_page_is_for_admins_only(client, requester, auditor):
    for user in (requester, auditor):
        client.force_login(user)
        assert client.get(reverse("governance:import")).status_code == 403


def test_admin_uploads_and_sees_a_summary(client, admin_user):
    # given
    client.force_login(admin_user)
    upload = SimpleUploadedFile("people.csv", GOOD_IDENTITIES.encode(), content_type="text/csv")

    # when
    response = client.post(reverse("governance:import"), {"entity": "identities", "format": "csv", "file": upload})

    # then
    assert response.status_code == 200
    assert response.context["result"].created == 6
    assert b"created" in response.content
    event = AuditEvent.objects.get(action=AuditAction.IMPORT_APPLIED)
    assert event.actor_user_id == admin_user.pk


def test_admin_sees_bad_rows_and_that_nothing_was_written(client, admin_user):
    client.force_login(admin_user)
    upload = SimpleUploadedFile("bad.csv", b"external_id,name,kind\np-1,One,robot\np-2,Two\n")
    response = client.post(reverse("governance:import"), {"entity": "identities", "format": "csv", "file": upload})
    assert response.status_code == 400
    content = response.content.decode()
    assert "Nothing was imported" in content and "expected 3 columns, found 2" in content
    assert [e.line for e in response.context["row_errors"]] == [2, 3]
    assert Identity.objects.count() == 0


def test_a_big_file_is_imported_by_a_worker_and_the_page_follows_the_job(
    client, admin_user, settings, django_capture_on_commit_callbacks
):
    from unittest import mock

    from governance.models import ImportJob
    from governance.services.import_jobs import import_job_run

    settings.IMPORT_INLINE_MAX_BYTES = 10
    client.force_login(admin_user)
    upload = SimpleUploadedFile("people.csv", GOOD_IDENTITIES.encode(), content_type="text/csv")
    # when the upload is bigger than an inline import may be
    with (
        mock.patch("governance.tasks.import_job_run_task.delay") as queued,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post(reverse("governance:import"), {"entity": "identities", "format": "csv", "file": upload})
    # then it is queued, nothing is written yet, and the job page says so
    job = ImportJob.objects.get()
    queued.assert_called_once_with(job.pk)
    assert response.status_code == 302 and response["Location"] == reverse("governance:import_job", args=[job.pk])
    assert Identity.objects.count() == 0 and AuditEvent.objects.filter(action=AuditAction.IMPORT_QUEUED).exists()
    waiting = client.get(response["Location"], headers={"HX-Request": "true"})
    assert b"Waiting for a worker" in waiting.content and b'hx-trigger="every 2s"' in waiting.content
    # when the worker runs it (twice: a redelivered task does nothing)
    assert import_job_run(job_id=job.pk) == "succeeded"
    assert import_job_run(job_id=job.pk) == "skipped"
    # then everything is written under the uploader's name, and the page shows the outcome and stops polling
    assert Identity.objects.count() == 6
    assert AuditEvent.objects.get(action=AuditAction.IMPORT_APPLIED).actor_user_id == admin_user.pk
    done = client.get(response["Location"])
    assert b"6 identities rows" in done.content and b"every 2s" not in done.content
    assert bytes(ImportJob.objects.get().content) == b""  # the file is not kept once imported


def test_a_big_bad_file_is_rejected_by_the_worker_with_every_bad_row(client, admin_user, settings):
    from unittest import mock

    from governance.models import ImportJob
    from governance.services.import_jobs import import_job_run

    settings.IMPORT_INLINE_MAX_BYTES = 10
    client.force_login(admin_user)
    upload = SimpleUploadedFile("bad.csv", b"external_id,name,kind\np-1,One,robot\np-2,Two\n")
    with mock.patch("governance.tasks.import_job_run_task.delay"):
        client.post(reverse("governance:import"), {"entity": "identities", "format": "csv", "file": upload})
    job = ImportJob.objects.get()
    assert import_job_run(job_id=job.pk) == "rejected"
    page = client.get(reverse("governance:import_job", args=[job.pk])).content.decode()
    assert "Nothing was imported" in page and "expected 3 columns, found 2" in page
    assert Identity.objects.count() == 0


def _job(admin_user, **kw):
    from governance.models import ImportJob

    return ImportJob.objects.create(
        created_by=admin_user, entity="identities", format="csv", content=GOOD_IDENTITIES.encode(), **kw
    )


def test_an_import_that_breaks_fails_the_job_drops_the_file_and_is_audited(admin_user):
    from unittest import mock

    from governance.models import ImportJob
    from governance.services.import_jobs import import_job_run

    job = _job(admin_user)
    broken = mock.patch("governance.services.import_jobs.import_apply", side_effect=RuntimeError("db gone"))
    with broken, pytest.raises(RuntimeError):
        import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED and job.finished_at and bytes(job.content) == b""
    event = AuditEvent.objects.get(action=AuditAction.IMPORT_FINISHED)
    assert event.data["status"] == "failed" and "nothing was written" in event.data["message"]


def test_a_job_whose_uploader_lost_the_admin_role_is_not_run(admin_user):
    from governance.models import ImportJob
    from governance.services.import_jobs import import_job_run

    job = _job(admin_user)
    admin_user.groups.clear()
    admin_user.is_superuser = False
    admin_user.save()
    assert import_job_run(job_id=job.pk) == ImportJob.Status.FAILED
    assert Identity.objects.count() == 0


def test_the_reaper_fails_lost_runs_and_queues_forgotten_jobs_again(admin_user):
    from unittest import mock

    from governance.models import ImportJob
    from governance.services.import_jobs import import_jobs_reap

    lost = _job(admin_user, status=ImportJob.Status.RUNNING, started_at=timezone.now() - timedelta(hours=1))
    forgotten = _job(admin_user)
    ImportJob.objects.filter(pk=forgotten.pk).update(created_at=timezone.now() - timedelta(hours=1))
    fresh = _job(admin_user)
    with mock.patch("governance.tasks.import_job_run_task.delay") as queued:
        assert import_jobs_reap() == {"failed": 1, "requeued": 1}
    queued.assert_called_once_with(forgotten.pk)
    assert ImportJob.objects.get(pk=lost.pk).status == ImportJob.Status.FAILED
    assert ImportJob.objects.get(pk=fresh.pk).status == ImportJob.Status.QUEUED


def test_import_jobs_are_for_admins_only(client, admin_user, requester):
    from governance.models import ImportJob

    job = ImportJob.objects.create(created_by=admin_user, entity="identities", format="csv", content=b"x")
    client.force_login(requester)
    assert client.get(reverse("governance:import_job", args=[job.pk])).status_code == 403


def test_exports_are_for_admins_and_auditors(client, requester, auditor):
    PersonFactory(external_id="p-1")
    url = reverse("governance:export") + "?entity=identities&format=csv"
    client.force_login(requester)
    assert client.get(url).status_code == 403
    client.force_login(auditor)
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content).decode().startswith("external_id,")
    response = client.get(reverse("governance:export") + "?entity=systems&format=json")
    assert json.loads(b"".join(response.streaming_content)) == []
    assert client.get(reverse("governance:export")).status_code == 200


# SQLite splits a bulk insert into statements of at most 999 parameters: the count is then not flat.
@pytest.mark.postgres
def test_import_runs_the_same_queries_for_3_rows_as_for_60(count_queries):
    # given two files of people with machines they own, one twenty times the other
    def people_file(n: int, tag: str) -> str:
        lines = ["external_id,name,kind,owner_external_id"]
        lines += [f"{tag}-p{i},Person {tag}{i},human," for i in range(n)]
        lines += [f"{tag}-m{i},machine-{tag}{i},workload,{tag}-p{i}" for i in range(n)]
        return "\n".join(lines)

    # when / then: no query per row (one per model to plan, batched writes, one audit call)
    small = count_queries(lambda: run("identities", people_file(3, "a")))
    large = count_queries(lambda: run("identities", people_file(60, "b")))
    assert small == large


def test_a_reference_cycle_among_new_people_is_refused():
    text = "external_id,name,kind,manager_external_id\np-1,One,human,p-2\np-2,Two,human,p-1\np-3,Three,human,p-1\n"
    errors = rejected("identities", text)
    assert [line for line, _ in errors] == [2, 3, 4]
    assert all("cycle" in message for _, message in errors)


def test_usage_of_a_grant_waiting_on_its_system_changes_nothing_so_its_chase_clock_runs_on():
    grant = GrantFactory(
        external_id="g-9",
        identity=MachineFactory(external_id="svc-9"),
        entitlement=EntitlementFactory(external_id="ent-9"),
        status=GrantStatus.REVOKING,
    )
    before = Grant.objects.get(pk=grant.pk).updated_at
    used = (timezone.now() - timedelta(hours=1)).isoformat()
    header = "external_id,identity_external_id,entitlement_external_id,kind,expires_at,last_used_at\n"
    assert run("grants", header + f"g-9,svc-9,ent-9,standing,,{used}\n").unchanged == 1
    assert Grant.objects.get(pk=grant.pk).updated_at == before


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_running_jobs_progress_is_visible_to_the_page_while_its_transaction_is_open(admin_user):
    from unittest import mock

    from django.db import connections

    from governance.models import ImportJob
    from governance.services import import_jobs

    job = _job(admin_user)
    seen_by_another_session = []
    real_import = import_jobs.import_apply

    def watched_import(**kwargs):
        report = kwargs.pop("progress")

        def spy(phase, done, total):
            report(phase, done, total)
            other = connections.create_connection("default")  # as the web process would read it
            with other.cursor() as cursor:
                cursor.execute("SELECT phase, rows_done FROM governance_importjob WHERE id = %s", [job.pk])
                seen_by_another_session.append(cursor.fetchone())
            other.close()

        return real_import(progress=spy, **kwargs)

    with mock.patch.object(import_jobs, "import_apply", watched_import):
        assert import_jobs.import_job_run(job_id=job.pk) == ImportJob.Status.SUCCEEDED
    assert ("validated", 6) in seen_by_another_session and ("written", 6) in seen_by_another_session
    assert ImportJob.objects.get(pk=job.pk).percent == 100
