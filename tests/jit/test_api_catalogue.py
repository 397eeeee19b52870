"""The catalogue through the API: an agent finds what it may ask for, by name, system or risk, and what
asking will take; a person sees what they may request; nothing retired or unrequestable is listed."""

import pytest
from rest_framework.test import APIClient

from governance.services.credentials import api_token_create
from tests.api import API
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, SystemFactory, with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent():
    owner = with_role(PersonFactory(name="Olu Owner"), "requester")
    return MachineFactory(name="triage-agent", kind="ai_agent", owner=owner, may_self_request=True)


def bearer(identity) -> APIClient:
    issued = api_token_create(actor=None, identity_id=identity.pk, name="ci", scopes=["requests:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [entry["name"] for entry in response.json()["results"]]


def test_an_agent_sees_what_its_kind_may_hold_and_finds_it_by_name(agent):
    warehouse = SystemFactory(name="Warehouse")
    EntitlementFactory(system=warehouse, name="orders-read", allowed_identity_kinds=["ai_agent", "workload"],
                       auto_approve_machines=True)  # fmt: skip
    EntitlementFactory(system=warehouse, name="orders-admin", allowed_identity_kinds=["human"])
    EntitlementFactory(system=warehouse, name="orders-old", allowed_identity_kinds=["ai_agent"], requestable=False)
    EntitlementFactory(system=warehouse, name="orders-retired", allowed_identity_kinds=["ai_agent"], status="retired")
    client = bearer(agent)

    assert names(client.get(f"{API}/catalogue/")) == ["orders-read"]
    (entry,) = client.get(f"{API}/catalogue/", {"q": "orders", "risk_tier": "low"}).json()["results"]
    assert entry["system_name"] == "Warehouse" and entry["approves_automatically"] is True
    assert entry["max_duration_seconds"] > 0
    assert names(client.get(f"{API}/catalogue/", {"q": "payroll"})) == []
    assert client.get(f"{API}/catalogue/", {"risk_tier": "extreme"}).status_code == 400


def test_a_person_sees_what_they_may_request(client):
    person = with_role(PersonFactory(name="Rae"), "requester")
    EntitlementFactory(name="wiki-edit", allowed_identity_kinds=["human"])
    client.force_login(person.user)
    assert "wiki-edit" in names(client.get(f"{API}/catalogue/"))


def test_the_catalogue_costs_the_same_queries_however_long(agent, django_assert_max_num_queries):
    client = bearer(agent)
    EntitlementFactory(allowed_identity_kinds=["ai_agent"])
    client.get(f"{API}/catalogue/")
    with django_assert_max_num_queries(12) as few:
        client.get(f"{API}/catalogue/")
    for _ in range(20):
        EntitlementFactory(allowed_identity_kinds=["ai_agent"])
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(names(client.get(f"{API}/catalogue/"))) == 21
