"""Inventory permissions the review found missing (M2, L3-L6): who registers people, who changes a
system's connector, who reads systems, one PATCH as one transaction, and what the grant export holds."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from governance import policies
from governance.choices import IdentityKind, IdentityStatus
from governance.connectors.secrets import secrets_encrypt, settings_with_secrets
from governance.errors import PermissionRefused, ValidationFailed
from governance.imports.exports import export_records
from governance.models import Identity, System
from governance.services.catalogue import system_create, system_update
from governance.services.identities import identity_change_owner, identity_create, identity_update
from tests.api import API, api
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SystemFactory,
)
from tests.factories.governance import with_role as role

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return role(PersonFactory(name="Olu"), "owner")


@pytest.fixture
def admin():
    return role(PersonFactory(name="Sam"), "admin")


@pytest.fixture
def bot(owner):
    return MachineFactory(name="deploy-bot", owner=owner)


#
# M2: only admins register people; a person has no owner; a manager is an active person
#
def test_the_policy_lets_only_admins_register_a_person(owner, admin):
    person = Identity(kind=IdentityKind.HUMAN, name="Pat", owner=owner)
    machine = Identity(kind=IdentityKind.SERVICE_ACCOUNT, name="svc", owner=owner)
    assert not policies.can_register_identity(owner.user, person)
    assert policies.can_register_identity(owner.user, machine)
    assert policies.can_register_identity(admin.user, Identity(kind=IdentityKind.HUMAN, name="Pat"))


@pytest.mark.parametrize("with_owner", [True, False])
def test_a_non_admin_cannot_register_a_person_through_the_api(owner, with_owner):
    body = {"name": "Fake Person", "kind": "human", **({"owner": owner.pk} if with_owner else {})}
    response = api(owner.user).post(f"{API}/identities/", body, format="json")
    assert response.status_code == (400 if with_owner else 403), response.json()
    assert not Identity.objects.filter(name="Fake Person").exists()
    assert not AuditEvent.objects.filter(action="identity.created").exists()


def test_a_non_admin_cannot_register_a_person_in_the_service_either(owner):
    with pytest.raises(PermissionRefused):
        identity_create(actor=owner.user, kind=IdentityKind.HUMAN, name="Fake Person")
    assert not Identity.objects.filter(name="Fake Person").exists()


def test_admin_registers_a_person_without_an_owner_but_not_with_one(admin, owner):
    client = api(admin.user)
    response = client.post(f"{API}/identities/", {"name": "Pat", "kind": "human", "owner": owner.pk}, format="json")
    assert response.status_code == 400 and "owner" in response.json()["errors"]
    response = client.post(
        f"{API}/identities/", {"name": "Pat", "kind": "human", "backup_owner": owner.pk}, format="json"
    )
    assert response.status_code == 400 and "backup_owner" in response.json()["errors"]
    response = client.post(f"{API}/identities/", {"name": "Pat", "kind": "human", "manager": owner.pk}, format="json")
    assert response.status_code == 201 and response.json()["owner"] is None
    assert response.json()["manager"] == owner.pk


def test_a_person_cannot_be_given_an_owner_later(admin, owner):
    person = PersonFactory()
    with pytest.raises(ValidationFailed) as refused:
        identity_change_owner(identity_id=person.pk, actor=admin.user, owner=owner)
    assert "owner" in refused.value.field_errors
    person.refresh_from_db()
    assert person.owner_id is None


@pytest.mark.parametrize("bad_manager", ["machine", "offboarded", "suspended"])
def test_the_manager_must_be_an_active_person(owner, bot, bad_manager):
    manager = {
        "machine": lambda: MachineFactory(owner=owner),
        "offboarded": lambda: PersonFactory(status=IdentityStatus.OFFBOARDED),
        "suspended": lambda: PersonFactory(status=IdentityStatus.SUSPENDED),
    }[bad_manager]()
    client = api(owner.user)
    response = client.post(
        f"{API}/identities/",
        {"name": "etl-agent", "kind": "ai_agent", "owner": owner.pk, "manager": manager.pk},
        format="json",
    )
    assert response.status_code == 400 and "manager" in response.json()["errors"]
    assert not Identity.objects.filter(name="etl-agent").exists()
    response = client.patch(f"{API}/identities/{bot.pk}/", {"manager": manager.pk}, format="json")
    assert response.status_code == 400 and "manager" in response.json()["errors"]
    bot.refresh_from_db()
    assert bot.manager_id is None


def test_an_identity_cannot_manage_itself(admin):
    person = PersonFactory()
    with pytest.raises(ValidationFailed):
        identity_update(identity_id=person.pk, actor=admin.user, changes={"manager": person})


def test_an_active_person_may_manage_and_a_manager_who_left_does_not_block_other_edits(owner, bot):
    manager = PersonFactory()
    identity_update(identity_id=bot.pk, actor=owner.user, changes={"manager": manager})
    Identity.objects.filter(pk=manager.pk).update(status=IdentityStatus.OFFBOARDED)
    bot.refresh_from_db()
    identity_update(identity_id=bot.pk, actor=owner.user, changes={"manager": bot.manager, "team": "Payments"})
    bot.refresh_from_db()
    assert bot.team == "Payments" and bot.manager_id == manager.pk


def test_the_create_page_refuses_a_person_from_a_non_admin(client, owner):
    client.force_login(owner.user)
    response = client.post(reverse("governance:identity_create"), {"kind": "human", "name": "Fake Person"})
    assert response.status_code in (400, 403)
    assert not Identity.objects.filter(name="Fake Person").exists()


#
# L3: connector, its settings and the external id stay with admins; settings never reach the trail
#
OLD_SECRET, NEW_SECRET = "old-secret-0123456789", "new-secret-0123456789"


@pytest.fixture
def system(owner):
    return SystemFactory(
        name="Vault",
        owner=owner,
        connector="webhook",
        connector_settings={
            "url": "https://vault.example/hook",
            "account_attribute": "external_id",
            "holdings_url": "",
            "asynchronous": False,
        },
        connector_secrets=secrets_encrypt({"signing_secret": OLD_SECRET}),
    )


@pytest.mark.parametrize(
    "changes",
    [{"connector": "manual"}, {"external_id": "vault-1"}, {"connector_settings": {"signing_secret": "stolen" * 4}}],
    ids=["connector", "external_id", "connector_settings"],
)
def test_a_system_owner_cannot_change_admin_only_fields(owner, system, changes):
    with pytest.raises(PermissionRefused):
        system_update(system_id=system.pk, actor=owner.user, changes=changes)
    fresh = System.objects.get(pk=system.pk)
    assert (fresh.connector, fresh.external_id) == ("webhook", None)
    assert settings_with_secrets(fresh)["signing_secret"] == OLD_SECRET
    assert not AuditEvent.objects.for_target(system).exists()


def test_a_system_owner_cannot_change_them_through_the_api(owner, system):
    response = api(owner.user).patch(f"{API}/systems/{system.pk}/", {"external_id": "vault-1"}, format="json")
    assert response.status_code == 403
    assert System.objects.get(pk=system.pk).external_id is None


def test_a_system_owner_still_edits_the_rest_and_may_send_back_what_they_read(owner, system):
    client = api(owner.user)
    read = client.get(f"{API}/systems/{system.pk}/").json()
    response = client.patch(
        f"{API}/systems/{system.pk}/",
        {"description": "Secrets", "connector": read["connector"], "external_id": read["external_id"]},
        format="json",
    )
    assert response.status_code == 200 and response.json()["description"] == "Secrets"
    assert "signing_secret" not in json.dumps(read) and OLD_SECRET not in json.dumps(read)


def test_admin_changes_the_connection_and_the_trail_names_changed_settings_but_no_value(admin, system):
    system_update(
        system_id=system.pk,
        actor=admin.user,
        changes={
            "external_id": "vault-1",
            "connector_settings": {"url": "https://vault.example/v2", "signing_secret": NEW_SECRET},
        },
    )
    event = AuditEvent.objects.for_target(system).get(action="system.updated")
    text = json.dumps(event.data)
    assert "secret-0123456789" not in text and "vault.example" not in text
    assert event.data["connector_settings_changed"] == ["signing_secret", "url"]
    assert event.data["after"] == {"external_id": "vault-1"}
    fresh = System.objects.get(pk=system.pk)
    assert settings_with_secrets(fresh)["signing_secret"] == NEW_SECRET
    assert NEW_SECRET not in json.dumps(fresh.connector_settings) + fresh.connector_secrets  # encrypted at rest
    history = list(System.history.filter(id=system.pk).values())
    assert len(history) == 2 and "secret-0123456789" not in str(history)  # the model's history keeps no settings


def test_a_secret_left_out_keeps_its_value_and_only_the_changed_name_is_audited(admin, system):
    system_update(
        system_id=system.pk, actor=admin.user, changes={"connector_settings": {"url": "https://vault.example/v2"}}
    )
    event = AuditEvent.objects.for_target(system).get(action="system.updated")
    assert event.data["connector_settings_changed"] == ["url"]
    assert "connector_settings" not in event.data["after"] and OLD_SECRET not in json.dumps(event.data)
    assert settings_with_secrets(System.objects.get(pk=system.pk))["signing_secret"] == OLD_SECRET


def test_settings_are_checked_against_the_connectors_schema_and_nothing_is_written(admin, system):
    for settings, problem in (({"url": "ftp://vault"}, "connector_settings.url"), ({"x": 1}, "connector_settings")):
        with pytest.raises(ValidationFailed) as refused:
            system_update(system_id=system.pk, actor=admin.user, changes={"connector_settings": settings})
        assert problem in refused.value.field_errors
    fresh = System.objects.get(pk=system.pk)
    assert fresh.connector_settings["url"] == "https://vault.example/hook"
    assert not AuditEvent.objects.for_target(system).exists()


def test_changing_the_connector_drops_the_old_secrets(admin, system):
    system_update(system_id=system.pk, actor=admin.user, changes={"connector": "manual", "connector_settings": {}})
    fresh = System.objects.get(pk=system.pk)
    assert (fresh.connector, fresh.connector_settings, fresh.connector_secrets) == ("manual", {}, "")


def test_creating_a_system_keeps_its_settings_out_of_the_trail(admin, owner):
    created = system_create(
        actor=admin.user,
        name="Okta",
        owner=owner,
        connector="webhook",
        connector_settings={"url": "https://okta.example/hook", "signing_secret": "hunter2hunter2hunter2"},
    )
    event = AuditEvent.objects.for_target(created).get(action="system.created")
    assert "hunter2" not in json.dumps(event.data) and "connector_settings" not in event.data["after"]
    assert {"signing_secret", "url"} <= set(event.data["connector_settings_changed"])
    assert "hunter2" not in json.dumps(created.connector_settings)


#
# L4: who reads systems (page and API agree; a system you may not see is a 404)
#
def test_a_requester_sees_no_one_elses_system_in_the_api_or_the_pages(client, system):
    requester = role(PersonFactory(), "requester")
    assert api(requester.user).get(f"{API}/systems/").json()["results"] == []
    assert api(requester.user).get(f"{API}/systems/{system.pk}/").status_code == 404
    assert api(requester.user).patch(f"{API}/systems/{system.pk}/", {"name": "x"}, format="json").status_code == 404
    client.force_login(requester.user)
    assert client.get(reverse("governance:system_detail", args=[system.pk])).status_code == 404
    assert client.get(reverse("governance:system_list")).status_code == 403


def test_a_requester_who_answers_for_a_system_sees_it(client, system):
    system_owner = role(PersonFactory(), "requester")
    entitlement_owner = role(PersonFactory(), "requester")
    mine = SystemFactory(owner=system_owner)
    EntitlementFactory(system=system, owner=entitlement_owner)
    assert [row["id"] for row in api(system_owner.user).get(f"{API}/systems/").json()["results"]] == [mine.pk]
    assert [row["id"] for row in api(entitlement_owner.user).get(f"{API}/systems/").json()["results"]] == [system.pk]
    client.force_login(system_owner.user)
    assert client.get(reverse("governance:system_detail", args=[mine.pk])).status_code == 200
    assert client.get(reverse("governance:system_edit", args=[mine.pk])).status_code == 200


def test_inventory_readers_see_every_system(system):
    approver = role(PersonFactory(), "approver")
    other = SystemFactory()
    ids = {row["id"] for row in api(approver.user).get(f"{API}/systems/").json()["results"]}
    assert ids == {system.pk, other.pk}


def test_an_inventory_reader_who_does_not_own_a_system_sees_it_but_may_not_edit_it(client, system):
    approver = role(PersonFactory(), "approver")
    client.force_login(approver.user)
    assert client.get(reverse("governance:system_detail", args=[system.pk])).status_code == 200
    assert client.get(reverse("governance:system_edit", args=[system.pk])).status_code == 403


def test_a_requester_still_browses_the_requestable_catalogue(client, system):
    entitlement = EntitlementFactory(system=system, requestable=True)
    requester = role(PersonFactory(), "requester")
    client.force_login(requester.user)
    catalogue = client.get(reverse("jit:request_catalogue"))
    assert catalogue.status_code == 200 and entitlement.name in catalogue.content.decode()
    detail = client.get(reverse("governance:entitlement_detail", args=[entitlement.pk])).content.decode()
    assert "Vault" in detail and reverse("governance:system_detail", args=[system.pk]) not in detail


#
# L5: an identity PATCH is one transaction
#
@pytest.mark.parametrize("second_half", ["refused", "invalid"])
def test_a_patch_whose_edit_is_refused_does_not_keep_its_owner_change(owner, bot, second_half):
    someone, team = PersonFactory(), bot.team
    if second_half == "refused":  # handing the bot away first leaves the caller unable to edit it
        body = {"owner": someone.pk, "team": "Elsewhere"}
    else:  # a new backup owner, then a machine as manager
        body = {"backup_owner": someone.pk, "manager": MachineFactory(owner=owner).pk}
    response = api(owner.user).patch(f"{API}/identities/{bot.pk}/", body, format="json")
    assert response.status_code == (403 if second_half == "refused" else 400)
    bot.refresh_from_db()
    assert (bot.owner_id, bot.backup_owner_id) == (owner.pk, None)
    assert bot.team == team and bot.manager_id is None
    assert not AuditEvent.objects.for_target(bot).exists()


def test_a_patch_that_succeeds_does_both(owner, bot):
    backup = PersonFactory()
    response = api(owner.user).patch(
        f"{API}/identities/{bot.pk}/", {"backup_owner": backup.pk, "team": "Payments"}, format="json"
    )
    assert response.status_code == 200
    assert set(AuditEvent.objects.for_target(bot).values_list("action", flat=True)) == {
        "identity.owner_changed",
        "identity.updated",
    }


#
# L6: the grant export holds grants in force only
#
def test_the_grant_export_leaves_out_grants_past_expiry_before_the_sweep():
    in_force = GrantFactory(kind="jit", expires_at=timezone.now() + timedelta(hours=1))
    standing = GrantFactory()
    past_expiry = GrantFactory(kind="jit", expires_at=timezone.now() - timedelta(seconds=5))
    assert past_expiry.status == "active"
    exported = {row["identity_external_id"] for row in export_records("grants")}
    assert exported == {f"portal:{in_force.identity_id}", f"portal:{standing.identity_id}"}


#
# A suspended person's ownership powers are suspended with them
#
def test_a_suspended_owner_can_neither_sign_in_nor_act_on_what_they_own(client, owner, admin, bot):
    from governance.services.identities import identity_reactivate, identity_suspend
    from tests.factories.governance import EntitlementFactory

    entitlement = EntitlementFactory(owner=owner)
    client.force_login(owner.user)
    identity_suspend(identity_id=owner.pk, actor=admin.user, reason="under investigation")
    # the open session is gone, and a new sign-in fails
    assert client.get(reverse("governance:my_identities")).status_code == 302
    assert not client.login(username=owner.user.username, password="pw-for-tests")
    # the object checks refuse even a user object held from before
    stale = type(owner.user).objects.get(pk=owner.user.pk)
    stale.is_active = True
    colleague = PersonFactory()
    response = api(stale).post(
        f"{API}/grants/", {"identity": colleague.pk, "entitlement": entitlement.pk, "kind": "standing"}, format="json"
    )
    assert response.status_code == 403
    assert api(stale).patch(f"{API}/identities/{bot.pk}/", {"description": "x"}, format="json").status_code == 403
    # reactivation gives both back
    identity_reactivate(identity_id=owner.pk, actor=admin.user)
    owner.user.refresh_from_db()
    assert owner.user.is_active
    events = AuditEvent.objects.for_target(owner).order_by("seq")
    assert [e.data.get("login_disabled", e.data.get("login_enabled")) for e in events if "login" in str(e.data)] == [
        True,
        True,
    ]
