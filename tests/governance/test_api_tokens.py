"""API tokens: shown once and kept as a keyed hash; expiry bounded by risk; scopes; networks; rotation with
an overlap; revocation; killed with their identity; and machines acting on their own, only on their own."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from governance.errors import PermissionRefused, ValidationFailed
from governance.models import ApiToken
from governance.services.credentials import (
    api_token_create,
    api_token_revoke,
    api_token_rotate,
    token_digest,
)
from governance.services.identities import identity_offboard, identity_suspend
from jit.models import AccessRequest
from tests.api import API
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db

MACHINE_SCOPES = ["requests:read", "requests:write", "grants:read", "grants:write", "break_glass:write"]


def bearer(secret: str, address: str = "127.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def owner():
    return with_role(PersonFactory(name="Olu Owner"), "owner")


@pytest.fixture
def agent(owner):
    return MachineFactory(name="triage-agent", kind="ai_agent", owner=owner, may_self_request=True)


def issue(actor, identity, scopes=MACHINE_SCOPES, **kwargs):
    return api_token_create(actor=actor, identity_id=identity.pk, name="ci", scopes=scopes, **kwargs)


def test_the_secret_is_returned_once_and_only_a_keyed_hash_is_stored(owner, agent):
    issued = issue(owner.user, agent)
    token = ApiToken.objects.get(pk=issued.token.pk)
    assert issued.secret.startswith(f"gp_{token.prefix}_")
    assert token.digest == token_digest(issued.secret) and issued.secret not in token.digest
    event = AuditEvent.objects.get(action="api_token.created")
    assert issued.secret not in str(event.data) and event.data["prefix"] == token.prefix


def test_a_token_reaches_its_scopes_and_records_where_it_was_last_used(owner):
    issued = issue(owner.user, owner, scopes=["inventory:read"])
    assert bearer(issued.secret).get(f"{API}/identities/").status_code == 200
    refused = bearer(issued.secret).post(f"{API}/identities/", {"name": "x"}, format="json")
    assert refused.status_code == 403 and "inventory:write" in refused.json()["detail"]
    token = ApiToken.objects.get(pk=issued.token.pk)
    assert token.last_used_at is not None and token.last_used_from == "127.0.0.1"


def test_an_endpoint_without_an_area_takes_no_token_and_a_machine_only_its_own_views(owner, agent):
    from types import SimpleNamespace

    from governance.api.authentication import MachinePrincipal
    from governance.api.permissions import TokenScopes

    person_token = issue(owner.user, owner, scopes=["inventory:read"]).token
    new_view = SimpleNamespace()  # an endpoint nobody opened to tokens yet
    check = TokenScopes()
    assert not check.has_permission(SimpleNamespace(auth=person_token, user=owner.user, method="GET"), new_view)
    assert "does not take API tokens" in check.message
    machine_token = issue(owner.user, agent).token
    inventory_view = SimpleNamespace(token_area="inventory")
    machine = SimpleNamespace(auth=machine_token, user=MachinePrincipal(agent), method="GET", _request=None)
    assert not check.has_permission(machine, inventory_view)
    session = SimpleNamespace(auth=None, user=owner.user, method="POST")
    assert check.has_permission(session, new_view)


@pytest.mark.parametrize(
    "mangle",
    [lambda s: s[:-2] + "xx", lambda s: "gp_000000000000_" + s.split("_", 2)[2], lambda s: "not-a-token"],
    ids=["wrong secret", "wrong prefix", "garbage"],
)
def test_a_wrong_token_is_401_with_a_code(owner, mangle):
    issued = issue(owner.user, owner, scopes=["inventory:read"])
    response = bearer(mangle(issued.secret)).get(f"{API}/identities/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_or_revoked_token_is_refused(owner):
    expired = issue(owner.user, owner, scopes=["inventory:read"], expires_in_days=1)
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1)):
        response = bearer(expired.secret).get(f"{API}/identities/")
        assert response.status_code == 401 and response.json()["code"] == "token_expired"
    revoked = issue(owner.user, owner, scopes=["inventory:read"])
    api_token_revoke(actor=owner.user, token_id=revoked.token.pk, reason="leaked in a log")
    response = bearer(revoked.secret).get(f"{API}/identities/")
    assert response.status_code == 401 and response.json() == {
        "detail": "The token was revoked.",
        "code": "token_revoked",
    }


def test_a_token_lives_no_longer_than_the_riskiest_access_its_identity_holds_allows(owner, agent):
    GrantFactory(identity=agent, entitlement=EntitlementFactory(risk_tier="critical"))
    with pytest.raises(ValidationFailed, match="at most 30 days"):
        issue(owner.user, agent, expires_in_days=60)
    assert issue(owner.user, agent, expires_in_days=30).token.expires_at <= timezone.now() + timedelta(days=30)


def test_allowed_networks_bind_the_token_to_where_it_runs(owner):
    issued = issue(owner.user, owner, scopes=["inventory:read"], allowed_networks=["10.0.0.0/8"])
    refused = bearer(issued.secret, address="192.0.2.7").get(f"{API}/identities/")
    assert refused.status_code == 401 and "address" in refused.json()["detail"]
    assert bearer(issued.secret, address="10.1.2.3").get(f"{API}/identities/").status_code == 200
    with pytest.raises(ValidationFailed, match="not a network"):
        issue(owner.user, owner, scopes=["inventory:read"], allowed_networks=["the office"])


def test_rotation_gives_a_successor_and_the_old_token_works_for_the_overlap_only(owner, agent):
    old = issue(owner.user, agent)
    new = api_token_rotate(actor=owner.user, token_id=old.token.pk, overlap=timedelta(hours=1))
    assert new.token.rotated_from_id == old.token.pk and new.secret != old.secret
    assert bearer(old.secret).get(f"{API}/grants/").status_code == 200
    with time_machine.travel(timezone.now() + timedelta(hours=1, minutes=1)):
        assert bearer(old.secret).get(f"{API}/grants/").status_code == 401
        assert bearer(new.secret).get(f"{API}/grants/").status_code == 200


@pytest.mark.parametrize("end", ["suspend", "offboard"])
def test_suspending_or_offboarding_an_identity_kills_its_tokens_at_once(owner, agent, admin_user, end):
    issued = issue(owner.user, agent)
    if end == "suspend":
        identity_suspend(identity_id=agent.pk, actor=owner.user, reason="key leaked")
    else:
        identity_offboard(identity_id=agent.pk, actor=admin_user, reason="retired")
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None
    assert bearer(issued.secret).get(f"{API}/grants/").status_code == 401
    assert AuditEvent.objects.filter(action="api_token.killed", target_id=str(agent.pk)).exists()


def test_only_the_person_or_a_machines_owners_make_its_tokens(owner, agent, auditor):
    stranger = with_role(PersonFactory(), "owner")
    with pytest.raises(PermissionRefused):
        issue(stranger.user, agent)
    with pytest.raises(PermissionRefused):
        issue(stranger.user, owner, scopes=["inventory:read"])
    with pytest.raises(PermissionRefused):
        issue(auditor, agent)
    with pytest.raises(ValidationFailed, match="own requests, grants and break-glass"):
        issue(owner.user, agent, scopes=["inventory:read"])
    assert not ApiToken.objects.exists()


def test_a_machine_requests_for_itself_reads_only_its_own_and_releases_its_grant(owner, agent):
    entitlement = EntitlementFactory(risk_tier="low", auto_approve_machines=True)
    other = MachineFactory(may_self_request=True)
    GrantFactory(identity=other)
    client = bearer(issue(owner.user, agent).secret)

    submitted = client.post(
        f"{API}/requests/",
        {"beneficiary": agent.pk, "entitlement": entitlement.pk, "duration_seconds": 3600, "intent": "task 42"},
        format="json",
    )
    assert submitted.status_code == 201, submitted.json()
    request = AccessRequest.objects.get(pk=submitted.json()["id"])
    assert request.requester is None and request.requester_identity_id == agent.pk
    event = AuditEvent.objects.get(action="request.submitted", target_id=str(request.pk))
    assert event.actor_identity_id == agent.pk and event.channel == "api"

    for_other = client.post(f"{API}/requests/", {"beneficiary": other.pk, "entitlement": entitlement.pk}, format="json")
    assert for_other.status_code == 400
    assert [r["id"] for r in client.get(f"{API}/requests/").json()["results"]] == [request.pk]
    grants = client.get(f"{API}/grants/").json()["results"]
    assert {g["identity"]["id"] if isinstance(g["identity"], dict) else g["identity"] for g in grants} <= {agent.pk}
    assert client.get(f"{API}/identities/").status_code == 403
    assert client.post(f"{API}/requests/{request.pk}/approve/", {"comment": ""}, format="json").status_code in (
        403,
        404,
    )

    held = GrantFactory(identity=agent, kind="jit")
    released = client.post(f"{API}/grants/{held.pk}/release/", {"reason": "task done"}, format="json")
    assert released.status_code == 200, released.json()
    foreign = GrantFactory(identity=other, kind="jit")
    assert client.post(f"{API}/grants/{foreign.pk}/release/", {"reason": "x"}, format="json").status_code == 404


def test_a_machine_its_owner_did_not_allow_to_ask_is_refused(owner):
    quiet = MachineFactory(owner=owner, may_self_request=False)
    client = bearer(issue(owner.user, quiet).secret)
    entitlement = EntitlementFactory()
    response = client.post(f"{API}/requests/", {"beneficiary": quiet.pk, "entitlement": entitlement.pk}, format="json")
    assert response.status_code == 403 and "not allowed it" in response.json()["detail"]
    assert not AccessRequest.objects.exists()


def test_a_machine_named_by_an_eligibility_breaks_glass_with_its_token(owner, agent, admin_user):
    from jit.services.break_glass import eligibility_create

    entitlement = EntitlementFactory(break_glass_eligible=True, risk_tier="high")
    eligibility = eligibility_create(
        actor=admin_user,
        entitlement=entitlement,
        identity=agent,
        max_duration=timedelta(minutes=30),
        expires_at=timezone.now() + timedelta(days=30),
    )
    client = bearer(issue(owner.user, agent, scopes=["break_glass:read", "break_glass:write"]).secret)
    assert [e["id"] for e in client.get(f"{API}/break-glass/eligibilities/").json()] == [eligibility.pk]
    response = client.post(
        f"{API}/break-glass/activations/",
        {"eligibility": eligibility.pk, "incident_reference": "INC-7", "reason": "auto-remediation"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    from jit.models import BreakGlassActivation

    activation = BreakGlassActivation.objects.get(identity=agent)
    assert activation.step_up == "api_token" and activation.ends_at - activation.activated_at <= timedelta(minutes=30)
    without_scope = bearer(issue(owner.user, agent, scopes=["break_glass:read"]).secret)
    assert without_scope.post(f"{API}/break-glass/activations/", {}, format="json").status_code == 403
