"""The webhook connector against a real HTTP server on loopback: events arrive signed with one key per
job, a replay has no second effect, a 500 or a timeout is tried again later, a 401 fails at once with
people told, and a target that finishes later confirms by a signed callback that nobody else can forge."""

import itertools
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent, OutboxMessage, OutboxStatus
from audit.outbox import outbox_dispatch
from audit.webhooks import webhook_body, webhook_signature, webhook_verify
from governance.choices import GrantKind, GrantStatus
from governance.connectors import Holding, PermanentError, connector_for
from governance.models import Grant, Notification
from governance.services.catalogue import system_create
from governance.services.grants import grant_create, grant_revoke
from tests.api import API
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db

SECRET = "webhook-signing-secret-0123456789"
_names = itertools.count(1)
CALLBACK = f"{API}/connectors/webhook/callback/"


class Target:
    """A real HTTP server on 127.0.0.1 standing in for the system: it checks every signature with
    `webhook_verify`, keeps what it was sent, and does each job once per Idempotency-Key.

    `answers` are the statuses of the next POSTs (then 200); a status of None holds the request
    without answering until the server closes (a target that hangs). `work_before_answering` does the
    job even when the answer is an error (a target that did the work, then failed to say so).
    """

    def __init__(self, secret: str = SECRET):
        self.secret = secret
        self.deliveries: list[dict] = []  # every request that arrived, verified or not
        self.done: dict[str, dict] = {}  # Idempotency-Key -> the event it did
        self.answers: list[int | None] = []
        self.work_before_answering = False
        self.holdings = [{"account": "svc-a", "target_name": "readers"}]
        self.released = threading.Event()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def _verified(self, body: bytes) -> bool:
                ok = webhook_verify(
                    target.secret,
                    self.headers.get("X-Portal-Timestamp", ""),
                    body,
                    self.headers.get("X-Portal-Signature", ""),
                )
                target.deliveries.append({"method": self.command, "headers": self.headers, "body": body, "ok": ok})
                return ok

            def _answer(self, status: int, payload: dict | None = None) -> None:
                raw = json.dumps(payload or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if not self._verified(body):
                    return self._answer(401, {"error": "bad signature"})
                status = target.answers.pop(0) if target.answers else 200
                if status is None:
                    target.released.wait(10)  # hangs: the portal's timeout ends the wait
                    return None
                key = self.headers["Idempotency-Key"]
                if (status < 300 or target.work_before_answering) and key not in target.done:
                    target.done[key] = json.loads(body)  # the work, once per key
                return self._answer(status, {"reference": f"job-{len(target.done)}"})

            def do_GET(self):
                if not self._verified(b""):
                    return self._answer(401)
                return self._answer(200, {"holdings": target.holdings})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/portal/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target(settings):
    settings.CONNECTOR_WEBHOOK_ALLOW_HTTP = True  # production requires https
    settings.CONNECTOR_TIMEOUT_SECONDS = 0.5
    target = Target()
    yield target
    target.close()


@pytest.fixture
def make_system(admin_user, target):
    def make(**extra):
        return system_create(
            actor=admin_user,
            name=f"Vault {next(_names)}",
            owner=PersonFactory(),
            connector="webhook",
            connector_settings={
                "url": target.url,
                "signing_secret": SECRET,
                "account_attribute": "name",
                **extra,
            },
        )

    return make


def _issue(system, **extra) -> Grant:
    entitlement = EntitlementFactory(system=system, name="db-readers", target_name="readers")
    return grant_create(
        actor=None,
        identity=MachineFactory(name="svc-payroll"),
        entitlement=entitlement,
        kind=GrantKind.JIT,
        duration=timedelta(hours=2),
        **extra,
    )


def _message(kind: str) -> OutboxMessage:
    return OutboxMessage.objects.get(kind=kind)


def _later(minutes: int = 90):
    return time_machine.travel(timezone.now() + timedelta(minutes=minutes), tick=False)


def test_provisioning_posts_a_signed_event_and_the_answer_activates_the_grant(make_system, target):
    system = make_system()
    grant = _issue(system)
    outbox_dispatch()
    (delivery,) = target.deliveries
    assert delivery["ok"], "the target verified the signature with the system's secret"
    headers, event = delivery["headers"], json.loads(delivery["body"])
    assert headers["X-Portal-Signature"].startswith("v1=") and headers["X-Portal-Event"] == "grant.provision"
    assert headers["Idempotency-Key"] == f"grant:{grant.pk}:connector.provision:1"
    assert event == {
        "event": "grant.provision",
        "grant": {
            "id": grant.pk,
            "status": "pending_provision",
            "kind": "jit",
            "expires_at": None,
            "approved_duration_seconds": 7200,
        },
        "account": "svc-payroll",
        "target_name": "readers",
        "identity": {"id": grant.identity_id, "name": "svc-payroll", "kind": "service_account"},
        "entitlement": {"id": grant.entitlement_id, "name": "db-readers"},
        "system": {"id": system.pk, "name": system.name},
    }
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE and grant.connector_reference == "job-1"
    activated = AuditEvent.objects.get(action="grant.activated", target_id=str(grant.pk))
    assert activated.data["confirmation"] == (
        f"http://127.0.0.1:{target.server.server_port} answered 200 to grant.provision"
        f" (Idempotency-Key grant:{grant.pk}:connector.provision:1)"
    )
    assert "/portal/events" not in activated.data["confirmation"]  # a URL's path may carry a token


def test_revocation_is_confirmed_and_the_grant_page_shows_the_confirmation(make_system, target, client):
    system = make_system()
    grant = _issue(system)
    outbox_dispatch()
    grant_revoke(grant_id=grant.pk, actor=None, reason="task done")
    outbox_dispatch()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    revoke = json.loads(target.deliveries[-1]["body"])
    assert (revoke["event"], revoke["grant"]["status"], revoke["account"]) == (
        "grant.revoke",
        "revoking",
        "svc-payroll",
    )
    assert target.deliveries[-1]["headers"]["Idempotency-Key"].startswith(f"grant:{grant.pk}:connector.revoke:")
    revoked = AuditEvent.objects.get(action="grant.revoked", target_id=str(grant.pk))
    assert "answered 200 to grant.revoke" in revoked.data["confirmation"]
    client.force_login(system.owner.user)
    page = client.get(reverse("governance:grant_detail", args=[grant.pk])).content.decode()
    assert "answered 200 to grant.revoke" in page


def test_a_500_is_tried_again_later_with_the_same_key_and_the_work_is_done_once(make_system, target):
    system = make_system()
    target.answers = [500]
    target.work_before_answering = True  # did the job, then failed to say so
    grant = _issue(system)
    assert outbox_dispatch().failed == 1
    message = _message("connector.provision")
    assert (message.status, message.attempts) == (OutboxStatus.PENDING, 1)
    assert message.next_attempt_at > timezone.now()
    assert "answered 500" in message.last_error and "RetriableError" in message.last_error
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PENDING_PROVISION
    assert outbox_dispatch().failed == 0  # not due yet: backoff, not a retry storm

    with _later():
        assert outbox_dispatch().delivered >= 1
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    keys = [d["headers"]["Idempotency-Key"] for d in target.deliveries]
    assert keys == [f"grant:{grant.pk}:connector.provision:1"] * 2
    assert len(target.done) == 1, "the repeat delivery had no second effect at the target"


def test_a_replayed_delivery_has_no_second_effect(make_system, target):
    import urllib.request

    system = make_system()
    grant = _issue(system)
    outbox_dispatch()
    first = target.deliveries[0]
    # Someone on the path sends the very same request again (headers, signature, body).
    replay = urllib.request.Request(
        target.url,
        data=first["body"],
        method="POST",
        headers={
            name: value
            for name, value in first["headers"].items()
            if name.lower().startswith(("x-portal", "idempotency", "content-type"))
        },
    )
    with urllib.request.urlopen(replay, timeout=5) as answer:
        assert answer.status == 200
    assert target.deliveries[1]["ok"] and len(target.done) == 1
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.ACTIVE


def test_a_401_fails_at_once_and_tells_the_admins_and_the_system_owner(make_system, target, admin_user):
    system = make_system()
    target.secret = "the-target-expects-another-secret"
    grant = _issue(system)
    assert outbox_dispatch().dead == 1
    message = _message("connector.provision")
    assert (message.status, message.attempts) == (OutboxStatus.DEAD, 1)  # no retry storm
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PROVISION_FAILED
    assert f"webhook connector of {system.name}" in grant.last_error and "answered 401" in grant.last_error
    told = set(Notification.objects.filter(kind="grant.connector_failed").values_list("recipient", flat=True))
    assert told == {admin_user.pk, system.owner.user_id}
    assert len(target.deliveries) == 1 and not target.done


def test_a_timeout_is_retriable_and_never_shows_the_grant_revoked(make_system, target):
    system = make_system()
    grant = _issue(system)
    outbox_dispatch()
    target.answers = [None]  # the target hangs
    grant_revoke(grant_id=grant.pk, actor=None, reason="task done")
    assert outbox_dispatch().failed == 1
    message = _message("connector.revoke")
    assert (message.status, message.attempts) == (OutboxStatus.PENDING, 1)
    assert "did not answer within 0.5 s" in message.last_error
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING and grant.revoked_at is None


def test_a_refused_connection_is_retriable(make_system, target, settings):
    system = make_system()
    target.close()  # nothing listens on the port any more
    _issue(system)
    assert outbox_dispatch().failed == 1
    assert "connection refused" in _message("connector.provision").last_error


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_refusals_that_a_retry_cannot_fix_are_permanent(make_system, target, status):
    system = make_system()
    target.answers = [status]
    grant = _issue(system)
    with pytest.raises(PermanentError, match=f"answered {status}"):
        connector_for(system).provision(grant)


@pytest.mark.parametrize("status", [429, 502, 503])
def test_overload_and_server_errors_are_retriable(make_system, target, status):
    from governance.connectors import RetriableError

    system = make_system()
    target.answers = [status]
    with pytest.raises(RetriableError, match=f"answered {status}"):
        connector_for(system).provision(_issue(system))


def test_a_redirect_to_another_host_is_not_followed(make_system, target, settings):
    other, redirecting = Target(), Target()
    try:
        redirecting.server.RequestHandlerClass.do_POST = lambda handler: (
            handler.send_response(307),
            handler.send_header("Location", other.url.replace("127.0.0.1", "localhost")),
            handler.send_header("Content-Length", "0"),
            handler.end_headers(),
        )
        system = make_system(url=redirecting.url)
        with pytest.raises(PermanentError, match=r"answered 307 .*not followed"):
            connector_for(system).provision(_issue(system))
        assert other.deliveries == []
    finally:
        other.close()
        redirecting.close()


def test_asynchronous_target_confirms_by_signed_callback(make_system, target):
    system = make_system(asynchronous=True)
    grant = _issue(system)
    outbox_dispatch()
    assert _message("connector.provision").status == OutboxStatus.DELIVERED  # accepted
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PENDING_PROVISION and grant.granted_at is None

    response = _callback({"grant": grant.pk, "event": "grant.provisioned"})
    assert response.status_code == 200, response.content
    assert response.json() == {"grant": grant.pk, "status": "active", "changed": True}
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE and grant.expires_at is not None
    activated = AuditEvent.objects.get(action="grant.activated", target_id=str(grant.pk))
    assert activated.actor_label == "system"
    assert activated.data["confirmation"].startswith(f"confirmed by {system.name} by signed callback")

    # A fresh callback saying the same, then the very same signed request again: no second effect.
    later = int(time.time()) + 1
    again = _callback({"grant": grant.pk, "event": "grant.provisioned"}, moment=later)
    replay = _callback({"grant": grant.pk, "event": "grant.provisioned"}, moment=later)
    assert (again.status_code, again.json()["changed"], replay.json()["changed"]) == (200, False, False)
    assert AuditEvent.objects.filter(action="grant.activated", target_id=str(grant.pk)).count() == 1

    # Revocation: accepted, then confirmed by the target.
    grant_revoke(grant_id=grant.pk, actor=None, reason="task done")
    outbox_dispatch()
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REVOKING
    assert _callback({"grant": grant.pk, "event": "grant.revoked"}).json()["status"] == "revoked"


def test_a_target_that_reports_failure_by_callback_marks_the_grant_failed(make_system, target, admin_user):
    system = make_system(asynchronous=True)
    grant = _issue(system)
    outbox_dispatch()
    response = _callback({"grant": grant.pk, "event": "grant.failed", "error": "no group named readers"})
    assert response.json() == {"grant": grant.pk, "status": "provision_failed", "changed": True}
    grant.refresh_from_db()
    assert "by signed callback" in grant.last_error and "no group named readers" in grant.last_error
    told = set(Notification.objects.filter(kind="grant.connector_failed").values_list("recipient", flat=True))
    assert told == {admin_user.pk, system.owner.user_id}


def test_a_callback_for_a_job_that_does_not_wait_is_a_conflict(make_system, target):
    system = make_system()
    grant = _issue(system)
    outbox_dispatch()  # active
    response = _callback({"grant": grant.pk, "event": "grant.revoked"})
    assert response.status_code == 409 and response.json()["code"]
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.ACTIVE


@pytest.mark.parametrize(
    "forge",
    ["wrong_secret", "other_systems_secret", "tampered_body", "unsigned", "stale", "unknown_grant"],
)
def test_a_callback_not_signed_by_the_grants_system_is_refused_and_changes_nothing(make_system, target, forge):
    system = make_system(asynchronous=True)
    other = make_system(asynchronous=True, signing_secret="another-systems-secret-0123456789")
    grant = _issue(system)
    outbox_dispatch()
    events_before = AuditEvent.objects.count()
    payload = {"grant": grant.pk, "event": "grant.provisioned"}
    secret, moment, body = SECRET, int(time.time()), webhook_body(payload)
    if forge == "wrong_secret":
        secret = "guessed-secret-0123456789"
    elif forge == "other_systems_secret":
        secret = "another-systems-secret-0123456789"
        assert other.pk != system.pk
    elif forge == "stale":
        moment -= 301
    elif forge == "unknown_grant":
        body = webhook_body({**payload, "grant": grant.pk + 1000})
    headers = {}
    if forge != "unsigned":
        signed = webhook_body({**payload, "event": "grant.failed"}) if forge == "tampered_body" else body
        headers = {
            "HTTP_X_PORTAL_TIMESTAMP": str(moment),
            "HTTP_X_PORTAL_SIGNATURE": webhook_signature(secret, moment, signed),
        }
    response = APIClient().post(CALLBACK, body, content_type="application/json", **headers)
    assert response.status_code == 401
    expected = {"unsigned": "signature_missing", "stale": "timestamp_out_of_range"}.get(forge, "signature_invalid")
    assert response.json()["code"] == expected and response.json()["detail"]
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PENDING_PROVISION
    assert AuditEvent.objects.count() == events_before, "nothing written"


def test_a_bad_callback_body_is_refused_with_a_code(make_system, target):
    grant = _issue(make_system(asynchronous=True))
    assert _callback({"grant": grant.pk, "event": "grant.exploded"}).json()["code"] == "invalid"
    moment = int(time.time())
    garbage = b"not json"
    response = APIClient().post(
        CALLBACK,
        garbage,
        content_type="application/json",
        HTTP_X_PORTAL_TIMESTAMP=str(moment),
        HTTP_X_PORTAL_SIGNATURE=webhook_signature(SECRET, moment, garbage),
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_holdings_and_the_connection_test(make_system, target):
    system = make_system(holdings_url=target.url.replace("/events", "/holdings"))
    connector = connector_for(system)
    assert connector.holdings() == {Holding("svc-a", "readers")}
    assert target.deliveries[-1]["method"] == "GET" and target.deliveries[-1]["ok"]
    checks = connector.test_connection()
    assert [(c.name, c.ok) for c in checks] == [("Settings", True), ("Target URL", True), ("Holdings URL", True)]
    assert json.loads(target.deliveries[-2]["body"])["event"] == "connection.test"

    target.secret = "rotated-on-the-target-only-0123"
    failing = {c.name: c for c in connector.test_connection()}
    assert not failing["Target URL"].ok and "answered 401" in failing["Target URL"].detail
    assert not failing["Holdings URL"].ok
    assert connector_for(make_system()).holdings() is None  # no holdings URL: cannot tell


def test_removing_a_holding_posts_a_holding_revoke(make_system, target):
    system = make_system()
    result = connector_for(system).remove_holding(Holding("svc-stray", "admins"))
    assert "answered 200 to holding.revoke" in result.detail
    event = json.loads(target.deliveries[-1]["body"])
    assert (event["event"], event["account"], event["target_name"], event["grant"]) == (
        "holding.revoke",
        "svc-stray",
        "admins",
        None,
    )


def test_a_target_url_the_portal_no_longer_allows_is_a_permanent_error(make_system, target, settings):
    system = make_system()
    settings.CONNECTOR_WEBHOOK_ALLOW_HTTP = False  # https required since the system was saved
    with pytest.raises(PermanentError, match="refused"):
        connector_for(system).provision(_issue(system))
    assert target.deliveries == []


def _callback(payload: dict, *, moment: int | None = None):
    """POST a callback signed by the target with the system's secret, at `moment` (now by default)."""
    moment = int(time.time()) if moment is None else moment
    body = webhook_body(payload)
    return APIClient().post(
        CALLBACK,
        body,
        content_type="application/json",
        HTTP_X_PORTAL_TIMESTAMP=str(moment),
        HTTP_X_PORTAL_SIGNATURE=webhook_signature(SECRET, moment, body),
    )


def test_a_session_or_token_is_no_credential_for_the_callback(make_system, target, admin_user):
    grant = _issue(make_system(asynchronous=True))
    client = APIClient()
    client.force_authenticate(admin_user)
    response = client.post(CALLBACK, {"grant": grant.pk, "event": "grant.provisioned"}, format="json")
    assert (response.status_code, response.json()["code"]) == (401, "signature_missing")
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.PENDING_PROVISION


def test_header_text_of_any_kind_is_refused_not_an_error(make_system, target):
    grant = _issue(make_system(asynchronous=True))
    body = webhook_body({"grant": grant.pk, "event": "grant.provisioned"})
    for timestamp, signature in [(str(int(time.time())), "v1=é"), ("soon", "v1=00"), ("1", "")]:
        response = APIClient().post(
            CALLBACK,
            body,
            content_type="application/json",
            HTTP_X_PORTAL_TIMESTAMP=timestamp,
            HTTP_X_PORTAL_SIGNATURE=signature,
        )
        assert response.status_code == 401, (timestamp, signature)
    assert _callback({"grant": 2**70, "event": "grant.provisioned"}).status_code == 401


def test_a_callback_with_a_charset_is_read_and_one_of_another_type_is_refused(make_system, target):
    grant = _issue(make_system(asynchronous=True))
    moment, body = int(time.time()), webhook_body({"grant": grant.pk, "event": "grant.provisioned"})
    signed = {
        "HTTP_X_PORTAL_TIMESTAMP": str(moment),
        "HTTP_X_PORTAL_SIGNATURE": webhook_signature(SECRET, moment, body),
    }
    refused = APIClient().post(CALLBACK, body, content_type="text/plain", **signed)
    assert (refused.status_code, refused.json()["code"]) == (415, "unsupported_media_type")
    accepted = APIClient().post(CALLBACK, body, content_type="application/json; charset=utf-8", **signed)
    assert accepted.status_code == 200 and accepted.json()["status"] == "active"
