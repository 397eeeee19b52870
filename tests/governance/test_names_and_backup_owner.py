"""Names keep no bidi controls, and an owner is never their own backup owner, whichever way they come in:
page, API or import. Ref: #11 (point 9)."""

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from audit.kernel.text import BIDI_CONTROLS, clean_name, strip_bidi
from audit.models import AuditEvent
from audit.services import Actor
from governance.models import Identity, SodRule, System
from governance.services.imports import ImportRejected, import_apply
from tests.api import API, api
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db

# "invoice-\u202egpj.exe" is shown as "invoice-exe.jpg": a name that disguises itself.
DISGUISED = "invoice-\u202egpj.exe\u202c"
PLAIN = "invoice-gpj.exe"


def run(entity: str, text: str):
    return import_apply(actor=Actor.system(), entity=entity, fmt="csv", content=text.encode(), file_name="f.csv")


def rejected(entity: str, text: str) -> list[tuple[int, str]]:
    with pytest.raises(ImportRejected) as caught:
        run(entity, text)
    return [(e.line, e.message) for e in caught.value.row_errors]


#
# Bidi controls
#
def test_every_bidi_control_is_stripped_and_nothing_else():
    assert len(BIDI_CONTROLS) == 9
    assert strip_bidi("a" + "".join(sorted(BIDI_CONTROLS)) + "b\u200fc é") == "ab\u200fc é"
    assert clean_name(" \u2066Ada\u2069 ") == "Ada"


def test_an_identity_registered_on_the_page_keeps_no_bidi_controls_in_its_name_or_team(client, owner):
    client.force_login(owner.user)
    response = client.post(
        reverse("governance:identity_create"),
        {
            "kind": "service_account",
            "owner": owner.user.username,
            "name": DISGUISED,
            "team": "\u2067Payments\u2069",
            "credential_type": "static_secret",
            "secret_location": "secrets_manager",
        },
    )
    assert response.status_code == 302, response.context["form"].errors
    created = Identity.objects.get(kind="service_account")
    assert (created.name, created.team) == (PLAIN, "Payments")


def test_a_system_added_on_the_page_keeps_no_bidi_controls_in_its_name(client, admin_user):
    owner = PersonFactory()
    client.force_login(admin_user)
    response = client.post(
        reverse("governance:system_create"),
        {"name": "\u202dLedger\u202c", "owner": owner.user.username, "criticality": "high", "description": ""},
    )
    assert response.status_code == 302, response.context["form"].errors
    assert System.objects.filter(name="Ledger").exists()


def test_an_sod_rule_named_on_the_page_keeps_no_bidi_controls(client, admin_user):
    pair = [EntitlementFactory().pk, EntitlementFactory().pk]
    client.force_login(admin_user)
    client.post(
        reverse("governance:sod_rule_create"),
        {"name": "Pay\u202eee\u202c", "entitlements": pair, "severity": "high", "action": "block"},
    )
    assert SodRule.objects.get().name == "Payee"


def test_names_sent_through_the_api_keep_no_bidi_controls(admin_user, owner, bot):
    # a system created, an identity renamed, an entitlement created
    created = api(admin_user).post(f"{API}/systems/", {"name": "\u202bLedger\u202c", "owner": owner.pk}, format="json")
    assert created.status_code == 201, created.json()
    renamed = api(owner.user).patch(f"{API}/identities/{bot.pk}/", {"name": DISGUISED}, format="json")
    assert renamed.status_code == 200, renamed.json()
    system = System.objects.get(pk=created.json()["id"])
    added = api(admin_user).post(
        f"{API}/entitlements/", {"system": system.pk, "name": "read\u2068er\u2069", "owner": owner.pk}, format="json"
    )
    assert added.status_code == 201, added.json()
    assert system.name == "Ledger" and created.json()["name"] == "Ledger"
    assert Identity.objects.get(pk=bot.pk).name == PLAIN
    assert system.entitlements.get().name == "reader"


def test_names_imported_from_a_file_keep_no_bidi_controls():
    run("identities", "external_id,name,kind,team\np-1,\u202eAda\u202c,human,\u2066Platform\u2069\n")
    run("systems", f"external_id,name,owner_external_id\nsys-1,{DISGUISED},p-1\n")
    person = Identity.objects.get(external_id="p-1")
    assert (person.name, person.team) == ("Ada", "Platform")
    assert System.objects.get(external_id="sys-1").name == PLAIN


#
# An owner is not their own backup owner
#
def test_the_owner_page_refuses_the_owner_as_backup_beside_the_backup_field(client, owner, bot):
    client.force_login(owner.user)
    response = client.post(
        reverse("governance:identity_owner", args=[bot.pk]),
        {"owner": owner.user.username, "backup_owner": owner.user.username, "reason": "cover"},
    )
    assert response.status_code == 400
    assert response.context["form"].errors["backup_owner"] == ["Cannot be the owner: name someone else, or nobody."]
    assert 'id="id_backup_owner_error"' in response.content.decode()
    bot.refresh_from_db()
    assert bot.backup_owner_id is None
    assert not AuditEvent.objects.filter(action="identity.owner_changed").exists()


def test_the_api_refuses_the_owner_as_backup_naming_the_field(admin_user, owner, bot):
    patched = api(owner.user).patch(f"{API}/identities/{bot.pk}/", {"backup_owner": owner.pk}, format="json")
    assert patched.status_code == 400 and "backup_owner" in patched.json()["errors"]
    created = api(admin_user).post(
        f"{API}/identities/",
        {"name": "ci-key", "kind": "api_key", "owner": owner.pk, "backup_owner": owner.pk},
        format="json",
    )
    assert created.status_code == 400 and "backup_owner" in created.json()["errors"]
    assert Identity.objects.get(pk=bot.pk).backup_owner_id is None
    assert not Identity.objects.filter(name="ci-key").exists()


def test_an_import_row_naming_the_owner_as_backup_is_a_row_error():
    # given a person, and a machine they already own
    PersonFactory(external_id="p-1")
    existing = MachineFactory(external_id="svc-2", owner=Identity.objects.get(external_id="p-1"))
    message = "backup owner cannot be the owner: name someone else, or nobody"
    # when a new row names its owner twice, one of the file's own people included
    both = rejected(
        "identities",
        "\n".join(
            [
                "external_id,name,kind,owner_external_id,backup_owner_external_id",
                "svc-1,billing-sync,service_account,p-1,p-1",
                "svc-3,etl,workload,p-9,p-9",
                "p-9,New Person,human,,",
            ]
        ),
    )
    # and when a row names as backup the owner it already has (no owner column: the stored one stays)
    kept = rejected(
        "identities", "external_id,name,kind,backup_owner_external_id\nsvc-2,deploy-key,service_account,p-1\n"
    )
    # then each is a row error and nothing is written
    assert both == [(2, message), (3, message)]
    assert kept == [(2, message)]
    existing.refresh_from_db()
    assert existing.backup_owner_id is None and not Identity.objects.filter(external_id="svc-1").exists()


def test_the_database_refuses_the_owner_as_backup(bot):
    with pytest.raises(IntegrityError), transaction.atomic():
        Identity.objects.filter(pk=bot.pk).update(backup_owner=bot.owner)


def test_a_different_backup_owner_is_still_accepted(owner, bot):
    backup = PersonFactory()
    response = api(owner.user).patch(f"{API}/identities/{bot.pk}/", {"backup_owner": backup.pk}, format="json")
    assert response.status_code == 200, response.json()
    assert Identity.objects.get(pk=bot.pk).backup_owner == backup
