"""An owner delegates an identity to a colleague (a django-guardian object permission), by page, audited."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from guardian.core import ObjectPermissionChecker
from rest_framework.test import APIClient

from audit.models import AuditEvent
from governance.choices import IdentityStatus
from governance.errors import InvalidTransition, PermissionRefused
from governance.services import identities
from governance.services.delegation import delegates_of
from tests.factories.governance import MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db


def person(name: str, role: str = "requester"):
    identity = PersonFactory(name=name)
    identity.user.groups.add(Group.objects.get(name=role))
    return identity


@pytest.fixture
def owner():
    return person("Olu Owner", "owner")


@pytest.fixture
def bot(owner):
    return MachineFactory(name="billing-bot", owner=owner)


@pytest.fixture
def colleague():
    return person("Cara Colleague")


def delegate(client, owner, bot, who, **extra):
    client.force_login(owner.user)
    return client.post(
        reverse("governance:identity_delegate", args=[bot.pk]), {"delegate": who, "reason": "on call", **extra}
    )


def test_a_delegate_sees_edits_and_suspends_but_cannot_hand_over_or_offboard(client, owner, bot, colleague):
    client.force_login(colleague.user)
    assert client.get(reverse("governance:identity_detail", args=[bot.pk])).status_code == 404
    # when the owner delegates by login
    response = delegate(client, owner, bot, colleague.user.username)
    assert response.status_code == 302 and delegates_of(bot) == [colleague]
    event = AuditEvent.objects.get(action="identity.delegated")
    assert event.data == {"delegate": colleague.pk, "reason": "on call"}
    # then the colleague sees and edits it, by page and by API
    client.force_login(colleague.user)
    assert client.get(reverse("governance:identity_detail", args=[bot.pk])).status_code == 200
    client.post(
        reverse("governance:identity_edit", args=[bot.pk]), {"name": "billing-bot", "description": "kept by Cara"}
    )
    api = APIClient()
    api.force_authenticate(colleague.user)
    assert api.patch(f"/api/v1/identities/{bot.pk}/", {"team": "payments"}, format="json").status_code == 200
    client.post(reverse("governance:identity_suspend", args=[bot.pk]), {"reason": "key leaked"})
    bot.refresh_from_db()
    assert bot.description == "kept by Cara" and bot.team == "payments" and bot.status == IdentityStatus.SUSPENDED
    # but handing over, offboarding and delegating stay with the owners
    assert client.get(reverse("governance:identity_owner", args=[bot.pk])).status_code == 403
    assert client.get(reverse("governance:identity_offboard", args=[bot.pk])).status_code == 403
    with pytest.raises(PermissionRefused):
        identities.identity_change_owner(identity_id=bot.pk, actor=colleague.user, owner=colleague)
    assert delegate(client, colleague, bot, person("Other").user.username).status_code == 403


def test_removing_a_delegate_takes_the_access_away(client, owner, bot, colleague):
    delegate(client, owner, bot, colleague.email)
    delegate(client, owner, bot, "", delegate_id=colleague.pk)
    assert delegates_of(bot) == []
    assert AuditEvent.objects.filter(action="identity.delegation_removed").count() == 1
    client.force_login(colleague.user)
    assert client.get(reverse("governance:identity_detail", args=[bot.pk])).status_code == 404


def test_bad_delegates_are_refused_with_a_message_and_nothing_written(client, owner, bot, colleague):
    for who in ["nobody-here", owner.user.username]:
        response = delegate(client, owner, bot, who)
        assert response.status_code == 302
    messages = [str(m) for m in client.get(reverse("governance:identity_detail", args=[bot.pk])).context["messages"]]
    assert any("No active person signs in as 'nobody-here'" in m for m in messages)
    assert any("already answers for" in m for m in messages)
    assert delegates_of(bot) == [] and not AuditEvent.objects.filter(action="identity.delegated").exists()


def test_a_stranger_cannot_delegate_someone_elses_identity(client, bot, colleague):
    # one who reads the whole inventory is refused; one who does not is told nothing exists
    reader, requester = person("Rick Reader", "owner"), person("Rita Requester")
    assert delegate(client, reader, bot, colleague.user.username).status_code == 403
    assert delegate(client, requester, bot, colleague.user.username).status_code == 404
    assert delegates_of(bot) == []


def test_a_suspended_delegate_can_still_be_removed(client, owner, bot, colleague, admin_user):
    delegate(client, owner, bot, colleague.user.username)
    identities.identity_suspend(identity_id=colleague.pk, actor=admin_user, reason="leave")
    delegate(client, owner, bot, "", delegate_id=colleague.pk)
    assert delegates_of(bot) == []


def test_a_login_made_of_digits_is_a_login_not_an_id(client, owner, bot):
    numeric = person("Numeric")
    numeric.user.username = str(bot.pk)
    numeric.user.save()
    delegate(client, owner, bot, str(bot.pk))
    assert delegates_of(bot) == [numeric]


def test_handing_an_identity_over_removes_the_old_owners_delegates(client, owner, bot, colleague):
    delegate(client, owner, bot, colleague.user.username)
    identities.identity_change_owner(identity_id=bot.pk, actor=owner.user, owner=person("New Owner"))
    assert delegates_of(bot) == []
    event = AuditEvent.objects.get(action="identity.delegation_removed")
    assert event.data == {"delegate": colleague.pk, "reason": "owner changed"}


def test_a_delegates_patch_of_the_object_as_read_is_no_hand_over(client, owner, bot, colleague):
    delegate(client, owner, bot, colleague.user.username)
    api = APIClient()
    api.force_authenticate(colleague.user)
    body = api.get(f"/api/v1/identities/{bot.pk}/").json()
    body["team"] = "ops"
    response = api.patch(f"/api/v1/identities/{bot.pk}/", body, format="json")
    assert response.status_code == 200, response.json()
    bot.refresh_from_db()
    assert bot.team == "ops" and bot.owner == owner


def test_a_delegation_to_a_group_lets_its_members_see_and_edit(client, bot):
    from guardian.shortcuts import assign_perm

    on_call = Group.objects.create(name="payments-on-call")
    member = person("Mia Member")
    member.user.groups.add(on_call)
    assign_perm("governance.change_identity", on_call, bot)
    client.force_login(member.user)
    assert client.get(reverse("governance:identity_detail", args=[bot.pk])).status_code == 200
    assert client.get(reverse("governance:identity_edit", args=[bot.pk])).status_code == 200


def test_an_identity_handed_to_its_backup_owner_at_offboarding_loses_the_old_owners_delegates(
    client, owner, colleague, admin_user
):
    # given a machine whose owner delegated it, and which has a backup owner
    backup = person("Bea Backup", "owner")
    bot = MachineFactory(name="ledger-bot", owner=owner, backup_owner=backup)
    delegate(client, owner, bot, colleague.user.username)
    assert delegates_of(bot) == [colleague]

    # when its owner leaves
    identities.identity_offboard(identity_id=owner.pk, actor=admin_user, reason="left")

    # then the backup owner holds it and the old owner's delegate no longer does
    bot.refresh_from_db()
    assert bot.owner == backup and delegates_of(bot) == []
    assert not ObjectPermissionChecker(colleague.user).has_perm("change_identity", bot)


def test_an_offboarded_identity_cannot_be_edited_any_more(owner, bot, admin_user):
    identities.identity_offboard(identity_id=bot.pk, actor=owner.user, reason="decommissioned")

    with pytest.raises(InvalidTransition, match="offboarded"):
        identities.identity_update(identity_id=bot.pk, actor=admin_user, changes={"team": "Elsewhere"})

    bot.refresh_from_db()
    assert bot.team != "Elsewhere"
