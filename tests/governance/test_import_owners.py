"""Owners import the inventory of what they own (admins everything); every error of a row is reported
at once; a template to start from; links to what was created (issue 16, owner item 4)."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEvent
from governance.models import Entitlement, Grant, Identity, ImportJob, System
from governance.services.imports import ImportRejected, import_apply
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, SystemFactory

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
