"""Signed callbacks: an agent that gives a callback URL hears how its request ended, signed with a secret
it was shown once; a receiver that is down gets it again later; a bad URL is refused with nothing written."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent, OutboxMessage
from audit.outbox import outbox_dispatch
from audit.webhooks import webhook_verify
from governance.services.credentials import api_token_create
from jit.models import AccessRequest, RequestCallback
from jit.services.approvals import access_request_decide
from tests.api import API
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db

SCOPES = ["requests:read", "requests:write", "grants:read", "grants:write"]


class Receiver:
    """A real HTTP server on loopback that keeps what it was sent and answers with `status`."""

    def __init__(self, status: int = 204):
        received, self.status = [], status
        self.received = received
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers), body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/portal-callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.REQUEST_CALLBACK_ALLOW_HTTP = True
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def agent():
    owner = with_role(PersonFactory(name="Olu Owner"), "requester")
    return MachineFactory(name="triage-agent", kind="ai_agent", owner=owner, may_self_request=True)


@pytest.fixture
def client(agent):
    issued = api_token_create(actor=agent.owner.user, identity_id=agent.pk, name="ci", scopes=SCOPES)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client


def ask(client, agent, entitlement, **extra):
    body = {"beneficiary": agent.pk, "entitlement": entitlement.pk, "intent": "Task 7: triage", **extra}
    return client.post(f"{API}/requests/", body, format="json")


def test_an_automatic_approval_is_called_back_signed_with_the_secret_shown_once(client, agent, receiver):
    entitlement = EntitlementFactory(risk_tier="low", auto_approve_machines=True)
    answer = ask(client, agent, entitlement, callback_url=receiver.url)
    assert answer.status_code == 201, answer.json()
    secret = answer.json()["callback_secret"]
    assert len(secret) == 64

    assert outbox_dispatch().delivered >= 1
    ((headers, body),) = receiver.received
    assert webhook_verify(secret, headers["X-Portal-Timestamp"], body, headers["X-Portal-Signature"])
    assert not webhook_verify("not-the-secret", headers["X-Portal-Timestamp"], body, headers["X-Portal-Signature"])
    sent = json.loads(body)
    request = AccessRequest.objects.get(pk=answer.json()["id"])
    assert sent["event"] == headers["X-Portal-Event"] == "request.approved"
    assert sent["request"]["id"] == request.pk and sent["grant"]["id"] == request.grant_id
    assert headers["Idempotency-Key"] == f"request:{request.pk}:callback:approved"

    # The secret is never read back, nor kept in the trail.
    assert "callback_secret" not in client.get(f"{API}/requests/{request.pk}/").json()
    assert secret not in json.dumps([e.data for e in AuditEvent.objects.all()], default=str)


def test_a_denial_by_a_person_is_called_back(client, agent, receiver):
    approver = with_role(PersonFactory(name="Ada Approver"), "approver")
    entitlement = EntitlementFactory(risk_tier="high", owner=approver)
    answer = ask(client, agent, entitlement, callback_url=receiver.url, justification="Incident 42")
    assert answer.status_code == 201 and answer.json()["status"] == "pending"
    outbox_dispatch()
    assert receiver.received == []  # nothing decided yet

    access_request_decide(request_id=answer.json()["id"], approver=approver.user, decision="deny", comment="No.")
    outbox_dispatch()
    ((_, body),) = receiver.received
    assert json.loads(body)["event"] == "request.denied"
    assert json.loads(body)["request"]["decision_note"] == "No."


def test_a_receiver_that_is_down_gets_the_callback_again_later(client, agent, receiver):
    receiver.status = 503
    entitlement = EntitlementFactory(risk_tier="low", auto_approve_machines=True)
    assert ask(client, agent, entitlement, callback_url=receiver.url).status_code == 201
    outbox_dispatch()
    message = OutboxMessage.objects.get(kind="jit.request_callback")
    assert message.status == "pending" and message.attempts == 1 and "503" in message.last_error


@pytest.mark.parametrize(
    "url",
    ["ftp://example.org/x", "not a url", "https://user:pw@example.org/cb", "http://insecure.example.org/cb"],
)
def test_a_bad_callback_url_is_refused_beside_the_field_and_nothing_is_written(client, agent, url):
    entitlement = EntitlementFactory(risk_tier="low", auto_approve_machines=True)
    answer = ask(client, agent, entitlement, callback_url=url)
    assert answer.status_code == 400 and "callback_url" in answer.json()["errors"]
    assert not AccessRequest.objects.exists() and not RequestCallback.objects.exists()


def test_only_hosts_on_the_allowlist_are_called_back(client, agent, settings):
    settings.REQUEST_CALLBACK_HOSTS = ["hooks.example.org"]
    entitlement = EntitlementFactory(risk_tier="low", auto_approve_machines=True)
    refused = ask(client, agent, entitlement, callback_url="https://elsewhere.example.org/cb")
    assert refused.status_code == 400 and "allowlist" in refused.json()["errors"]["callback_url"][0]
    assert ask(client, agent, entitlement, callback_url="https://hooks.example.org/cb").status_code == 201
