"""Intent-bound requests (issue 14, item 4): a machine's request says which task, doing what, to what;
it is stored, audited, and shown to approvers and auditors in words. Ref: #14."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from audit.services import Actor
from governance.services.credentials import api_token_create
from jit.models import AccessRequest
from jit.services.delegations import delegation_create
from tests.factories.governance import MachineFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/requests/"
INTENT = {
    "intent_task": "T-123",
    "intent_action": "read",
    "intent_resource": "db/orders",
    "intent": "Nightly reconciliation",
}
IN_WORDS = "Task T-123: read on db/orders: Nightly reconciliation"


@pytest.fixture
def agent(alice):
    return MachineFactory(name="recon-agent", kind="ai_agent", owner=alice, may_self_request=True)


def bearer(identity) -> APIClient:
    issued = api_token_create(actor=None, identity_id=identity.pk, name="agent", scopes=["requests:write"])
    client = APIClient(REMOTE_ADDR="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client


def test_an_agents_intent_is_stored_audited_and_returned(agent, entitlement):
    # when
    response = bearer(agent).post(
        URL, {"beneficiary": agent.pk, "entitlement": entitlement.pk, "duration_seconds": 3600, **INTENT}, format="json"
    )
    # then
    assert response.status_code == 201, response.json()
    body = response.json()
    assert {name: body[name] for name in INTENT} == INTENT
    stored = AccessRequest.objects.get()
    assert (stored.intent_task, stored.intent_action, stored.intent_resource, stored.intent) == tuple(INTENT.values())
    event = AuditEvent.objects.get(action="request.submitted")
    assert {name: event.data[name] for name in INTENT} == INTENT


def test_intent_parts_are_bounded(agent, entitlement):
    response = bearer(agent).post(
        URL,
        {"beneficiary": agent.pk, "entitlement": entitlement.pk, "intent": "x", "intent_task": "T" * 201},
        format="json",
    )
    assert response.status_code == 400 and set(response.json()["errors"]) == {"intent_task"}


def test_a_person_asking_for_themself_says_why_in_words(alice, entitlement):
    client = APIClient()
    client.force_authenticate(alice.user)
    response = client.post(
        URL,
        {"beneficiary": alice.pk, "entitlement": entitlement.pk, "justification": "deploy", "intent_task": "T-1"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "intent_not_for_people" and set(response.json()["errors"]) == {"intent_task"}


def test_approvers_and_auditors_read_the_intent_and_the_chain_in_words(
    client, alice, agent, entitlement, ent_owner, auditor
):
    # given: Alice lets her agent act for her; it asks for itself with an intent
    delegation = delegation_create(
        actor=alice.user,
        delegator_id=alice.pk,
        delegate_id=agent.pk,
        purpose="Reconciliation",
        expires_at=timezone.now() + timedelta(days=1),
    )
    from jit.services.requests import access_request_submit

    made = access_request_submit(
        actor=Actor(identity=agent),
        beneficiary_id=agent.pk,
        entitlement_id=entitlement.pk,
        duration=timedelta(hours=1),
        delegation_chain=[delegation.pk],
        **INTENT,
    )
    chain_words = 'On behalf of</dt><dd class="delegation-chain">Alice (person) → recon-agent (agent, caller)'
    # then: on the approver's card
    client.force_login(ent_owner)
    queue = client.get(reverse("jit:approval_queue")).content.decode()
    assert f'id="req-{made.pk}"' in queue and IN_WORDS in queue and chain_words in queue
    # and on the request's page, for an auditor
    client.force_login(auditor)
    detail = client.get(reverse("jit:request_detail", args=[made.pk])).content.decode()
    assert IN_WORDS in detail and chain_words in detail


def test_the_request_form_takes_the_intent_for_a_machine(client, alice, agent, entitlement):
    client.force_login(alice.user)
    url = reverse("jit:request_create", args=[entitlement.pk])
    # the fields start hidden for Alice herself; the script knows which choices are machines
    page = client.get(url).content.decode()
    assert 'id="intent-fields"' in page and f'data-machine-ids="{agent.pk}"' in page and "hidden disabled" in page
    form = {"beneficiary": agent.pk, "duration_hours": "1", "justification": "reconcile", **INTENT}
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    made = AccessRequest.objects.get()
    assert (made.intent_task, made.intent_action, made.intent_resource, made.intent) == tuple(INTENT.values())


def test_the_request_form_refuses_intent_for_a_person_beside_the_field(client, alice, entitlement):
    client.force_login(alice.user)
    url = reverse("jit:request_create", args=[entitlement.pk])
    response = client.post(
        url, {"beneficiary": alice.pk, "duration_hours": "1", "justification": "x", "intent_task": "T-1"}
    )
    page = response.content.decode()
    assert response.status_code == 200 and 'id="id_intent_task_error"' in page
    assert not AccessRequest.objects.exists()
