import pytest
from django.urls import reverse

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_login_and_logout_are_audited(client, make_user):
    make_user("bob", roles=("requester",))
    response = client.post(reverse("login"), {"username": "bob", "password": "pw-for-tests"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    client.post(reverse("logout"))
    actions = list(AuditEvent.objects.order_by("seq").values_list("action", "actor_label", "channel"))
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
    labels = [item.label for item in response.context["nav_items"]]
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
