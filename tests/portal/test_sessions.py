"""A session ends after SESSION_IDLE_TIMEOUT_SECONDS without a request (30 minutes), and at the latest
SESSION_ABSOLUTE_LIFETIME_SECONDS (12 hours) after signing in, however busy; the person is told why."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

DASHBOARD = "/"


@pytest.fixture
def clock():
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        yield traveller


@pytest.fixture
def signed_in(client, requester, clock):
    response = client.post("/login/", {"username": requester.username, "password": "pw-for-tests"})
    assert response.status_code == 302
    return client


def _is_signed_in(client) -> bool:
    return client.get(DASHBOARD).status_code == 200


def test_a_session_used_within_the_idle_timeout_stays_open(signed_in, clock):
    for _ in range(4):
        clock.shift(timedelta(minutes=29))
        assert _is_signed_in(signed_in)


def test_thirty_minutes_without_a_request_sign_the_person_out_and_say_why(signed_in, clock, requester):
    clock.shift(timedelta(minutes=30))
    response = signed_in.get(DASHBOARD, follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    assert b"Your session expired, sign in again." in response.content
    assert not _is_signed_in(signed_in)
    event = AuditEvent.objects.filter(action="user.logged_out").latest("seq")
    assert (event.actor_label, event.data) == (requester.username, {"reason": "session expired"})


def test_a_busy_session_still_ends_twelve_hours_after_signing_in(signed_in, clock):
    for _ in range(12 * 3 - 1):
        clock.shift(timedelta(minutes=20))
        assert _is_signed_in(signed_in)
    clock.shift(timedelta(minutes=20))  # 12 hours
    assert not _is_signed_in(signed_in)


def test_signing_in_again_starts_a_new_lifetime(signed_in, clock, requester):
    for _ in range(12 * 3 - 1):
        clock.shift(timedelta(minutes=20))
        _is_signed_in(signed_in)
    signed_in.post(reverse("logout"))
    signed_in.post("/login/", {"username": requester.username, "password": "pw-for-tests"})
    clock.shift(timedelta(minutes=20))  # 12 hours after the first sign-in
    assert _is_signed_in(signed_in)


def test_the_limits_come_from_settings(signed_in, clock, settings):
    settings.SESSION_IDLE_TIMEOUT_SECONDS = 60
    clock.shift(timedelta(seconds=61))
    assert not _is_signed_in(signed_in)


def test_a_session_that_began_without_the_sign_in_page_is_timed_from_its_first_request(client, requester, clock):
    client.force_login(requester)
    assert _is_signed_in(client)
    clock.shift(timedelta(minutes=31))
    assert not _is_signed_in(client)
