"""Logins, passwords and roles are kept in the portal through audited services; the Django admin is no side door."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from audit.models import AuditEvent, OutboxMessage
from governance.errors import InvalidTransition, PermissionRefused
from governance.services.logins import login_create, login_set_active, login_set_roles
from tests.factories.governance import PersonFactory, with_role

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def admin_login():
    return with_role(PersonFactory(name="Ada Admin"), "admin").user


@pytest.fixture
def other_admin():
    return with_role(PersonFactory(name="Bo Admin"), "admin").user


def actions_on(user) -> list[str]:
    return list(AuditEvent.objects.for_target(user).order_by("seq").values_list("action", flat=True))


def mailed_link(to: str) -> str:
    body = OutboxMessage.objects.filter(kind="email.send", payload__to=[to]).latest("pk").payload["body"]
    return re.search(r"https?://\S+/password/reset/\S+/", body).group(0)


#
# The Django admin is no side door
#
@pytest.mark.parametrize("path", ["/admin/auth/user/", "/admin/auth/group/", "/admin/auth/user/{pk}/password/"])
def test_the_django_admin_no_longer_edits_logins_passwords_or_groups(client, admin_user, path):
    client.force_login(admin_user)
    assert client.get(path.format(pk=admin_user.pk)).status_code == 404


#
# Making a login: the admin never sets the password
#
def test_an_admin_makes_a_login_whose_person_chooses_the_password_from_a_mailed_link(client, admin_login):
    person = PersonFactory(name="Cy New", email="cy@example.org", user=None)
    client.force_login(admin_login)

    answer = client.post(
        reverse("governance:login_create"),
        {"identity": person.pk, "username": "cy", "roles": ["requester", "approver"]},
        follow=True,
    )

    assert "a link to choose a password was sent to cy@example.org" in answer.content.decode()
    user = User.objects.get(username="cy")
    assert not user.has_usable_password()
    person.refresh_from_db()
    assert person.user == user
    assert set(user.groups.values_list("name", flat=True)) == {"requester", "approver"}
    assert actions_on(user) == ["user.created", "role.assigned", "role.assigned"]
    link = mailed_link("cy@example.org")
    assert link not in answer.content.decode()

    client.logout()
    form = client.get(link, follow=True)
    answer = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-long-fresh-secret-42", "new_password2": "a-long-fresh-secret-42"},
    )
    assert answer.status_code == 302
    assert client.login(username="cy", password="a-long-fresh-secret-42")
    changed = AuditEvent.objects.for_target(user).get(action="user.password_changed")
    assert changed.data == {"user": "cy", "by_self": False, "usable": True}


def test_a_person_with_a_login_or_no_email_gets_none(admin_login):
    with pytest.raises(InvalidTransition):
        login_create(actor=admin_login, identity_id=PersonFactory().pk, username="dup", roles=[])
    with pytest.raises(Exception, match="no email"):
        login_create(actor=admin_login, identity_id=PersonFactory(email="", user=None).pk, username="x", roles=[])


def test_only_admins_reach_the_logins_pages(client, make_user):
    client.force_login(make_user("ap", roles=("approver", "owner", "auditor", "requester")))
    assert client.get(reverse("governance:login_list")).status_code == 403
    assert client.post(reverse("governance:login_create"), {}).status_code == 403


def test_the_logins_list_filters_by_role(client, admin_login, make_user):
    make_user("only-auditor", roles=("auditor",))
    make_user("only-requester", roles=("requester",))
    client.force_login(admin_login)

    shown = client.get(reverse("governance:login_list"), {"role": "auditor"}).content.decode()

    assert "only-auditor" in shown and "only-requester" not in shown


#
# Roles
#
def test_roles_given_and_taken_are_each_audited(client, admin_login, make_user):
    user = make_user("rita", roles=("requester",))
    client.force_login(admin_login)
    before = AuditEvent.objects.latest("seq").seq

    client.post(reverse("governance:login_detail", args=[user.pk]), {"roles": ["approver"]})

    assert set(user.groups.values_list("name", flat=True)) == {"approver"}
    events = AuditEvent.objects.for_target(user).filter(seq__gt=before, action__startswith="role.")
    assert {(e.action, e.data["group"], e.actor_user_id) for e in events} == {
        ("role.removed", "requester", admin_login.pk),
        ("role.assigned", "approver", admin_login.pk),
    }


def test_an_admin_cannot_change_their_own_roles_or_turn_their_login_off(admin_login, other_admin):
    with pytest.raises(PermissionRefused, match="another admin"):
        login_set_roles(actor=admin_login, user_id=admin_login.pk, roles=["admin", "auditor"])
    with pytest.raises(PermissionRefused):
        login_set_active(actor=admin_login, user_id=admin_login.pk, active=False, reason="x")


def test_turning_a_login_off_is_audited_with_the_reason(client, admin_login, make_user):
    user = make_user("leaver", roles=("requester",))
    client.force_login(admin_login)

    client.post(reverse("governance:login_deactivate", args=[user.pk]), {"reason": "left the company"})

    user.refresh_from_db()
    assert not user.is_active
    event = AuditEvent.objects.for_target(user).get(action="user.deactivated")
    assert event.data["reason"] == "left the company"


def test_an_admin_sends_a_reset_link_and_never_sees_it(client, admin_login, make_user):
    user = make_user("forgetful", roles=("requester",))
    client.force_login(admin_login)

    answer = client.post(reverse("governance:login_password_reset", args=[user.pk]), follow=True)

    link = mailed_link(user.email)
    assert link not in answer.content.decode()
    assert "user.password_reset_sent" in actions_on(user)


#
# What happens outside the services is audited too
#
def test_deleting_a_login_records_what_it_removed(make_user):
    user = make_user("gone", roles=("approver",))
    pk = user.pk

    user.delete()

    event = AuditEvent.objects.get(action="user.deleted", target_id=str(pk))
    assert event.data["roles"] == ["approver"]


def test_deleting_a_group_records_its_members_and_permissions(make_user):
    group = Group.objects.create(name="temporary")
    group.permissions.add(Permission.objects.get(codename="view_auditevent"))
    make_user("member").groups.add(group)

    group.delete()

    event = AuditEvent.objects.get(action="role.group_deleted")
    assert event.data == {"group": "temporary", "members": ["member"], "permissions": ["audit.view_auditevent"]}


def test_a_role_given_a_permission_is_audited():
    Group.objects.get(name="auditor").permissions.add(Permission.objects.get(codename="view_outboxmessage"))

    event = AuditEvent.objects.get(action="role.permissions_changed")
    assert event.data == {"group": "auditor", "added": ["audit.view_outboxmessage"]}


def test_a_self_service_reset_mails_a_link_through_the_outbox(client, make_user):
    user = make_user("selfie", email="selfie@example.org")

    answer = client.post(reverse("password_reset"), {"email": "selfie@example.org"})

    assert answer.status_code == 302
    assert "/password/reset/" in mailed_link("selfie@example.org")
    assert user.pk
