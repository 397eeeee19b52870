"""The API answers a caller over their rate with 429, Retry-After and the API's error shape."""

import pytest
from django.core.cache import cache
from django.test import RequestFactory

from governance.api.throttling import AnonRateThrottle
from tests.api import API, api

pytestmark = pytest.mark.django_db


@pytest.fixture
def low_rates(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "2/minute", "user": "2/minute"},
    }
    cache.clear()
    yield
    cache.clear()


def test_a_caller_over_the_rate_gets_429_with_retry_after(low_rates, requester):
    client = api(requester)
    assert [client.get(f"{API}/grants/").status_code for _ in range(2)] == [200, 200]
    response = client.get(f"{API}/grants/")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json() == {"detail": f"Too many requests: try again in {response['Retry-After']} seconds."}


def test_each_signed_in_caller_has_a_rate_of_their_own(low_rates, requester, auditor):
    for _ in range(3):
        api(requester).get(f"{API}/grants/")
    assert api(auditor).get(f"{API}/grants/").status_code == 200


def test_callers_not_signed_in_are_counted_by_the_address_the_audit_trail_records(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.7")
    assert AnonRateThrottle().get_ident(request) == "203.0.113.7"
