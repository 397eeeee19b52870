import pytest
from django.urls import reverse

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_login_and_logout_are_audited(client, make_user):
    make_user("bob", roles=("requester",))
    response = client.post(reverse("login"), {"username": "bob", "password": "pw-for-tests"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    client.post(reverse("logout"))
    sessions = AuditEvent.objects.filter(action__in=["user.logged_in", "user.logged_out", "user.privileges_changed"])
    actions = list(sessions.order_by("seq").values_list("action", "actor_label", "channel"))
    assert actions == [("user.logged_in", "bob", "web"), ("user.logged_out", "bob", "web")]


def test_failed_login_shows_an_error_and_is_audited_without_the_password(client, make_user):
    make_user("bob")
    response = client.post(reverse("login"), {"username": "bob", "password": "wrong-secret"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    event = AuditEvent.objects.get(action="user.login_failed")
    assert event.data == {"username": "bob"}
    assert "wrong-secret" not in str(event.data)


def test_dashboard_requires_login(client):
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    ("roles", "visible", "hidden"),
    [
        (("requester",), ["Dashboard"], ["Audit trail", "Admin"]),
        (("auditor",), ["Dashboard", "Audit trail"], ["Admin"]),
        (("admin",), ["Dashboard", "Audit trail", "Admin"], []),
    ],
)
def test_navigation_shows_each_role_what_it_may_use(client, make_user, roles, visible, hidden):
    client.force_login(make_user(roles=roles))
    response = client.get(reverse("dashboard"))
    labels = [item.label for item in response.context["nav_links"]]
    assert all(label in labels for label in visible)
    assert not any(label in labels for label in hidden)


def test_correlation_id_is_returned_and_recorded(client, make_user):
    make_user("bob")
    response = client.post(
        reverse("login"), {"username": "bob", "password": "pw-for-tests"}, headers={"X-Request-ID": "trace-abc"}
    )
    assert response["X-Request-ID"] == "trace-abc"
    assert AuditEvent.objects.get(action="user.logged_in").correlation_id == "trace-abc"


def test_health_reports_database_broker_and_sweep(client):
    from jit.services.expiry import grants_expire_due

    grants_expire_due()  # the beat's first sweep
    response = client.get(reverse("health"))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert all(check["ok"] for check in body["checks"].values()), body


def test_health_turns_red_when_the_broker_is_down(client, monkeypatch):
    from portal import health

    monkeypatch.setitem(health.HEALTH_CHECKS, "broker", lambda: (False, "OperationalError"))
    response = client.get(reverse("health"))
    assert response.status_code == 503 and response.json()["status"] == "fail"


def test_roles_exist_with_their_permissions():
    from django.contrib.auth.models import Group

    assert set(Group.objects.values_list("name", flat=True)) >= {"requester", "approver", "owner", "auditor", "admin"}
    assert Group.objects.get(name="auditor").permissions.filter(codename="view_auditevent").exists()


def _perms(group_name: str) -> set[str]:
    from django.contrib.auth.models import Group

    permissions = Group.objects.get(name=group_name).permissions.select_related("content_type")
    return {f"{p.content_type.app_label}.{p.codename}" for p in permissions}


def test_bootstrapping_roles_takes_away_a_permission_a_role_no_longer_has():
    from django.contrib.auth.models import Group, Permission

    from governance.roles import roles_bootstrap

    # given: an older release had given auditors a permission the role no longer lists
    stale = Permission.objects.get(content_type__app_label="audit", codename="change_outboxmessage")
    Group.objects.get(name="auditor").permissions.add(stale)
    # when
    roles_bootstrap()
    # then
    assert _perms("auditor") == {"audit.view_auditevent"}
    assert "audit.view_auditevent" in _perms("admin")  # admins still read the trail (README)


def test_health_answers_a_plain_http_probe_instead_of_redirecting_it(client, settings):
    settings.SECURE_SSL_REDIRECT = True  # production: every other page moves to https
    assert client.get(reverse("login")).status_code == 301
    probe = client.get(reverse("health"))
    assert probe.status_code in (200, 503) and "checks" in probe.json()  # the health report itself


def _role_events():
    return list(
        AuditEvent.objects.filter(action__in=["role.assigned", "role.removed"])
        .order_by("seq")
        .values_list("action", "target_label", "data", "actor_label", "channel")
    )


def test_adding_a_user_to_a_role_in_code_is_audited_once(make_user):
    from django.contrib.auth.models import Group

    carol = make_user("carol")
    auditors = Group.objects.get(name="auditor")
    carol.groups.add(auditors)
    carol.groups.add(auditors)  # already a member: nothing changes, nothing is recorded
    assert _role_events() == [("role.assigned", "carol", {"user": "carol", "group": "auditor"}, "system", "cli")]


def test_role_removals_are_audited_from_either_side(make_user):
    from django.contrib.auth.models import Group

    carol = make_user("carol", roles=("auditor", "approver"))
    make_user("dave", roles=("auditor",))
    before = AuditEvent.objects.count()
    carol.groups.remove(Group.objects.get(name="owner"))  # never held: no event
    carol.groups.remove(Group.objects.get(name="approver"))
    Group.objects.get(name="auditor").user_set.clear()
    removed = [(e[1], e[2]["group"]) for e in _role_events() if e[0] == "role.removed"]
    assert sorted(removed) == [("carol", "approver"), ("carol", "auditor"), ("dave", "auditor")]
    assert AuditEvent.objects.count() == before + 3


def test_an_admin_giving_a_role_in_the_portal_is_recorded_as_the_admin(client, admin_user, make_user):
    from django.contrib.auth.models import Group

    carol = make_user("carol")
    client.force_login(admin_user)
    response = client.post(reverse("governance:login_detail", args=[carol.pk]), {"roles": ["auditor"]})
    assert response.status_code == 302
    assert _role_events()[-1] == ("role.assigned", "carol", {"user": "carol", "group": "auditor"}, "admin1", "web")
    assert Group.objects.get(name="auditor").user_set.filter(pk=carol.pk).exists()


def test_granting_and_withdrawing_superuser_is_audited(make_user, django_assert_num_queries):
    carol = make_user("carol")
    carol.is_superuser = True
    carol.save()
    carol.save()  # unchanged: nothing more to record
    carol.is_superuser = False
    carol.save(update_fields=["is_superuser"])
    with django_assert_num_queries(1):
        carol.save(update_fields=["last_login"])  # a login's save costs no extra query
    changes = AuditEvent.objects.filter(action="user.privileges_changed").order_by("seq")
    assert [(e.data["before"], e.data["after"]) for e in changes] == [
        ({"is_superuser": False}, {"is_superuser": True}),
        ({"is_superuser": True}, {"is_superuser": False}),
    ]


def test_refusals_and_misses_are_pages_of_the_portal_that_say_why(client, requester, rf):
    from django.views.defaults import server_error

    client.force_login(requester)
    refused = client.get(reverse("audit:event_list"))
    assert refused.status_code == 403
    assert b"You may not do this" in refused.content and b'aria-label="Main"' in refused.content
    missing = client.get("/no/such/page/")
    assert missing.status_code == 404 and b"Nothing here" in missing.content
    broken = server_error(rf.get("/"))
    assert broken.status_code == 500 and b"Nothing was changed" in broken.content
