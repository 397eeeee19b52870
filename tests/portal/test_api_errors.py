"""Every refusal of the API carries a machine-readable `code` beside `detail`; a policy refusal also
carries every reason the policy gave, and bad input its errors by field."""

from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from governance.services.credentials import api_token_create
from governance.token_scopes import MACHINE_SCOPES
from jit.models import AccessRequest
from tests.api import API, api
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return with_role(PersonFactory(name="Olu Owner"), "owner")


@pytest.fixture
def agent(owner):
    return MachineFactory(name="triage-agent", kind="ai_agent", owner=owner, may_self_request=True)


def bearer(owner, identity, scopes=MACHINE_SCOPES) -> APIClient:
    issued = api_token_create(actor=owner.user, identity_id=identity.pk, name="ci", scopes=sorted(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client


def test_a_policy_refusal_is_400_with_a_code_every_reason_and_the_fields(owner, agent):
    entitlement = EntitlementFactory(max_duration=timedelta(hours=1), ticket_required=True)
    response = bearer(owner, agent).post(
        f"{API}/requests/",
        {"beneficiary": agent.pk, "entitlement": entitlement.pk, "duration_seconds": 7200, "intent": "task 42"},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    too_long = "The maximum duration for this entitlement is 1 hour."
    no_ticket = "A ticket reference is required for this entitlement."
    assert body == {
        "detail": too_long,
        "code": "policy_refused",
        "reasons": [too_long, no_ticket],
        "errors": {"duration_seconds": [too_long], "ticket": [no_ticket]},
    }
    assert not AccessRequest.objects.exists()


def test_bad_input_is_400_with_a_code_and_errors_by_field(owner, agent):
    response = bearer(owner, agent).post(f"{API}/requests/", {"beneficiary": "me"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and {"beneficiary", "entitlement"} <= set(body["errors"])
    assert "reasons" not in body  # only the policy gives reasons


def test_an_unknown_id_or_path_is_404_with_a_code(owner, agent):
    client = bearer(owner, agent)
    assert client.get(f"{API}/requests/999999/").json() == {"detail": "Not found.", "code": "not_found"}
    for path in (f"{API}/grants/999999/release/", f"{API}/no-such-thing/"):
        response = client.post(path, {}, format="json")
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), path


def test_a_token_without_the_scope_or_reaching_past_a_machines_views_is_403_with_a_code(owner, agent):
    read_only = bearer(owner, agent, scopes=["requests:read"])
    response = read_only.post(f"{API}/requests/", {}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "The token lacks the scope requests:write.", "code": "insufficient_scope"}
    assert bearer(owner, agent).get(f"{API}/identities/").json()["code"] == "machine_not_allowed"


def test_a_domain_refusal_is_403_or_409_with_a_code(owner):
    quiet = MachineFactory(owner=owner, may_self_request=False)
    entitlement = EntitlementFactory()
    refused = bearer(owner, quiet).post(
        f"{API}/requests/", {"beneficiary": quiet.pk, "entitlement": entitlement.pk}, format="json"
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")

    person = with_role(PersonFactory(), "requester")
    client = api(person.user)
    ask = {"beneficiary": person.pk, "entitlement": entitlement.pk, "justification": "on call"}
    assert client.post(f"{API}/requests/", ask, format="json").status_code == 201
    again = client.post(f"{API}/requests/", ask, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "conflict")


def test_not_signed_in_or_a_bad_token_is_401_with_a_code():
    assert APIClient().get(f"{API}/requests/").json()["code"] == "not_authenticated"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer gp_000000000000_nope")
    response = client.get(f"{API}/requests/")
    assert (response.status_code, response.json()["code"]) == (401, "token_invalid")


def test_a_body_the_operation_does_not_read_is_415_with_a_code(owner, agent):
    response = bearer(owner, agent).post(f"{API}/requests/", "<xml/>", content_type="application/xml")
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")
