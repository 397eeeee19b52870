"""Sign-in is throttled (django-axes): repeated failures lock the login and the client address out for
a while, on the portal's sign-in page and the admin's, with a page that says so and an audit event."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

LOGIN = "/login/"
ADMIN_LOGIN = "/admin/login/"
PASSWORD = "pw-for-tests"


def _sign_in(client, username, password, *, url=LOGIN, address="198.51.100.1", **headers):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address, **headers)


def _fail(client, username, times, **kwargs):
    for _ in range(times):
        _sign_in(client, username, "not-the-password", **kwargs)


def test_the_right_password_after_five_wrong_ones_is_refused_with_a_page_that_says_why(client, requester):
    _fail(client, requester.username, 5)
    response = _sign_in(client, requester.username, PASSWORD)
    assert response.status_code == 429
    assert b"Sign-in locked" in response.content and b"Try again in 15 minutes" in response.content
    assert client.get(reverse("dashboard")).status_code == 302  # not signed in


def test_four_wrong_passwords_still_let_the_right_one_in(client, requester):
    _fail(client, requester.username, 4)
    assert _sign_in(client, requester.username, PASSWORD).status_code == 302
    assert client.get(reverse("dashboard")).status_code == 200


def test_a_locked_login_signs_in_again_once_the_cool_off_is_over(client, requester):
    _fail(client, requester.username, 5)
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert _sign_in(client, requester.username, PASSWORD).status_code == 302


def test_the_lock_holds_for_the_login_whatever_address_the_attempts_come_from(client, requester):
    for n in range(5):
        _sign_in(client, requester.username, "not-the-password", address=f"203.0.113.{n + 1}")
    assert _sign_in(client, requester.username, PASSWORD, address="192.0.2.99").status_code == 429


def test_the_lock_holds_for_an_address_that_tries_many_logins(client, make_user):
    victim = make_user("victim")
    for n in range(5):
        _sign_in(client, f"guess{n}", "not-the-password", address="203.0.113.7")
    assert _sign_in(client, victim.username, PASSWORD, address="203.0.113.7").status_code == 429
    # another address is not held back by that one
    assert _sign_in(client, victim.username, PASSWORD, address="192.0.2.10").status_code == 302


def test_the_admin_sign_in_is_locked_too(client, admin_user):
    _fail(client, admin_user.username, 5, url=ADMIN_LOGIN)
    response = _sign_in(client, admin_user.username, PASSWORD, url=ADMIN_LOGIN)
    assert response.status_code == 429 and b"Sign-in locked" in response.content
    assert client.get("/admin/").status_code == 302


def test_a_lock_out_is_in_the_audit_trail_with_the_login_and_the_address(client, requester):
    _fail(client, requester.username, 5)
    _sign_in(client, requester.username, PASSWORD)
    event = AuditEvent.objects.filter(action="user.locked_out").latest("seq")
    assert event.data["username"] == requester.username
    assert event.data["client_ip"] == "198.51.100.1" == event.client_ip
    assert event.data["cool_off_seconds"] == 15 * 60


def test_an_address_made_up_in_x_forwarded_for_does_not_escape_the_lock(client, settings, make_user):
    settings.TRUSTED_PROXY_COUNT = 1  # one proxy: it appends the address it saw on the right
    victim = make_user("victim")
    for n in range(5):
        _sign_in(client, f"guess{n}", "x", address="10.0.0.2", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.7")
    response = _sign_in(client, victim.username, PASSWORD, address="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert response.status_code == 429
    assert AuditEvent.objects.filter(action="user.locked_out", data__client_ip="203.0.113.7").exists()
