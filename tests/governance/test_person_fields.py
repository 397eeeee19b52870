"""Pages that pick a person take a login, email or exact name typed in, never a list of everyone:
the page costs the same with 5 people or 50, and a person it cannot find is named beside the field."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from governance.choices import IdentityKind, IdentityStatus
from governance.models import Identity, System
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db


def owner_page(bot):
    return reverse("governance:identity_owner", args=[bot.pk])


def test_the_owner_page_costs_the_same_with_5_or_50_people_and_lists_no_one_else(client, owner, bot, count_queries):
    # given 5 people besides the owner
    PersonFactory.create_batch(5, name="Colleague Few")
    client.force_login(owner.user)
    few_queries = count_queries(lambda: client.get(owner_page(bot)))
    few = client.get(owner_page(bot)).content

    # when 45 more join
    PersonFactory.create_batch(45, name="Colleague Many")
    many_queries = count_queries(lambda: client.get(owner_page(bot)))
    many = client.get(owner_page(bot)).content

    # then the page runs the same queries, is the same size and names none of them
    assert few_queries == many_queries
    assert abs(len(many) - len(few)) < 100
    assert b"Colleague" not in many and b"<select" not in many
    # and it starts with the current owner's login, ready to be changed
    form = client.get(owner_page(bot)).context["form"]
    assert form["owner"].value() == owner.user.username and not form["backup_owner"].value()


def test_an_unknown_login_is_an_error_beside_the_field_and_changes_nothing(client, owner, bot):
    client.force_login(owner.user)

    response = client.post(owner_page(bot), {"owner": owner.user.username, "backup_owner": "nobody-here"})

    assert response.status_code == 400
    assert response.context["form"].errors["backup_owner"] == ["No active person with that login, email or name."]
    assert 'id="id_backup_owner_error"' in response.content.decode()
    bot.refresh_from_db()
    assert (bot.owner_id, bot.backup_owner_id) == (owner.pk, None)
    assert not AuditEvent.objects.filter(action="identity.owner_changed").exists()


def test_a_person_is_found_by_login_email_or_exact_name_in_any_case(client, owner, bot):
    backup = PersonFactory(name="Bea Backup", email="bea@example.org")
    client.force_login(owner.user)

    for typed in [backup.user.username.upper(), "BEA@example.org", "bea backup"]:
        Identity.objects.filter(pk=bot.pk).update(backup_owner=None)
        response = client.post(
            owner_page(bot), {"owner": owner.user.username, "backup_owner": typed, "reason": "cover"}
        )
        assert response.status_code == 302, typed
        bot.refresh_from_db()
        assert bot.backup_owner == backup, typed
    assert AuditEvent.objects.filter(action="identity.owner_changed").count() == 3


def test_a_name_two_people_share_is_refused_rather_than_guessed(client, owner, bot):
    PersonFactory.create_batch(2, name="Sam Same")
    client.force_login(owner.user)

    response = client.post(owner_page(bot), {"owner": "Sam Same"})

    assert response.status_code == 400
    assert "More than one active person has that name" in response.context["form"].errors["owner"][0]
    bot.refresh_from_db()
    assert bot.owner == owner


def test_a_person_who_left_or_a_machine_cannot_be_named(client, owner, bot):
    left = PersonFactory(status=IdentityStatus.OFFBOARDED)
    client.force_login(owner.user)
    for typed in [left.user.username, bot.name]:
        response = client.post(owner_page(bot), {"owner": typed})
        assert response.status_code == 400 and "No active person" in response.context["form"].errors["owner"][0]
    bot.refresh_from_db()
    assert bot.owner == owner


def test_a_person_without_a_login_is_shown_by_their_email(client, admin_user):
    manager = PersonFactory(user=None, email="mo@example.org")
    person = PersonFactory(manager=manager)
    client.force_login(admin_user)

    form = client.get(reverse("governance:identity_edit", args=[person.pk])).context["form"]

    assert form["manager"].value() == "mo@example.org"


def test_the_identity_edit_page_names_a_manager_by_login(client, owner, bot):
    manager = PersonFactory(name="Mia Manager")
    client.force_login(owner.user)

    response = client.post(
        reverse("governance:identity_edit", args=[bot.pk]), {"name": "billing-bot", "manager": manager.user.username}
    )

    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.manager == manager
    assert AuditEvent.objects.get(action="identity.updated").data["after"]["manager"] == manager.pk


def test_a_manager_who_left_is_kept_when_the_form_comes_back_unchanged(client, owner, bot, admin_user):
    manager = PersonFactory()
    Identity.objects.filter(pk=bot.pk).update(manager=manager)
    Identity.objects.filter(pk=manager.pk).update(status=IdentityStatus.OFFBOARDED)
    client.force_login(owner.user)
    shown = client.get(reverse("governance:identity_edit", args=[bot.pk])).context["form"]["manager"].value()

    response = client.post(
        reverse("governance:identity_edit", args=[bot.pk]), {"name": "billing-bot", "team": "Ops", "manager": shown}
    )

    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.manager == manager and bot.team == "Ops"


def test_the_system_and_entitlement_edit_pages_take_an_owner_by_email(client, admin_user):
    system = SystemFactory()
    entitlement = EntitlementFactory(system=system)
    new_owner = PersonFactory(email="nia@example.org")
    client.force_login(admin_user)
    assert client.get(reverse("governance:system_edit", args=[system.pk])).context["form"]["owner"].value() == (
        system.owner.user.username
    )

    client.post(
        reverse("governance:system_edit", args=[system.pk]),
        {"name": system.name, "owner": "nia@example.org", "criticality": "high"},
    )
    form = client.get(reverse("governance:entitlement_edit", args=[entitlement.pk])).context["form"]
    data = {name: form[name].value() for name in form.fields if form[name].value() not in (None, False)}
    client.post(reverse("governance:entitlement_edit", args=[entitlement.pk]), {**data, "owner": "nia@example.org"})

    assert System.objects.get(pk=system.pk).owner == new_owner
    entitlement.refresh_from_db()
    assert entitlement.owner == new_owner


def test_a_non_admin_registers_only_what_they_will_own(client, owner):
    someone = PersonFactory()
    client.force_login(owner.user)
    assert client.get(reverse("governance:identity_create")).context["form"]["owner"].value() == owner.user.username

    refused = client.post(
        reverse("governance:identity_create"), {"kind": "api_key", "name": "their-key", "owner": someone.email}
    )
    empty = client.post(reverse("governance:identity_create"), {"kind": "api_key", "name": "their-key", "owner": ""})

    assert refused.status_code == 400 and "own yourself" in refused.context["form"].errors["owner"][0]
    assert empty.status_code == 400 and empty.context["form"].errors["owner"]
    assert not Identity.objects.filter(name="their-key").exists()
    assert not Identity.objects.filter(kind=IdentityKind.API_KEY).exists()
