"""Issue 16, "Everywhere": times in the viewer's zone in one style, the profile that keeps the zone, one
sortable header, and the portal's own 404/403 pages even with DEBUG on."""

import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from audit.templatetags.times import when
from portal.models import Profile
from portal.profiles import SESSION_TIME_ZONE

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


#
# One style for times
#
@pytest.mark.parametrize(
    ("moment", "words"),
    [
        (NOW - timedelta(seconds=20), "just now"),
        (NOW - timedelta(minutes=5), "5 min ago"),
        (NOW - timedelta(hours=3, minutes=10), "3 h ago"),
        (NOW - timedelta(days=1, hours=2), "1 day ago"),
        (NOW + timedelta(hours=2, minutes=5), "in 2 h"),
        (NOW + timedelta(days=3), "in 3 days"),
        (NOW - timedelta(days=30), "2026-02-08"),  # beyond a week: the date
    ],
)
def test_a_time_reads_as_relative_words_with_the_absolute_time_on_hover(moment, words):
    with time_machine.travel(NOW, tick=False), timezone.override(zoneinfo.ZoneInfo("Europe/Berlin")):
        html = when(moment)
    assert f">{words}</time>" in html
    assert f'datetime="{moment.isoformat()}"' in html
    local = moment.astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert f'title="{local:%Y-%m-%d %H:%M} CET"' in html


def test_exact_times_and_empty_values():
    with timezone.override(zoneinfo.ZoneInfo("Asia/Tokyo")):
        assert ">2026-03-10 21:00</time>" in when(NOW, "exact")
        assert ">2026-03-10 21:00:00</time>" in when(NOW, "exact-seconds")
    assert when(None) == "—"


#
# The viewer's zone: the profile's, else the browser's cookie, else the portal's
#


def test_the_browser_zone_from_its_cookie_is_used_when_the_person_chose_none(client, requester):
    client.force_login(requester)
    client.cookies["tz"] = "Asia/Tokyo"
    page = client.get(reverse("jit:request_list"))
    assert page.status_code == 200
    profile_page = client.get(reverse("profile")).content.decode()
    assert "Following your browser: Asia/Tokyo" in profile_page


def test_the_profile_zone_wins_over_the_browser_and_is_shown_in_the_page(client, requester, settings):
    client.force_login(requester)
    client.cookies["tz"] = "Asia/Tokyo"

    response = client.post(reverse("profile"), {"time_zone": "America/New_York"}, follow=True)

    assert response.status_code == 200
    assert Profile.objects.get(user=requester).time_zone == "America/New_York"
    assert client.session[SESSION_TIME_ZONE] == "America/New_York"
    assert 'data-profile-time-zone="America/New_York"' in response.content.decode()
    event = AuditEvent.objects.get(action="user.time_zone_changed")
    assert event.data == {"before": "browser", "after": "America/New_York"} and event.actor_user_id == requester.pk


def test_the_middleware_activates_the_zone_for_the_request_and_not_for_the_api(requester):
    from portal.middleware import TimeZoneMiddleware

    seen = {}

    def view(request):
        seen[request.path] = timezone.get_current_timezone_name()
        return None

    middleware = TimeZoneMiddleware(view)
    factory = RequestFactory()
    for path in ("/access/requests/", "/api/v1/requests/"):
        request = factory.get(path)
        request.COOKIES["tz"] = "Asia/Tokyo"
        request.session = {SESSION_TIME_ZONE: ""}
        middleware(request)
    chosen = factory.get("/access/requests/", HTTP_COOKIE="tz=Asia/Tokyo")
    chosen.session = {SESSION_TIME_ZONE: "Europe/Paris"}
    middleware.get_response = lambda request: seen.__setitem__("chosen", timezone.get_current_timezone_name())
    middleware(chosen)

    assert seen["/access/requests/"] == "Asia/Tokyo"
    assert seen["/api/v1/requests/"] == "UTC"
    assert seen["chosen"] == "Europe/Paris"
    assert timezone.get_current_timezone_name() == "UTC"  # deactivated after the request


def test_signing_in_keeps_the_chosen_zone_in_the_session(client, requester):
    Profile.objects.create(user=requester, time_zone="Asia/Kolkata")
    client.force_login(requester)
    assert client.session[SESSION_TIME_ZONE] == "Asia/Kolkata"


def test_an_unknown_zone_is_refused_beside_its_field_and_nothing_is_written(client, requester):
    client.force_login(requester)
    response = client.post(reverse("profile"), {"time_zone": "Mars/Olympus"})
    assert response.status_code == 400
    assert 'id="id_time_zone_error"' in response.content.decode()
    assert not Profile.objects.exists()
    assert not AuditEvent.objects.filter(action="user.time_zone_changed").exists()


def test_back_to_the_browser_zone(client, requester):
    Profile.objects.create(user=requester, time_zone="Asia/Kolkata")
    client.force_login(requester)
    client.post(reverse("profile"), {"time_zone": ""})
    assert Profile.objects.get(user=requester).time_zone == ""
    assert client.session[SESSION_TIME_ZONE] == ""


def test_the_profile_page_links_to_password_and_second_factor_and_the_top_bar_links_to_it(client, requester):
    client.force_login(requester)
    html = client.get(reverse("profile")).content.decode()
    assert reverse("password_change") in html and reverse("second_factor") in html
    assert f'href="{reverse("profile")}"' in client.get(reverse("dashboard")).content.decode()


#
# One sortable header
#
def test_the_sortable_header_says_its_order_with_aria_sort_and_an_arrow():
    template = Template(
        '{% load grant_tags %}{% sort_header "name" "Name" %}{% sort_header "risk" "Risk" "#results" %}'
    )
    request = RequestFactory().get("/inventory/catalogue/", {"sort": "-name", "page": "3", "q": "db"})
    html = template.render(Context({"request": request}))
    assert '<th scope="col" aria-sort="descending"><a class="sort" href="?sort=name&amp;q=db">' in html.replace(
        "q=db&amp;sort=name", "sort=name&amp;q=db"
    )
    assert "page=3" not in html  # a new order starts at the first page
    assert '<span class="sort-arrow" aria-hidden="true">▼</span>' in html
    assert 'aria-sort="none"' in html and "↕" in html and 'hx-target="#results"' in html


#
# Friendly error pages, even with DEBUG on
#
@pytest.fixture
def debug_on(settings):
    settings.DEBUG = True
    settings.DEBUG_PROPAGATE_EXCEPTIONS = False


def test_a_missing_object_shows_the_portals_404_page_even_with_debug(client, requester, debug_on):
    client.force_login(requester)
    response = client.get(reverse("jit:request_detail", args=[999999]))
    html = response.content.decode()
    assert response.status_code == 404
    assert "Nothing here" in html and 'aria-label="Main"' in html
    assert "Traceback" not in html and "technical" not in html.lower()


def test_an_unknown_address_shows_the_portals_404_page_even_with_debug(client, requester, debug_on):
    client.force_login(requester)
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "Nothing here" in response.content.decode()
    assert "URLconf" not in response.content.decode()


def test_a_refusal_shows_the_portals_403_page_even_with_debug(client, requester, debug_on):
    client.force_login(requester)
    response = client.get(reverse("audit:event_list"))
    assert response.status_code == 403
    assert "You may not do this" in response.content.decode()


def test_the_api_keeps_its_json_errors(client, requester, debug_on):
    client.force_login(requester)
    response = client.get("/api/v1/requests/999999/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
