"""Owners import the inventory of what they own (admins everything); every error of a row is reported
at once; a template to start from; links to what was created (issue 16, owner item 4)."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEvent
from governance.models import Entitlement, Grant, Identity, ImportJob, System
from governance.services.catalogue import system_update
from governance.services.identities import identity_change_owner
from governance.services.imports import ImportConflict, ImportRejected, import_apply
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SystemFactory,
)

pytestmark = pytest.mark.django_db

ID_HEADER = "external_id,name,kind,owner_external_id"
ENT_HEADER = "external_id,system_external_id,name,owner_external_id"


def run(user, entity: str, text: str, **kwargs):
    return import_apply(actor=user, entity=entity, fmt="csv", content=text.encode(), file_name="f.csv", **kwargs)


def refusals(user, entity: str, text: str) -> dict[int, list[str]]:
    with pytest.raises(ImportRejected) as caught:
        run(user, entity, text)
    rows: dict[int, list[str]] = {}
    for error in caught.value.row_errors:
        rows.setdefault(error.line, []).append(error.message)
    return rows


@pytest.fixture
def olu(owner):
    Identity.objects.filter(pk=owner.pk).update(external_id="p-olu")
    owner.refresh_from_db()
    return owner


def test_an_owner_imports_machines_they_own_and_refreshes_those_they_own(olu, bot):
    Identity.objects.filter(pk=bot.pk).update(external_id="svc-bot")

    result = run(
        olu.user,
        "identities",
        f"{ID_HEADER},team\nsvc-new,new-bot,service_account,p-olu,Payments\nsvc-bot,billing-bot,service_account,p-olu,Ops\n",
    )

    assert (result.created, result.updated) == (1, 1)
    assert Identity.objects.get(external_id="svc-new").owner_id == olu.pk
    assert Identity.objects.get(pk=bot.pk).team == "Ops"
    assert result.created_keys == ("svc-new",)


def test_rows_for_what_an_owner_does_not_own_are_refused_each_by_line_and_nothing_is_written(olu):
    stranger = PersonFactory(external_id="p-stranger")
    MachineFactory(external_id="svc-theirs", owner=stranger, name="their-bot")
    before = Identity.objects.count()

    errors = refusals(
        olu.user,
        "identities",
        "\n".join(
            [
                ID_HEADER,
                "svc-mine,mine,service_account,p-olu",  # fine on its own
                "svc-theirs,their-bot,service_account,p-stranger",  # someone else's
                "p-new,New Person,human,",  # a person: admins only
                "svc-gift,gift,service_account,p-stranger",  # registered to someone else
            ]
        ),
    )

    assert 2 not in errors
    assert any("you do not own this identity" in m for m in errors[3])
    assert any("only an admin adds people" in m for m in errors[4])
    assert any("owner_external_id must be you (p-olu)" in m for m in errors[5])
    assert Identity.objects.count() == before
    assert not AuditEvent.objects.filter(action="import.applied").exists()


def test_an_owner_updates_their_systems_but_adds_none_and_leaves_connectors_alone(olu):
    SystemFactory(external_id="sys-mine", owner=olu, name="Mine")
    SystemFactory(external_id="sys-theirs", name="Theirs")
    header = "external_id,name,owner_external_id,connector"

    errors = refusals(
        olu.user,
        "systems",
        f"{header}\nsys-mine,Mine renamed,p-olu,manual\nsys-theirs,Theirs,p-olu,manual\nsys-new,New,p-olu,manual\n",
    )
    assert 2 not in errors
    assert any("you do not own this system" in m for m in errors[3])
    assert any("only an admin adds systems" in m for m in errors[4])

    connector = refusals(olu.user, "systems", f"{header}\nsys-mine,Mine,p-olu,webhook\n")
    assert any("only an admin changes a system's connector" in m for m in connector[2])

    assert run(olu.user, "systems", f"{header}\nsys-mine,Mine renamed,p-olu,manual\n").updated == 1


@pytest.mark.parametrize("admin_only", [(), ("criticality",), ("description", "criticality")])
def test_an_owner_import_is_refused_exactly_what_the_owner_edit_is_refused(olu, monkeypatch, admin_only):
    """One list says which system fields only admins change (`SYSTEM_ADMIN_FIELDS`); the import follows it."""
    from governance.errors import PermissionRefused
    from governance.services import catalogue

    monkeypatch.setattr(catalogue, "SYSTEM_ADMIN_FIELDS", catalogue.SYSTEM_ADMIN_FIELDS | set(admin_only))
    mine = SystemFactory(external_id="sys-mine", owner=olu, name="Mine", description="", criticality="low")
    header = "external_id,name,owner_external_id,description,criticality,connector"
    fields = ("name", "description", "criticality", "connector")
    before = list(System.objects.values_list(*fields))

    errors = refusals(olu.user, "systems", f"{header}\nsys-mine,Mine,p-olu,Money,high,webhook\n")

    listed = ", ".join(sorted({"connector", *admin_only}))
    assert any(f"only an admin changes a system's {listed}" in m for m in errors[2])
    assert list(System.objects.values_list(*fields)) == before
    assert not AuditEvent.objects.filter(action="import.applied").exists()
    for name, value in (("description", "Money"), ("criticality", "high")):
        if name in admin_only:  # the owner's form refuses the same field, as the import did
            with pytest.raises(PermissionRefused):
                catalogue.system_update(system_id=mine.pk, actor=olu.user, changes={name: value})
        else:
            assert run(olu.user, "systems", f"external_id,name,owner_external_id,{name}\nsys-mine,Mine,p-olu,{value}\n")


def test_an_owner_adds_entitlements_to_their_system_only_and_every_error_of_a_row_comes_at_once(olu):
    SystemFactory(external_id="sys-mine", owner=olu)
    SystemFactory(external_id="sys-theirs")
    EntitlementFactory(external_id="ent-theirs")

    errors = refusals(
        olu.user,
        "entitlements",
        "\n".join(
            [
                ENT_HEADER,
                "ent-new,sys-mine,reader,p-olu",
                "ent-there,sys-theirs,writer,p-olu",
                "ent-theirs,sys-theirs,x,p-olu",
                "ent-bad,sys-nowhere,y,p-nobody",  # two things wrong: both said
            ]
        ),
    )

    assert 2 not in errors
    assert any("you do not own this system" in m for m in errors[3])
    assert any("you do not own this entitlement" in m for m in errors[4])
    assert any("unknown system external id 'sys-nowhere'" in m for m in errors[5])
    assert any("unknown owner external id 'p-nobody'" in m for m in errors[5])
    assert not Entitlement.objects.filter(external_id="ent-new").exists()


def test_an_owner_imports_grants_of_their_entitlements_only(olu):
    mine = EntitlementFactory(external_id="ent-mine", owner=olu)
    EntitlementFactory(external_id="ent-theirs")
    MachineFactory(external_id="svc-other")
    header = "external_id,identity_external_id,entitlement_external_id,kind"

    errors = refusals(
        olu.user, "grants", f"{header}\ng-1,svc-other,ent-mine,standing\ng-2,svc-other,ent-theirs,standing\n"
    )
    assert 2 not in errors and any("you do not own this entitlement" in m for m in errors[3])

    assert run(olu.user, "grants", f"{header}\ng-1,svc-other,ent-mine,standing\n").created == 1
    assert Grant.objects.get(external_id="g-1").entitlement_id == mine.pk


#
# What the owner answers for is asked again when the file is written
#
LOST_SINCE = "its owner changed since you checked it; check again"
GRANT_HEADER = "external_id,identity_external_id,entitlement_external_id,kind"


def once_checked(edit):
    """A progress hook running `edit` once: after the file was checked, before it is written."""
    ran = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "validated" and done == total and not ran:
            ran.append(edit())

    return progress


def conflicts(user, entity: str, text: str, edit) -> list[tuple[int, str, str]]:
    with pytest.raises(ImportConflict) as caught:
        run(user, entity, text, progress=once_checked(edit))
    assert not AuditEvent.objects.filter(action="import.applied").exists()
    return [(e.line, e.key, e.message) for e in caught.value.row_errors]


def hand_over(system, to, admin):
    return lambda: system_update(system_id=system.pk, actor=admin, changes={"owner": to})


def test_grants_of_a_system_handed_over_while_the_file_was_checked_are_refused_and_none_written(olu, admin_user):
    # given olu's system with an entitlement she answers for through the system, and one she owns herself
    system = SystemFactory(external_id="sys-mine", owner=olu)
    EntitlementFactory(external_id="ent-via-system", system=system)
    EntitlementFactory(external_id="ent-own", system=system, owner=olu)
    MachineFactory(external_id="svc-other")
    heir = PersonFactory(external_id="p-heir")
    text = f"{GRANT_HEADER}\ng-1,svc-other,ent-via-system,standing\ng-2,svc-other,ent-own,standing\n"

    # when an admin hands the system to someone else meanwhile
    errors = conflicts(olu.user, "grants", text, hand_over(system, heir, admin_user))

    # then the row she no longer answers for is named, and neither grant is written
    assert errors == [(2, "g-1", f"you no longer own entitlement 'ent-via-system' or its system: {LOST_SINCE}")]
    assert not Grant.objects.exists()
    assert System.objects.get(pk=system.pk).owner_id == heir.pk  # the hand-over stands


def test_usage_of_grants_of_a_system_handed_over_meanwhile_is_refused(olu, admin_user):
    system = SystemFactory(external_id="sys-mine", owner=olu)
    grant = GrantFactory(external_id="g-1", entitlement=EntitlementFactory(external_id="ent-1", system=system))
    Identity.objects.filter(pk=grant.identity_id).update(external_id="svc-1")
    text = f"{GRANT_HEADER},last_used_at\ng-1,svc-1,ent-1,standing,2020-01-02T03:04:05Z\n"

    errors = conflicts(olu.user, "grants", text, hand_over(system, PersonFactory(), admin_user))

    assert errors == [(2, "g-1", f"you no longer own entitlement 'ent-1' or its system: {LOST_SINCE}")]
    grant.refresh_from_db()
    assert grant.last_used_at is None


def test_entitlements_of_a_system_handed_over_meanwhile_are_neither_added_nor_changed(olu, admin_user):
    system = SystemFactory(external_id="sys-mine", owner=olu)
    EntitlementFactory(external_id="ent-old", name="old", system=system, owner=PersonFactory(external_id="p-ent"))
    text = f"{ENT_HEADER}\nent-new,sys-mine,reader,p-olu\nent-old,sys-mine,old renamed,p-ent\n"

    errors = conflicts(olu.user, "entitlements", text, hand_over(system, PersonFactory(), admin_user))

    assert errors == [
        (2, "ent-new", f"you no longer own system 'sys-mine': {LOST_SINCE}"),
        (3, "ent-old", f"you no longer own entitlement 'ent-old' or its system: {LOST_SINCE}"),
    ]
    assert list(Entitlement.objects.values_list("external_id", "name")) == [("ent-old", "old")]


def test_a_machine_or_system_handed_over_meanwhile_is_not_changed_in_the_former_owners_name(olu, bot, admin_user):
    Identity.objects.filter(pk=bot.pk).update(external_id="svc-bot")
    system = SystemFactory(external_id="sys-mine", owner=olu, name="Mine")
    heir = PersonFactory(external_id="p-heir")

    machine = conflicts(
        olu.user,
        "identities",
        f"{ID_HEADER},team\nsvc-bot,billing-bot,service_account,p-olu,Ops\n",
        lambda: identity_change_owner(identity_id=bot.pk, actor=admin_user, owner=heir, reason="moved teams"),
    )
    renamed = conflicts(
        olu.user,
        "systems",
        "external_id,name,owner_external_id\nsys-mine,Mine renamed,p-olu\n",
        hand_over(system, heir, admin_user),
    )

    assert machine[0] == (2, "svc-bot", f"you no longer own or back up identity 'svc-bot': {LOST_SINCE}")
    assert renamed[0] == (2, "sys-mine", f"you no longer own system 'sys-mine': {LOST_SINCE}")
    assert Identity.objects.get(pk=bot.pk).team != "Ops" and System.objects.get(pk=system.pk).name == "Mine"


def test_a_change_meanwhile_that_leaves_the_owner_answering_for_the_rows_refuses_nothing(olu, admin_user):
    # given an entitlement olu owns herself, on her system
    system = SystemFactory(external_id="sys-mine", owner=olu)
    EntitlementFactory(external_id="ent-own", system=system, owner=olu)
    MachineFactory(external_id="svc-other")

    # when the system is handed over meanwhile, she still owns the entitlement: its grants are hers to import
    text = f"{GRANT_HEADER}\ng-1,svc-other,ent-own,standing\n"
    result = run(olu.user, "grants", text, progress=once_checked(hand_over(system, PersonFactory(), admin_user)))

    assert result.created == 1


def test_the_system_and_admins_import_everything_as_before(admin_user):
    SystemFactory(external_id="sys-any")
    PersonFactory(external_id="p-any")

    assert run(admin_user, "entitlements", f"{ENT_HEADER}\nent-any,sys-any,reader,p-any\n").created == 1


#
# The page
#
def upload(client, entity: str, text: str):
    file = SimpleUploadedFile("mine.csv", text.encode(), content_type="text/csv")
    return client.post(reverse("governance:import"), {"entity": entity, "format": "csv", "file": file})


def test_an_owner_uploads_and_the_page_links_to_what_was_created(client, olu):
    client.force_login(olu.user)
    assert "You import what you own" in client.get(reverse("governance:import")).content.decode()

    response = upload(client, "identities", f"{ID_HEADER}\nsvc-a,alpha-bot,service_account,p-olu\n")

    assert response.status_code == 200
    created = Identity.objects.get(external_id="svc-a")
    html = response.content.decode()
    assert f'<a href="{reverse("governance:identity_detail", args=[created.pk])}">alpha-bot</a>' in html


def test_the_page_shows_every_error_of_a_row_together(client, olu):
    client.force_login(olu.user)

    response = upload(client, "entitlements", f"{ENT_HEADER}\nent-bad,sys-nowhere,y,p-nobody\n")

    assert response.status_code == 400
    [row] = response.context["row_errors"]
    assert row.line == 2 and len(row.messages) == 2
    assert '<ul class="row-errors">' in response.content.decode()


def test_the_template_has_the_columns_and_no_rows(client, olu):
    client.force_login(olu.user)

    response = client.get(reverse("governance:import_template", args=["entitlements"]))

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="entitlements-template.csv"' in response["Content-Disposition"]
    lines = response.content.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("external_id,system_external_id,name,owner_external_id")
    assert client.get("/inventory/import/template/nothing.csv").status_code == 404


def test_who_may_import(client, requester, auditor, olu):
    for user in (requester, auditor):
        client.force_login(user)
        assert client.get(reverse("governance:import")).status_code == 403
        assert client.get(reverse("governance:import_template", args=["identities"])).status_code == 403
    client.force_login(olu.user)
    assert client.get(reverse("governance:import")).status_code == 200


def test_an_owner_follows_only_their_own_import_jobs(client, olu, admin_user):
    theirs = ImportJob.objects.create(created_by=admin_user, entity="identities", format="csv", content=b"x")
    mine = ImportJob.objects.create(created_by=olu.user, entity="identities", format="csv", content=b"x")
    client.force_login(olu.user)

    assert client.get(reverse("governance:import_job", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("governance:import_job", args=[mine.pk])).status_code == 200
    assert System.objects.count() == 0
