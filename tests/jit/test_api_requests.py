from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from audit.models import AuditEvent
from jit.choices import RequestStatus
from jit.models import AccessRequest
from tests.factories.governance import PersonFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/requests/"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_requester_submits_and_sees_the_policy_decision(alice, entitlement):
    response = client_for(alice.user).post(
        URL,
        {"beneficiary": alice.pk, "entitlement": entitlement.pk, "duration_seconds": 3600, "justification": "deploy"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending" and [s["approver_source"] for s in body["stages"]] == [
        "entitlement_owner",
        "system_owner",
    ]
    assert AuditEvent.objects.get(action="request.submitted").channel == "api"


def test_over_maximum_is_400_with_the_field_error_and_writes_nothing(alice, entitlement):
    response = client_for(alice.user).post(
        URL,
        {"beneficiary": alice.pk, "entitlement": entitlement.pk, "duration_seconds": 30 * 86400, "justification": "x"},
        format="json",
    )
    assert response.status_code == 400
    assert "maximum duration" in str(response.json())
    assert not AccessRequest.objects.exists()


def test_a_stranger_cannot_see_or_act_on_a_request(submit, entitlement):
    request = submit(entitlement)
    stranger = client_for(PersonFactory().user)
    assert stranger.get(f"{URL}{request.pk}/").status_code == 404
    assert stranger.post(f"{URL}{request.pk}/approve/", {}, format="json").status_code == 404
    assert stranger.post(f"{URL}{request.pk}/cancel/", {}, format="json").status_code == 404
    assert stranger.get(URL).json()["results"] == []


def test_requester_cannot_approve_own_request(submit, entitlement, alice):
    request = submit(entitlement)
    response = client_for(alice.user).post(f"{URL}{request.pk}/approve/", {}, format="json")
    assert response.status_code == 403
    assert not request.approvals.exists()


def test_approvers_decide_and_a_replay_is_a_conflict(submit, entitlement, ent_owner, sys_owner):
    request = submit(entitlement)
    assert client_for(ent_owner).post(f"{URL}{request.pk}/approve/", {"stage": 1}, format="json").status_code == 200
    replay = client_for(ent_owner).post(f"{URL}{request.pk}/approve/", {"stage": 1}, format="json")
    assert replay.status_code == 409
    response = client_for(sys_owner).post(f"{URL}{request.pk}/approve/", {"stage": 2}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "approved"
    denied_late = client_for(sys_owner).post(f"{URL}{request.pk}/deny/", {"comment": "no"}, format="json")
    assert denied_late.status_code == 409


def test_cancel_then_approve_is_a_conflict(submit, entitlement, alice, ent_owner):
    request = submit(entitlement)
    assert client_for(alice.user).post(f"{URL}{request.pk}/cancel/", {}, format="json").status_code == 200
    assert client_for(ent_owner).post(f"{URL}{request.pk}/approve/", {}, format="json").status_code == 409
    request.refresh_from_db()
    assert request.status == RequestStatus.CANCELLED


def test_list_query_count_is_constant(alice, entitlement, submit):
    from tests.factories.governance import EntitlementFactory

    client = client_for(alice.user)
    submit(entitlement)
    client.get(URL)  # warm: the user's roles are cached on the user object after the first request
    with CaptureQueriesContext(connection) as one:
        assert client.get(URL).status_code == 200
    for _ in range(15):
        submit(
            EntitlementFactory(approval_stages=[{"approver": "entitlement_owner", "quorum": 1}]),
            duration=timedelta(hours=1),
        )
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(URL).json()["results"]) == 16
    assert len(many.captured_queries) == len(one.captured_queries)


def test_asking_for_someone_elses_identity_says_nothing_about_it(alice, entitlement):
    from tests.factories.governance import GrantFactory, MachineFactory

    hidden = MachineFactory(name="hidden-bot")
    GrantFactory(identity=hidden, entitlement=entitlement)
    answers = [
        client_for(alice.user).post(
            URL, {"beneficiary": beneficiary, "entitlement": entitlement.pk, "justification": "x"}, format="json"
        )
        for beneficiary in (hidden.pk, 999_999)
    ]
    assert [a.status_code for a in answers] == [400, 400]
    assert answers[0].json() == answers[1].json()  # someone else's identity and no identity look the same
    assert "hidden-bot" not in str(answers[0].json()) and not AccessRequest.objects.exists()


def test_renewing_a_grant_that_is_not_yours_or_does_not_exist_is_the_same_400(alice, entitlement):
    from tests.factories.governance import GrantFactory

    other = GrantFactory(entitlement=entitlement, kind="jit")
    body = {"beneficiary": alice.pk, "entitlement": entitlement.pk, "justification": "x"}
    answers = [
        client_for(alice.user).post(URL, {**body, "renewal_of": grant}, format="json") for grant in (other.pk, 999_999)
    ]
    assert [a.status_code for a in answers] == [400, 400]
    assert answers[0].json() == answers[1].json()


def test_a_person_cannot_claim_a_delegation_chain(alice, entitlement):
    # Ref: #14: a chain is delegation ids, and only a machine acts for someone
    body = {"beneficiary": alice.pk, "entitlement": entitlement.pk, "duration_seconds": 3600, "justification": "x"}
    response = client_for(alice.user).post(URL, {**body, "delegation_chain": [1]}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "delegation_not_for_people" and set(response.json()["errors"]) == {
        "delegation_chain"
    }
    free_text = client_for(alice.user).post(URL, {**body, "delegation_chain": ["ceo"]}, format="json")
    assert free_text.status_code == 400 and set(free_text.json()["errors"]) == {"delegation_chain"}
    assert not AccessRequest.objects.exists() and not AuditEvent.objects.filter(action="request.submitted").exists()


def test_a_person_cannot_let_intent_stand_for_a_justification(alice, entitlement):
    response = client_for(alice.user).post(
        URL,
        {"beneficiary": alice.pk, "entitlement": entitlement.pk, "duration_seconds": 3600, "intent": "rotate keys"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"justification"}
    assert not AccessRequest.objects.exists() and not AuditEvent.objects.filter(action="request.submitted").exists()


def test_the_list_shows_each_stages_approvals_reading_only_the_names_it_shows(submit, entitlement, ent_owner, alice):
    # given a request whose first stage the entitlement owner approved
    request = submit(entitlement)
    client_for(ent_owner).post(f"{URL}{request.pk}/approve/", {"stage": 1, "comment": "fine"}, format="json")
    # when its requester lists their requests
    with CaptureQueriesContext(connection) as ctx:
        (listed,) = client_for(alice.user).get(URL).json()["results"]
    # then each stage carries its approvals, with the approver's login
    first, second = listed["stages"]
    assert [(a["approver"], a["decision"], a["comment"]) for a in first["approvals"]] == [
        ("entowner", "approve", "fine")
    ]
    assert second["approvals"] == [] and listed["requester"] == "alice" and listed["entitlement_name"] == "db-write"
    # and the people and entitlement it names are read for their names alone (no password hash, no settings)
    sql = "\n".join(query["sql"] for query in ctx.captured_queries if "jit_" in query["sql"])
    assert '"password"' not in sql and '"approval_stages"' not in sql, sql
