"""The served OpenAPI schema tells a machine how to sign in and shows it calls it can copy: the bearer
token (its format, where to get one), the token exchange, and an agent asking for access."""

import json

import pytest

from jit.api.serializers import SubmitSerializer
from tests.factories.governance import PersonFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client) -> dict:
    client.force_login(PersonFactory(user__roles=["requester"]).user)
    response = client.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def _examples(content: dict) -> dict:
    return {name: example["value"] for name, example in content["application/json"].get("examples", {}).items()}


def test_the_bearer_token_says_its_format_and_both_ways_to_get_one(schema):
    scheme = schema["components"]["securitySchemes"]["apiToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for told in (
        "Authorization: Bearer gp_<prefix>_<secret>",
        "/inventory/identities/<id>/",
        "/api/v1/token/exchange/",
    ):
        assert told in scheme["description"], told
    assert {"apiToken": []} in schema["paths"]["/api/v1/requests/"]["post"]["security"]


def test_the_token_exchange_has_examples_of_the_call_its_token_and_a_refusal(schema):
    operation = schema["paths"]["/api/v1/token/exchange/"]["post"]
    assert not operation.get("security") and "security" not in schema  # the JWT is the credential
    (sent,) = _examples(operation["requestBody"]["content"]).values()
    assert set(sent) == {"subject_token"}
    (issued,) = _examples(operation["responses"]["201"]["content"]).values()
    assert issued["token_type"] == "Bearer" and issued["access_token"].startswith("gp_")
    (refused,) = _examples(operation["responses"]["401"]["content"]).values()
    assert set(refused) == {"detail", "code"}


def test_submitting_a_request_has_an_agents_example_and_its_answers(schema):
    components = schema["components"]["schemas"]
    operation = schema["paths"]["/api/v1/requests/"]["post"]
    (sent,) = _examples(operation["requestBody"]["content"]).values()
    intent = {"intent", "intent_task", "intent_action", "intent_resource", "delegation_chain"}
    assert {"beneficiary", "entitlement", *intent} <= set(sent) <= set(components["Submit"]["properties"])
    assert SubmitSerializer(data=sent).is_valid()
    (submitted,) = _examples(operation["responses"]["201"]["content"]).values()
    assert set(submitted) == set(components["AccessRequest"]["properties"]), (
        "the example in jit/api/schema_examples.py shows every field an access request has"
    )
    (refused,) = _examples(operation["responses"]["400"]["content"]).values()
    assert refused["code"] == "policy_refused" and refused["reasons"][0] == refused["detail"]
    (no_scope,) = _examples(operation["responses"]["403"]["content"]).values()
    assert no_scope["code"] == "insufficient_scope"


def test_every_refusal_documents_its_code_and_a_policys_reasons(schema):
    error = schema["components"]["schemas"]["Error"]
    assert {"detail", "code"} <= set(error["required"]) and "reasons" in error["properties"]
    for code in ("policy_refused", "insufficient_scope", "throttled", "not_found"):
        assert code in error["properties"]["code"]["description"], code
