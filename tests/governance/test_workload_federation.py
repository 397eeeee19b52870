"""Workload federation: a JWT signed by a configured issuer, for a subject a machine trusts, buys a
short-lived token; a bad signature, audience, expiry, issuer or subject, a revoked trust, an inactive
identity and a replayed JWT are refused with a code; trusts are made and revoked by the machine's owners."""

import json
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
import time_machine
from cryptography.hazmat.primitives.asymmetric import rsa
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import ApiToken, WorkloadTrust
from governance.services import federation
from governance.services.federation import workload_trust_create, workload_trust_revoke
from governance.services.identities import identity_suspend
from tests.api import API
from tests.factories.governance import GrantFactory, MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db

ISSUER = "https://k8s.example.test"
AUDIENCE = "access-portal"
SUBJECT = "system:serviceaccount:ci:deployer"
EXCHANGE = f"{API}/token/exchange/"


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY, OTHER_KEY = _key(), _key()


def _jwks(key, kid: str = "k1") -> dict:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**public, "kid": kid, "use": "sig", "alg": "RS256"}]}


@pytest.fixture
def issuer_config(tmp_path, settings):
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(_jwks(KEY)))
    settings.WORKLOAD_ISSUERS = [
        {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(jwks_file), "max_token_minutes": 30}
    ]
    return settings.WORKLOAD_ISSUERS[0]


def signed(key=KEY, *, kid="k1", lifetime=timedelta(minutes=10), **claims) -> str:
    now = timezone.now()
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": SUBJECT,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="RS256", headers={"kid": kid})


def exchange(subject_token) -> "APIClient":
    return APIClient(REMOTE_ADDR="192.0.2.10").post(EXCHANGE, {"subject_token": subject_token}, format="json")


@pytest.fixture
def owner():
    return with_role(PersonFactory(name="Olu Owner"), "owner")


@pytest.fixture
def machine(owner):
    return MachineFactory(name="deployer", kind="workload", owner=owner)


@pytest.fixture
def trust(issuer_config, owner, machine):
    return workload_trust_create(
        actor=owner.user,
        identity_id=machine.pk,
        issuer=ISSUER,
        subject=SUBJECT,
        scopes=["grants:read", "requests:write"],
        token_minutes=15,
    )


def test_a_good_jwt_buys_a_short_lived_token_that_works_as_the_machine(trust, machine):
    grant = GrantFactory(identity=machine)
    GrantFactory()  # someone else's: not shown
    answer = exchange(signed())
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["scopes"] == ["grants:read", "requests:write"]
    assert answer["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(identity=machine)
    assert token.name == f"federated: {ISSUER}" and token.expires_at <= timezone.now() + timedelta(minutes=15)
    assert token.expires_at > timezone.now() + timedelta(minutes=9)  # the JWT lives 10 minutes, the trust 15

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    grants = client.get(f"{API}/grants/")
    assert grants.status_code == 200
    assert [g["id"] for g in grants.json()["results"]] == [grant.pk]
    assert client.get(f"{API}/identities/").status_code == 403  # a machine reaches only its own views


def test_the_token_never_outlives_the_jwt_nor_the_issuer_cap(trust, machine):
    assert exchange(signed(lifetime=timedelta(minutes=3))).status_code == 201
    short = ApiToken.objects.get(identity=machine)
    assert short.expires_at <= timezone.now() + timedelta(minutes=3)
    assert exchange(signed(lifetime=timedelta(hours=5))).status_code == 201
    longest = ApiToken.objects.filter(identity=machine).order_by("-pk").first()
    assert longest.expires_at <= timezone.now() + timedelta(minutes=15)  # the trust's 15, under the issuer's 30


def test_the_audit_event_names_the_subject_and_never_holds_the_jwt(trust, machine):
    subject_token = signed(jti="run-42")
    secret = exchange(subject_token).json()["access_token"]
    event = AuditEvent.objects.get(action="api_token.exchanged")
    assert event.actor_identity_id == machine.pk and event.target_id == str(machine.pk)
    assert event.data["iss"] == ISSUER and event.data["sub"] == SUBJECT and event.data["jti"] == "run-42"
    stored = json.dumps(event.data)
    assert subject_token not in stored and subject_token.split(".")[2] not in stored and secret not in stored


@pytest.mark.parametrize(
    "subject_token, code",
    [
        (lambda: signed(OTHER_KEY), "invalid_token"),  # signed by another key
        (lambda: signed(OTHER_KEY, kid="unknown"), "invalid_token"),
        (lambda: signed(aud="someone-else"), "wrong_audience"),
        (lambda: signed(lifetime=timedelta(minutes=-5)), "expired"),
        (lambda: signed(exp=None), "invalid_token"),  # exp is required
        (lambda: signed(nbf=int((timezone.now() + timedelta(hours=1)).timestamp())), "invalid_token"),
        (lambda: signed(iss="https://evil.example.test"), "untrusted_issuer"),
        (lambda: signed(sub="system:serviceaccount:ci:other"), "no_trust"),
        (lambda: "not-a-jwt", "invalid_token"),
        (
            lambda: jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT}, "x" * 32, algorithm="HS256"),
            "invalid_token",
        ),
    ],
    ids=[
        "other-key",
        "unknown-kid",
        "audience",
        "expired",
        "no-exp",
        "not-before",
        "issuer",
        "subject",
        "garbage",
        "hs256",
    ],
)
def test_a_bad_jwt_is_refused_with_a_code_and_nothing_is_issued(trust, machine, subject_token, code):
    answer = exchange(subject_token())
    assert answer.status_code == 401
    assert answer.json()["code"] == code and answer.json()["detail"]
    assert not ApiToken.objects.filter(identity=machine).exists()
    assert not AuditEvent.objects.filter(action="api_token.exchanged").exists()


def test_a_missing_subject_token_is_bad_input(trust):
    answer = APIClient().post(EXCHANGE, {}, format="json")
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_request"


def test_an_expired_jwt_is_refused_once_time_moves_on(trust):
    subject_token = signed(lifetime=timedelta(minutes=2))
    with time_machine.travel(timezone.now() + timedelta(minutes=5)):
        assert exchange(subject_token).json()["code"] == "expired"


def test_a_replayed_jwt_is_refused(trust, machine):
    subject_token = signed(jti="once")
    assert exchange(subject_token).status_code == 201
    again = exchange(subject_token)
    assert again.status_code == 401 and again.json()["code"] == "replayed"
    assert ApiToken.objects.filter(identity=machine).count() == 1


def test_a_revoked_trust_refuses_new_exchanges_and_kills_its_tokens(trust, owner, machine):
    secret = exchange(signed()).json()["access_token"]
    workload_trust_revoke(actor=owner.user, trust_id=trust.pk)
    assert exchange(signed()).json()["code"] == "no_trust"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get(f"{API}/grants/").status_code == 401
    event = AuditEvent.objects.get(action="workload_trust.revoked")
    assert event.data["subject"] == SUBJECT and len(event.data["revoked_tokens"]) == 1
    with pytest.raises(InvalidTransition):
        workload_trust_revoke(actor=owner.user, trust_id=trust.pk)


def test_suspending_the_identity_ends_its_trusts_and_reactivating_restores_none(trust, owner, machine):
    from governance.services.identities import identity_reactivate

    identity_suspend(identity_id=machine.pk, actor=owner.user, reason="key leaked")
    trust.refresh_from_db()
    assert trust.revoked_at is not None
    event = AuditEvent.objects.get(action="workload_trust.revoked")
    assert event.data["reason"] == "Suspended: key leaked" and event.data["subject"] == SUBJECT
    identity_reactivate(identity_id=machine.pk, actor=owner.user)
    answer = exchange(signed())
    assert answer.status_code == 401 and answer.json()["code"] == "no_trust"


def test_an_identity_suspended_between_trust_and_exchange_gets_no_token(trust, owner, machine):
    from governance.models import Identity

    Identity.objects.filter(pk=machine.pk).update(status="suspended")  # as if suspended by a racing transaction
    answer = exchange(signed())
    assert answer.status_code == 401 and answer.json()["code"] == "identity_inactive"


def test_trusts_are_made_by_the_machines_owners_only_and_checked(issuer_config, owner, machine):
    stranger = with_role(PersonFactory(), "owner")
    kwargs = {"identity_id": machine.pk, "issuer": ISSUER, "subject": SUBJECT, "scopes": ["grants:read"]}
    with pytest.raises(PermissionRefused):
        workload_trust_create(actor=stranger.user, **kwargs)
    with pytest.raises(ValidationFailed) as bad_issuer:
        workload_trust_create(actor=owner.user, **{**kwargs, "issuer": "https://unknown.test"})
    assert "issuer" in bad_issuer.value.field_errors
    with pytest.raises(ValidationFailed) as bad_scope:
        workload_trust_create(actor=owner.user, **{**kwargs, "scopes": ["inventory:write"]})
    assert "scopes" in bad_scope.value.field_errors
    with pytest.raises(ValidationFailed) as too_long:
        workload_trust_create(actor=owner.user, **kwargs, token_minutes=31)  # the issuer caps at 30
    assert "token_minutes" in too_long.value.field_errors
    with pytest.raises(ValidationFailed):  # people sign in themselves: no trusts for them
        workload_trust_create(actor=owner.user, **{**kwargs, "identity_id": owner.pk})
    assert not WorkloadTrust.objects.exists() and not AuditEvent.objects.filter(action__startswith="workload").exists()

    trust = workload_trust_create(actor=owner.user, **kwargs)
    assert trust.token_minutes == 30
    event = AuditEvent.objects.get(action="workload_trust.created")
    assert event.data["issuer"] == ISSUER and event.actor_user_id == owner.user.pk
    with pytest.raises(ValidationFailed):  # one identity per subject, so a JWT names exactly one
        workload_trust_create(actor=owner.user, **{**kwargs, "identity_id": MachineFactory(owner=owner).pk})
    with pytest.raises(PermissionRefused):
        workload_trust_revoke(actor=stranger.user, trust_id=trust.pk)
    assert WorkloadTrust.objects.get(pk=trust.pk).revoked_at is None


def test_a_jwt_without_a_jti_is_exchanged_each_time(trust, machine):
    assert exchange(signed(jti=None)).status_code == 201
    assert exchange(signed(jti=None)).status_code == 201


def test_keys_come_from_a_jwks_url_fetched_and_cached(settings, owner, machine):
    calls = []

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self):
            calls.append(self.path)
            body = json.dumps(_jwks(KEY)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/keys-{uuid.uuid4().hex}"
        settings.WORKLOAD_ISSUERS = [{"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": url}]
        workload_trust_create(
            actor=owner.user, identity_id=machine.pk, issuer=ISSUER, subject=SUBJECT, scopes=["grants:read"]
        )
        assert exchange(signed()).status_code == 201
        assert exchange(signed()).status_code == 201
        assert exchange(signed(OTHER_KEY)).json()["code"] == "invalid_token"
        assert len(calls) == 1  # the key set is cached
    finally:
        server.shutdown()
        federation._jwk_clients.clear()


#
# The identity page
#
def test_the_owner_adds_and_revokes_a_trust_on_the_machines_page(client, issuer_config, owner, machine):
    client.force_login(owner.user)
    page = client.get(reverse("governance:identity_detail", args=[machine.pk])).content.decode()
    assert "Workload trusts" in page and "No workload trusts" in page
    form = client.get(reverse("governance:workload_trust_create", args=[machine.pk]))
    assert form.status_code == 200 and ISSUER in form.content.decode()
    created = client.post(
        reverse("governance:workload_trust_create", args=[machine.pk]),
        {"issuer": ISSUER, "subject": SUBJECT, "scopes": ["grants:read"], "token_minutes": 10},
        follow=True,
    )
    body = created.content.decode()
    assert f"now trusts {SUBJECT}" in body and SUBJECT in body
    trust = WorkloadTrust.objects.get(identity=machine)
    assert trust.token_minutes == 10 and trust.created_by == owner.user
    revoked = client.post(reverse("governance:workload_trust_revoke", args=[machine.pk, trust.pk]), follow=True)
    assert "revoked: its JWTs buy no token" in revoked.content.decode()
    assert WorkloadTrust.objects.get(pk=trust.pk).revoked_at is not None
    again = client.post(reverse("governance:workload_trust_revoke", args=[machine.pk, trust.pk]), follow=True)
    assert "already revoked" in again.content.decode()


def test_bad_trust_input_is_told_beside_the_field_and_nothing_is_made(client, issuer_config, owner, machine):
    client.force_login(owner.user)
    url = reverse("governance:workload_trust_create", args=[machine.pk])
    too_long = client.post(url, {"issuer": ISSUER, "subject": SUBJECT, "scopes": ["grants:read"], "token_minutes": 45})
    assert too_long.status_code == 400 and "Between 1 and 30 minutes." in too_long.content.decode()
    unknown = client.post(
        url, {"issuer": "https://x.test", "subject": SUBJECT, "scopes": ["grants:read"], "token_minutes": 5}
    )
    assert unknown.status_code == 400
    assert not WorkloadTrust.objects.exists()


def test_strangers_and_people_get_no_trust_pages(client, issuer_config, owner, machine, trust):
    stranger = with_role(PersonFactory(), "owner")
    client.force_login(stranger.user)
    assert client.get(reverse("governance:workload_trust_create", args=[machine.pk])).status_code == 403
    assert client.post(reverse("governance:workload_trust_revoke", args=[machine.pk, trust.pk])).status_code == 403
    client.force_login(owner.user)
    other_machine = MachineFactory(owner=owner)  # the trust is not this machine's: not found
    assert (
        client.post(reverse("governance:workload_trust_revoke", args=[other_machine.pk, trust.pk])).status_code == 404
    )
    assert client.get(reverse("governance:workload_trust_create", args=[owner.pk])).status_code == 404
    assert WorkloadTrust.objects.get(pk=trust.pk).revoked_at is None


def test_the_trust_list_costs_one_query_however_long(client, issuer_config, owner, machine):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(owner.user)
    url = reverse("governance:identity_detail", args=[machine.pk])

    def cost() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        return len(queries)

    made = {"issuer": ISSUER, "scopes": ["grants:read"], "created_at": timezone.now()}
    WorkloadTrust.objects.create(identity=machine, subject="a", **made)
    few = cost()
    for n in range(5):
        WorkloadTrust.objects.create(identity=machine, subject=f"s{n}", **made)
    assert cost() == few


def test_a_malformed_issuer_setting_is_a_start_up_error_not_a_500(settings):
    from governance.checks import workload_issuers_are_valid

    settings.WORKLOAD_ISSUERS = [{"issuer": "https://ci.example", "audience": "portal"}]
    (error,) = workload_issuers_are_valid()
    assert error.id == "governance.E001" and "jwks_url or jwks_file" in error.msg
    settings.WORKLOAD_ISSUERS = []
    assert workload_issuers_are_valid() == []


def test_exchanges_are_forgotten_a_day_after_their_jwt_expired_and_the_audit_event_stays(trust):
    from governance.models import WorkloadExchange

    assert exchange(signed(jti="old", lifetime=timedelta(minutes=5))).status_code == 201
    assert federation.workload_exchanges_purge() == 0
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=10)):
        assert federation.workload_exchanges_purge() == 1
    assert not WorkloadExchange.objects.exists()
    assert AuditEvent.objects.filter(action="api_token.exchanged").count() == 1
