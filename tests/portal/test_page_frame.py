"""What every signed-in page reads before its own work: the session, the person (with identity and
groups), and the frame's counts (unread notifications, break-glass access) in one query."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from governance.models import Notification
from governance.roles import group_names, user_roles
from identity_sources.sso.backends import LocalPasswordBackend
from portal.context_processors import break_glass_banner, navigation
from portal.sessions import SessionStore
from tests.factories.governance import PersonFactory

pytestmark = pytest.mark.django_db


def signed_in(backend_user_id):
    return LocalPasswordBackend().get_user(backend_user_id)


def test_the_session_user_comes_with_identity_and_groups_in_one_query():
    person = PersonFactory(user__roles=["requester", "approver"])
    with CaptureQueriesContext(connection) as queries:
        user = signed_in(person.user.pk)
        assert user.identity == person and user.identity.user is user
        assert group_names(user) == {"requester", "approver"} and user_roles(user) == {"requester", "approver"}
    assert len(queries.captured_queries) == 1


def test_a_login_without_identity_has_none_without_asking_again(make_user):
    login = make_user("robot-operator", roles=("admin",))
    with CaptureQueriesContext(connection) as queries:
        user = signed_in(login.pk)
        assert not hasattr(user, "identity")  # select_related's answer: known to have none
    assert len(queries.captured_queries) == 1


def test_an_inactive_or_deleted_login_is_nobody():
    person = PersonFactory()
    get_user_model().objects.filter(pk=person.user.pk).update(is_active=False)
    assert signed_in(person.user.pk) is None
    assert signed_in(987654321) is None


def test_a_live_session_loads_and_an_expired_one_starts_anew():
    store = SessionStore()
    store["seen"] = 42
    store.create()
    assert SessionStore(store.session_key).load() == {"seen": 42}
    Session.objects.filter(session_key=store.session_key).update(expire_date=timezone.now())
    expired = SessionStore(store.session_key)
    assert expired.load() == {} and expired.session_key is None
    assert SessionStore("no-such-session-key-at-all").load() == {}


def test_the_menu_and_the_banner_share_one_query_for_their_counts():
    person = PersonFactory()
    for subject in ("one", "two"):
        Notification.objects.create(recipient=person.user, subject=subject, body="")
    Notification.objects.create(recipient=person.user, subject="read", body="", read_at=timezone.now())
    request = RequestFactory().get(reverse("dashboard"))
    request.user = signed_in(person.user.pk)
    with CaptureQueriesContext(connection) as queries:
        menu = navigation(request)
        banner = break_glass_banner(request)
    assert len(queries.captured_queries) == 1
    assert menu["unread_notification_count"] == 2 and banner["break_glass_live"] == []
    assert "Notifications (2)" in [link.label for link in menu["nav_links"]]


def test_the_menu_marks_the_current_page_and_offers_failed_grants_to_admins(client, make_user):
    client.force_login(make_user("menu-admin", roles=("admin",)))
    body = client.get(reverse("governance:system_list")).content.decode()
    assert f'<a href="{reverse("governance:system_list")}" aria-current="page">Systems</a>' in body
    assert f'hx-get="{reverse("governance:grant_failures_count")}"' in body
    client.force_login(make_user("menu-owner", roles=("owner",)))
    body = client.get(reverse("governance:system_list")).content.decode()
    assert "Failed grants" not in body
