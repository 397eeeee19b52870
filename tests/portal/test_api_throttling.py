"""The API answers a caller over their rate with 429, Retry-After and the API's error shape: per token,
per person or machine identity (all its tokens together), per client address without a session."""

import pytest
from django.core.cache import cache
from django.test import RequestFactory
from rest_framework.test import APIClient

from governance.api.authentication import MachinePrincipal
from governance.api.throttling import AnonRateThrottle, TokenRateThrottle, UserRateThrottle
from governance.services.credentials import api_token_create
from tests.api import API, api
from tests.factories.governance import MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db


def _rates(settings, **rates) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "100000/minute", "user": "100000/minute", "token": "100000/minute", **rates},
    }
    cache.clear()


@pytest.fixture
def low_rates(settings):
    _rates(settings, anon="2/minute", user="2/minute")
    yield
    cache.clear()


@pytest.fixture
def clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def owner():
    return with_role(PersonFactory(name="Olu Owner"), "owner")


def _token(owner, identity, scopes=("grants:read",)) -> APIClient:
    issued = api_token_create(actor=owner.user, identity_id=identity.pk, name="ci", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client


def test_a_caller_over_the_rate_gets_429_with_retry_after(low_rates, requester):
    client = api(requester)
    assert [client.get(f"{API}/grants/").status_code for _ in range(2)] == [200, 200]
    response = client.get(f"{API}/grants/")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json() == {
        "detail": f"Too many requests: try again in {response['Retry-After']} seconds.",
        "code": "throttled",
    }


def test_each_signed_in_caller_has_a_rate_of_their_own(low_rates, requester, auditor):
    for _ in range(3):
        api(requester).get(f"{API}/grants/")
    assert api(auditor).get(f"{API}/grants/").status_code == 200


def test_callers_not_signed_in_are_counted_by_the_address_the_audit_trail_records(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.7")
    assert AnonRateThrottle().get_ident(request) == "203.0.113.7"


def test_a_token_over_its_rate_gets_429_with_retry_after_and_a_code(settings, clear_cache, owner):
    _rates(settings, token="2/minute")
    client = _token(owner, MachineFactory(owner=owner))
    assert [client.get(f"{API}/grants/").status_code for _ in range(2)] == [200, 200]
    response = client.get(f"{API}/grants/")
    assert response.status_code == 429 and 0 < int(response["Retry-After"]) <= 60
    assert response.json()["code"] == "throttled"


def test_a_machines_tokens_share_its_identitys_rate_and_other_identities_keep_theirs(settings, clear_cache, owner):
    _rates(settings, user="3/minute", token="2/minute")
    bot = MachineFactory(owner=owner)
    first, second = _token(owner, bot), _token(owner, bot)
    assert [first.get(f"{API}/grants/").status_code for _ in range(2)] == [200, 200]
    assert second.get(f"{API}/grants/").status_code == 200
    # The second token is under its own rate (1 of 2), but the identity has used its 3.
    refused = second.get(f"{API}/grants/")
    assert refused.status_code == 429 and refused.json()["code"] == "throttled" and "Retry-After" in refused
    assert _token(owner, MachineFactory(owner=owner)).get(f"{API}/grants/").status_code == 200


def test_the_token_rate_does_not_count_sessions(settings, clear_cache, owner, requester):
    _rates(settings, token="1/minute")
    assert [api(requester).get(f"{API}/grants/").status_code for _ in range(3)] == [200, 200, 200]
    person_token = _token(owner, owner, scopes=["grants:read"])
    assert [person_token.get(f"{API}/grants/").status_code for _ in range(2)] == [200, 429]


def test_a_machine_is_counted_by_its_identity_never_as_a_user_id(owner):
    bot = MachineFactory(owner=owner)
    request = RequestFactory().get("/")
    request.user, request.auth = MachinePrincipal(bot), None
    assert UserRateThrottle().get_cache_key(request, None) == f"throttle_user_identity:{bot.pk}"
    request.user = owner.user
    assert UserRateThrottle().get_cache_key(request, None) == f"throttle_user_{owner.user.pk}"
    assert TokenRateThrottle().get_cache_key(request, None) is None  # a session: no token to count
