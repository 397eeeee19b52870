"""Delegations and verified delegation chains (issue 14, item 5).

A person (or a machine) records that a machine may ask for access on their behalf; an agent names
the chain of delegations it acts under; every hop is checked, and a chain never obtains what its
initiator could not. Ref: #14.
"""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from audit.services import Actor
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import Identity
from governance.services.credentials import api_token_create
from jit.choices import RequestStatus
from jit.models import AccessRequest, Delegation
from jit.policies import conflict_of_interest
from jit.services.delegations import delegation_create, delegation_revoke
from jit.services.requests import access_request_submit
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SodRuleFactory,
    with_role,
)

pytestmark = pytest.mark.django_db
API = "/api/v1"
AGENT_SCOPES = ["requests:read", "requests:write", "delegations:read", "delegations:write"]


@pytest.fixture
def olu(db):
    """Owns the agents."""
    return with_role(PersonFactory(name="Olu Owner", user__username="olu"), "owner")


@pytest.fixture
def orchestrator(olu):
    return MachineFactory(name="orchestrator-7", kind="ai_agent", owner=olu, may_self_request=True)


@pytest.fixture
def worker(olu):
    return MachineFactory(name="worker-3", kind="ai_agent", owner=olu, may_self_request=True)


def delegate(delegator, to, *, actor=None, days=7, **kwargs) -> Delegation:
    kwargs.setdefault("purpose", "Nightly reconciliation")
    return delegation_create(
        actor=actor,
        delegator_id=delegator.pk,
        delegate_id=to.pk,
        expires_at=kwargs.pop("expires_at", timezone.now() + timedelta(days=days)),
        **kwargs,
    )


@pytest.fixture
def chain(alice, orchestrator, worker):
    """Alice lets orchestrator-7 act for her (and pass it on); orchestrator-7 lets worker-3."""
    first = delegate(alice, orchestrator, actor=alice.user, may_redelegate=True)
    second = delegate(orchestrator, worker, actor=Actor(identity=orchestrator))
    return [first.pk, second.pk]


def ask(caller, entitlement, delegation_chain, *, beneficiary=None, duration=timedelta(hours=1), **kwargs):
    kwargs.setdefault("intent", "Reconcile the orders table")
    return access_request_submit(
        actor=Actor(identity=caller),
        beneficiary_id=(beneficiary or caller).pk,
        entitlement_id=entitlement.pk,
        duration=duration,
        delegation_chain=delegation_chain,
        **kwargs,
    )


def refused(code: str, *args, **kwargs) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        ask(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    assert caught.value.field_errors.get("delegation_chain"), caught.value.field_errors
    assert not AccessRequest.objects.exists()
    return caught.value


def bearer(identity, scopes=AGENT_SCOPES) -> APIClient:
    issued = api_token_create(actor=None, identity_id=identity.pk, name="agent", scopes=scopes)
    client = APIClient(REMOTE_ADDR="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client


#
# Creating and revoking
#
def test_a_person_delegates_to_an_agent_and_the_trail_names_both_ends_scope_and_expiry(
    alice, orchestrator, entitlement
):
    # when
    made = delegate(alice, orchestrator, actor=alice.user, entitlement_ids=[entitlement.pk], max_risk_tier="high")
    # then
    assert made.created_by == alice.user and list(made.entitlements.all()) == [entitlement]
    event = AuditEvent.objects.get(action="delegation.created")
    assert event.data["delegator"] == {"id": alice.pk, "name": "Alice", "kind": "human"}
    assert event.data["delegate"] == {"id": orchestrator.pk, "name": "orchestrator-7", "kind": "ai_agent"}
    assert event.data["entitlements"] == [entitlement.pk] and event.data["max_risk_tier"] == "high"
    assert event.data["expires_at"] and event.target_id == str(made.pk)


def test_a_machine_delegates_with_its_token_and_its_owner_for_it(olu, orchestrator, worker):
    by_itself = delegate(orchestrator, worker, actor=Actor(identity=orchestrator))
    by_owner = delegate(orchestrator, worker, actor=olu.user)
    assert by_itself.created_by_identity == orchestrator and by_owner.created_by == olu.user


@pytest.mark.parametrize(
    "who",
    ["stranger", "other machine", "auditor of themself"],
)
def test_nobody_else_delegates_for_someone(alice, orchestrator, worker, who):
    if who == "stranger":
        actor, delegator = PersonFactory().user, alice
    elif who == "other machine":
        actor, delegator = Actor(identity=worker), orchestrator
    else:
        auditor = PersonFactory(user__roles=["auditor"])
        actor, delegator = auditor.user, auditor
    with pytest.raises(PermissionRefused):
        delegate(delegator, worker if delegator != worker else orchestrator, actor=actor)
    assert not Delegation.objects.exists()


@pytest.mark.parametrize(
    ("make_delegate", "field"),
    [
        (lambda: PersonFactory(), "delegate"),
        (lambda: MachineFactory(kind="api_key"), "delegate"),
        (lambda: MachineFactory(kind="ai_agent", status="suspended"), "delegate"),
    ],
    ids=["a person", "an API key", "a suspended agent"],
)
def test_the_delegate_is_an_active_service_account_workload_or_agent(alice, make_delegate, field):
    with pytest.raises(ValidationFailed) as caught:
        delegate(alice, make_delegate(), actor=alice.user)
    assert field in caught.value.field_errors


def test_a_delegation_ends_in_the_future_and_within_the_maximum(alice, orchestrator, settings):
    settings.DELEGATION_MAX_DAYS = 30
    for days, message in [(-1, "future"), (31, "at most 30 days")]:
        with pytest.raises(ValidationFailed, match=message) as caught:
            delegate(alice, orchestrator, actor=alice.user, days=days)
        assert "expires_at" in caught.value.field_errors
    assert delegate(alice, orchestrator, actor=alice.user, days=30)


def test_revoked_by_the_delegator_declined_by_the_delegate_and_refused_to_others(alice, orchestrator, make_user):
    given = delegate(alice, orchestrator, actor=alice.user)
    other = delegate(alice, orchestrator, actor=alice.user)
    with pytest.raises(PermissionRefused):
        delegation_revoke(actor=PersonFactory().user, delegation_id=given.pk)
    with pytest.raises(PermissionRefused):
        delegation_revoke(actor=Actor(identity=MachineFactory(kind="ai_agent")), delegation_id=given.pk)
    # when
    delegation_revoke(actor=alice.user, delegation_id=given.pk, reason="task done")
    delegation_revoke(actor=Actor(identity=orchestrator), delegation_id=other.pk)
    # then
    revoked, declined = AuditEvent.objects.filter(action="delegation.revoked").order_by("seq")
    assert revoked.data["declined"] is False and revoked.data["reason"] == "task done"
    assert declined.data["declined"] is True and declined.data["delegate"]["name"] == "orchestrator-7"
    with pytest.raises(InvalidTransition, match="already revoked"):
        delegation_revoke(actor=make_user("root", roles=("admin",)), delegation_id=given.pk)


def test_an_admin_revokes_anyones(alice, orchestrator, admin_user):
    given = delegate(alice, orchestrator, actor=alice.user)
    assert delegation_revoke(actor=admin_user, delegation_id=given.pk).revoked_at is not None


#
# The chain at submission
#
def test_a_good_two_hop_chain_is_verified_stored_and_audited(alice, worker, entitlement, chain):
    # when
    made = ask(worker, entitlement, chain, intent_task="T-123", intent_action="read", intent_resource="db/orders")
    # then
    assert made.status == RequestStatus.PENDING and made.requester_identity == worker
    hops = made.delegation_chain
    assert [hop["delegation"] for hop in hops] == chain
    assert [(hop["from"]["name"], hop["to"]["name"]) for hop in hops] == [
        ("Alice", "orchestrator-7"),
        ("orchestrator-7", "worker-3"),
    ]
    assert all(hop["expires_at"] for hop in hops)
    event = AuditEvent.objects.get(action="request.submitted", target_id=str(made.pk))
    assert event.data["delegation_chain"] == hops
    assert (event.data["intent_task"], event.data["intent_action"], event.data["intent_resource"]) == (
        "T-123",
        "read",
        "db/orders",
    )


def test_through_a_chain_the_beneficiary_may_be_anyone_in_it_and_nobody_else(
    alice, orchestrator, worker, entitlement, chain
):
    for_alice = ask(worker, entitlement, chain, beneficiary=alice)
    for_orchestrator = ask(worker, entitlement, chain, beneficiary=orchestrator)
    assert for_alice.beneficiary == alice and for_orchestrator.beneficiary == orchestrator
    with pytest.raises(ValidationFailed) as caught:
        ask(worker, entitlement, chain, beneficiary=PersonFactory())
    assert "beneficiary" in caught.value.field_errors
    with pytest.raises(ValidationFailed):
        ask(worker, entitlement, [], beneficiary=alice)  # without the chain, Alice is none of its business


def test_nobody_in_the_chain_is_asked_to_approve(alice, worker, chain):
    # given: Alice owns the entitlement her worker asks for, on her behalf; an admin can stand in
    entitlement = EntitlementFactory(owner=alice, risk_tier="medium")
    make_admin = PersonFactory(user__roles=["admin"])
    # when
    made = ask(worker, entitlement, chain)
    # then
    eligible = {u.pk for stage in made.stages.all() for u in stage.eligible.all()}
    assert alice.user_id not in eligible and make_admin.user_id in eligible
    assert conflict_of_interest(alice.user, made) == (
        "You cannot decide on a request made on your behalf (you are in its delegation chain)."
    )


def test_a_chain_deeper_than_the_limit_is_refused(worker, entitlement, chain, settings):
    settings.DELEGATION_MAX_DEPTH = 1
    error = refused("delegation_too_deep", worker, entitlement, chain)
    assert "at most 1 hops; this one has 2" in error.message


def test_an_expired_delegation_is_refused_naming_the_hop(alice, orchestrator, worker, entitlement):
    first = delegate(
        alice, orchestrator, actor=alice.user, may_redelegate=True, expires_at=timezone.now() + timedelta(hours=3)
    )
    second = delegate(orchestrator, worker, actor=None)
    with time_machine.travel(timezone.now() + timedelta(hours=4), tick=False):
        error = refused("delegation_expired", worker, entitlement, [first.pk, second.pk])
    assert error.message.startswith("The delegation from Alice to orchestrator-7 expired at ")


def test_a_revoked_delegation_is_refused(alice, worker, entitlement, chain):
    delegation_revoke(actor=alice.user, delegation_id=chain[0])
    error = refused("delegation_revoked", worker, entitlement, chain)
    assert "The delegation from Alice to orchestrator-7 was revoked at" in error.message


def test_a_broken_link_is_refused_without_describing_what_is_not_the_callers(
    alice, orchestrator, worker, entitlement, chain
):
    bob = PersonFactory(name="Bob")
    bobs = delegate(bob, MachineFactory(name="bobs-agent", kind="ai_agent"), actor=bob.user)
    error = refused("delegation_broken", worker, entitlement, [bobs.pk, chain[1]])
    assert f"Delegation #{bobs.pk} (hop 1) is not to orchestrator-7" in error.message
    assert "Bob" not in error.message and "bobs-agent" not in error.message


def test_the_caller_must_be_the_last_delegate(orchestrator, entitlement, chain):
    error = refused("delegation_broken", orchestrator, entitlement, chain)
    assert "is not to you (orchestrator-7)" in error.message


def test_an_unknown_delegation_is_refused(worker, entitlement, chain):
    refused("delegation_unknown", worker, entitlement, [chain[0] + chain[1] + 1000, chain[1]])


def test_an_entitlement_outside_a_hops_scope_is_refused(alice, orchestrator, worker, entitlement):
    elsewhere = EntitlementFactory(name="elsewhere")
    first = delegate(alice, orchestrator, actor=alice.user, may_redelegate=True, entitlement_ids=[elsewhere.pk])
    second = delegate(orchestrator, worker, actor=None)
    error = refused("delegation_out_of_scope", worker, entitlement, [first.pk, second.pk])
    assert error.message == "The delegation from Alice to orchestrator-7 does not cover db-write."


def test_a_riskier_entitlement_than_a_hop_allows_is_refused(alice, orchestrator, worker):
    risky = EntitlementFactory(name="prod-admin", risk_tier="high")
    first = delegate(alice, orchestrator, actor=alice.user, may_redelegate=True, max_risk_tier="high")
    second = delegate(orchestrator, worker, actor=None, max_risk_tier="low")
    error = refused("delegation_out_of_scope", worker, risky, [first.pk, second.pk])
    assert "from orchestrator-7 to worker-3 covers up to low risk; prod-admin is high risk" in error.message


@pytest.mark.parametrize("status", ["suspended", "offboarded"])
def test_a_suspended_or_offboarded_initiator_is_refused(alice, worker, entitlement, chain, status):
    Identity.objects.filter(pk=alice.pk).update(status=status)
    error = refused("initiator_inactive", worker, entitlement, chain)
    assert error.message == f"The initiator Alice is {status}: nothing is asked on their behalf."


def test_a_hop_that_may_not_delegate_further_is_refused(alice, orchestrator, worker, entitlement):
    first = delegate(alice, orchestrator, actor=alice.user)  # may_redelegate defaults to False
    second = delegate(orchestrator, worker, actor=None)
    error = refused("redelegation_not_allowed", worker, entitlement, [first.pk, second.pk])
    assert "does not let orchestrator-7 delegate further (to worker-3)" in error.message


def test_the_chain_never_obtains_what_a_separation_of_duties_rule_keeps_from_the_initiator(
    alice, worker, entitlement, chain
):
    # given: Alice holds what, with db-write, a rule blocks
    held = EntitlementFactory(name="db-approve")
    GrantFactory(identity=alice, entitlement=held)
    SodRuleFactory(name="Write and approve", entitlements=[held, entitlement], action="block")
    # then: her agents cannot get db-write for themselves either
    error = refused("initiator_not_allowed", worker, entitlement, chain)
    assert error.message.startswith(
        "The initiator Alice could not obtain this: Separation of duties: Write and approve"
    )


def test_the_chain_never_obtains_anything_for_an_initiator_who_may_not_request(alice, worker, entitlement, chain):
    alice.user.groups.clear()
    error = refused("initiator_not_allowed", worker, entitlement, chain)
    assert error.message == "The initiator Alice could not obtain this: they do not hold the requester role."


def test_the_initiators_kind_does_not_matter_only_what_they_could_hold(alice, worker, chain):
    # An entitlement for machines only: Alice could not hold it, but her worker may, on her word.
    machines_only = EntitlementFactory(name="queue-reader", allowed_identity_kinds=["ai_agent"])
    assert ask(worker, machines_only, chain).status == RequestStatus.PENDING


def test_the_access_may_not_outrun_the_chain(alice, orchestrator, worker, entitlement):
    first = delegate(alice, orchestrator, actor=alice.user, may_redelegate=True)
    second = delegate(orchestrator, worker, actor=None, expires_at=timezone.now() + timedelta(minutes=90))
    error = refused("delegation_expires_first", worker, entitlement, [first.pk, second.pk], duration=timedelta(hours=2))
    assert "ask for at most 1 hour" in error.message and "duration" in error.field_errors
    assert ask(worker, entitlement, [first.pk, second.pk], duration=timedelta(hours=1))


def test_a_person_declares_no_chain(alice, entitlement, chain):
    with pytest.raises(ValidationFailed) as caught:
        access_request_submit(
            actor=alice.user,
            beneficiary_id=alice.pk,
            entitlement_id=entitlement.pk,
            duration=timedelta(hours=1),
            justification="x",
            delegation_chain=chain,
        )
    assert caught.value.code == "delegation_not_for_people"


def test_revoking_a_delegation_closes_the_requests_still_in_flight_through_it(alice, worker, entitlement, chain):
    # given: a request through the chain waits for its approvers, and one without a chain
    through = ask(worker, entitlement, chain)
    alone = ask(worker, EntitlementFactory(name="other"), [])
    # when: Alice takes her consent back
    delegation_revoke(actor=alice.user, delegation_id=chain[0], reason="task cancelled")
    # then
    through.refresh_from_db()
    alone.refresh_from_db()
    assert through.status == RequestStatus.CANCELLED and "was revoked" in through.decision_note
    assert alone.status == RequestStatus.PENDING
    closed = AuditEvent.objects.get(action="request.closed_delegation_revoked")
    assert closed.target_id == str(through.pk) and closed.data == {"delegation": chain[0]}
    assert AuditEvent.objects.get(action="delegation.revoked").data["closed_requests"] == [through.pk]


def test_requests_without_a_chain_are_unchanged(worker, entitlement):
    made = ask(worker, entitlement, [])
    assert made.delegation_chain == []
    assert AuditEvent.objects.get(action="request.submitted").data["delegation_chain"] == []


#
# The API
#
def test_the_api_refuses_a_chain_with_its_code_and_the_hop(alice, worker, entitlement, chain):
    delegation_revoke(actor=alice.user, delegation_id=chain[0])
    response = bearer(worker).post(
        f"{API}/requests/",
        {"beneficiary": worker.pk, "entitlement": entitlement.pk, "intent": "x", "delegation_chain": chain},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "delegation_revoked" and "Alice to orchestrator-7" in body["detail"]
    assert body["errors"]["delegation_chain"] == [body["detail"]]


def test_an_agent_delegates_lists_and_declines_through_the_api(alice, orchestrator, worker, entitlement, chain):
    # given: an orchestrator hands a task to a second worker
    second_worker = MachineFactory(name="worker-4", kind="ai_agent")
    client = bearer(orchestrator)
    created = client.post(
        f"{API}/delegations/",
        {
            "delegate": second_worker.pk,
            "entitlements": [entitlement.pk],
            "purpose": "Reconcile",
            "expires_at": (timezone.now() + timedelta(days=1)).isoformat(),
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["delegator"] == orchestrator.pk and body["delegate_name"] == "worker-4" and body["status"] == "active"
    # the orchestrator sees what it gave and received; the new worker sees only its own
    assert {d["id"] for d in client.get(f"{API}/delegations/").json()["results"]} == {*chain, body["id"]}
    assert [d["id"] for d in bearer(second_worker).get(f"{API}/delegations/").json()["results"]] == [body["id"]]
    # when: the worker declines it
    declined = bearer(second_worker).post(f"{API}/delegations/{body['id']}/revoke/", {}, format="json")
    assert declined.status_code == 200 and declined.json()["status"] == "revoked"
    again = bearer(second_worker).post(f"{API}/delegations/{body['id']}/revoke/", {}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "conflict"


def test_a_token_needs_the_delegations_scope(worker):
    response = bearer(worker, scopes=["requests:read"]).get(f"{API}/delegations/")
    assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"


def test_the_api_shows_and_revokes_only_ones_own_delegations(alice, orchestrator, worker, chain):
    # given: Bob's delegation, none of Alice's business
    bob = PersonFactory(name="Bob")
    bobs = delegate(bob, worker, actor=bob.user)
    client = APIClient()
    client.force_authenticate(alice.user)
    # then
    assert {d["id"] for d in client.get(f"{API}/delegations/").json()["results"]} == {chain[0]}
    assert client.post(f"{API}/delegations/{bobs.pk}/revoke/", {}, format="json").status_code == 404
    assert bearer(orchestrator).post(f"{API}/delegations/{bobs.pk}/revoke/", {}, format="json").status_code == 404
    refused_create = client.post(
        f"{API}/delegations/",
        {"delegator": bob.pk, "delegate": worker.pk, "purpose": "x", "expires_at": timezone.now() + timedelta(days=1)},
        format="json",
    )
    assert refused_create.status_code == 403 and refused_create.json()["code"] == "permission_denied"
    assert Delegation.objects.get(pk=bobs.pk).revoked_at is None


def test_the_api_list_runs_as_many_queries_for_one_delegation_as_for_many(alice, orchestrator, count_queries):
    client = APIClient()
    client.force_authenticate(alice.user)
    entitlements = [EntitlementFactory() for _ in range(3)]
    delegate(alice, orchestrator, actor=alice.user, entitlement_ids=[entitlements[0].pk])
    one = count_queries(lambda: client.get(f"{API}/delegations/"))
    for n in range(15):
        delegate(
            alice,
            MachineFactory(kind="workload"),
            actor=alice.user,
            entitlement_ids=[e.pk for e in entitlements[: n % 3]],
        )
    many = count_queries(lambda: client.get(f"{API}/delegations/"))
    assert one == many


#
# The page
#
def test_the_page_lists_mine_with_status_and_time_left_and_an_empty_state(client, alice, orchestrator, worker):
    client.force_login(alice.user)
    empty = client.get(reverse("jit:delegation_list"))
    assert empty.status_code == 200 and b"No delegations yet" in empty.content
    active = delegate(alice, orchestrator, actor=alice.user)
    revoked = delegate(alice, worker, actor=alice.user)
    delegation_revoke(actor=alice.user, delegation_id=revoked.pk)
    page = client.get(reverse("jit:delegation_list")).content.decode()
    assert f'id="delegation-{active.pk}"' in page and "left</span>" in page and ">Active<" in page
    assert f'id="delegation-{revoked.pk}"' in page and ">Revoked<" in page
    assert reverse("jit:delegation_revoke", args=[active.pk]) in page
    assert reverse("jit:delegation_revoke", args=[revoked.pk]) not in page


def test_delegating_from_the_page_says_so_and_errors_sit_beside_their_fields(client, alice, orchestrator, entitlement):
    client.force_login(alice.user)
    expires = (timezone.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    form = {
        "delegator": alice.pk,
        "delegate": orchestrator.pk,
        "entitlements": [entitlement.pk],
        "max_risk_tier": "medium",
        "purpose": "Nightly reconciliation",
        "expires_at": expires,
    }
    response = client.post(reverse("jit:delegation_create"), form, follow=True)
    assert b"orchestrator-7 may now act for Alice" in response.content
    made = Delegation.objects.get()
    assert list(made.entitlements.all()) == [entitlement] and made.created_by == alice.user
    too_long = (timezone.now() + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M")
    bad = client.post(reverse("jit:delegation_create"), {**form, "expires_at": too_long})
    assert bad.status_code == 400 and 'id="id_expires_at_error"' in bad.content.decode()
    assert Delegation.objects.count() == 1


def test_revoking_from_the_page_and_nobody_elses(client, alice, orchestrator, worker):
    mine = delegate(alice, orchestrator, actor=alice.user)
    bob = PersonFactory(name="Bob")
    bobs = delegate(bob, worker, actor=bob.user)
    client.force_login(alice.user)
    page = client.get(reverse("jit:delegation_list")).content.decode()
    assert "Bob" not in page
    assert client.post(reverse("jit:delegation_revoke", args=[bobs.pk])).status_code == 404
    response = client.post(reverse("jit:delegation_revoke", args=[mine.pk]), follow=True)
    assert b"revoked: no request can name it any more" in response.content
    mine.refresh_from_db()
    bobs.refresh_from_db()
    assert mine.revoked_at is not None and bobs.revoked_at is None
    # the owner of the delegate sees it and may decline it for the machine
    client.force_login(worker.owner.user)
    assert f'id="delegation-{bobs.pk}"' in client.get(reverse("jit:delegation_list")).content.decode()


def test_the_page_runs_as_many_queries_for_one_delegation_as_for_many(client, alice, orchestrator, count_queries):
    client.force_login(alice.user)
    entitlements = [EntitlementFactory() for _ in range(3)]
    delegate(alice, orchestrator, actor=alice.user, entitlement_ids=[entitlements[0].pk])
    url = reverse("jit:delegation_list")
    one = count_queries(lambda: client.get(url))
    for n in range(15):
        made = delegate(
            alice,
            MachineFactory(kind="workload"),
            actor=alice.user,
            entitlement_ids=[e.pk for e in entitlements[: n % 3]],
        )
        if n % 4 == 0:
            delegation_revoke(actor=alice.user, delegation_id=made.pk)
    many = count_queries(lambda: client.get(url))
    assert one == many


#
# Checked again when the access starts
#
@pytest.fixture
def one_stage():
    owner = with_role(PersonFactory(name="Eno Owner", user__username="eno"), "approver")
    return EntitlementFactory(name="orders-read", owner=owner, system__owner=owner)


def approve(request):
    from jit.services.approvals import access_request_decide

    access_request_decide(request_id=request.pk, approver=request.entitlement.owner.user, decision="approve")
    request.refresh_from_db()
    return request


def test_an_initiator_suspended_while_people_decide_ends_the_request_instead_of_granting(
    alice, worker, chain, one_stage
):
    from governance.services.identities import identity_suspend

    request = ask(worker, one_stage, chain)
    identity_suspend(actor=None, identity_id=alice.pk, reason="Left the project")
    request = approve(request)
    assert request.status == RequestStatus.FAILED and request.grant is None
    assert "The initiator Alice is suspended" in request.decision_note


def test_a_delegation_that_expired_while_people_decided_ends_the_request(alice, orchestrator, worker, one_stage):
    first = delegate(alice, orchestrator, actor=alice.user, may_redelegate=True, days=2)
    second = delegate(orchestrator, worker, actor=Actor(identity=orchestrator))
    request = ask(worker, one_stage, [first.pk, second.pk])
    with time_machine.travel(timezone.now() + timedelta(days=3)):
        request = approve(request)
    assert request.status == RequestStatus.FAILED and "expired" in request.decision_note


def test_the_access_may_not_outrun_the_chain_from_when_it_starts(alice, orchestrator, worker, one_stage):
    first = delegate(alice, orchestrator, actor=alice.user, may_redelegate=True, days=1)
    second = delegate(orchestrator, worker, actor=Actor(identity=orchestrator))
    request = ask(worker, one_stage, [first.pk, second.pk], duration=timedelta(hours=8))
    with time_machine.travel(timezone.now() + timedelta(hours=20)):
        request = approve(request)
    assert request.status == RequestStatus.FAILED and "ask for at most" in request.decision_note


def test_a_chain_still_good_when_approved_grants_the_access(worker, chain, one_stage):
    request = approve(ask(worker, one_stage, chain))
    assert request.status == RequestStatus.APPROVED and request.grant is not None


def test_offboarding_ends_the_delegations_given_and_received_and_closes_requests_through_them(
    alice, orchestrator, worker, chain, one_stage
):
    from governance.services.identities import identity_offboard

    request = ask(worker, one_stage, chain)
    identity_offboard(identity_id=orchestrator.pk, actor=None, reason="Retired")
    assert not Delegation.objects.filter(revoked_at__isnull=True).exists()
    request.refresh_from_db()
    assert request.status == RequestStatus.CANCELLED and "was revoked" in request.decision_note
    reasons = {e.data["reason"] for e in AuditEvent.objects.filter(action="delegation.revoked")}
    assert reasons == {"orchestrator-7 was offboarded"}
