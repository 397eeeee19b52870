"""The request API's list pages, written from values, say what `AccessRequestSerializer` says of each request."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from jit.api.request_rows import request_rows, request_values
from jit.api.serializers import AccessRequestSerializer
from jit.api.views import visible_requests
from jit.models import AccessRequest
from jit.services.approvals import access_request_decide
from jit.services.requests import access_request_cancel
from tests.factories.governance import EntitlementFactory, MachineFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/requests/"


@pytest.fixture
def requests_of_every_shape(submit, entitlement, alice, ent_owner, sys_owner):
    """Pending, approved through both stages, denied with a comment, cancelled; one made by a machine through
    the API, under a delegation, as an extension with a ticket, an intent and a start in the future."""
    # five entitlements with the same two stages and owners: one request each may be in flight
    others = [
        EntitlementFactory(
            name=f"db-write-{n}",
            risk_tier=entitlement.risk_tier,
            approval_stages=entitlement.approval_stages,
            system=entitlement.system,
            owner=entitlement.owner,
        )
        for n in range(4)
    ]
    pending, approved, denied, cancelled, machine_made = (submit(e) for e in [entitlement, *others])
    access_request_decide(request_id=approved.pk, approver=ent_owner, decision="approve", comment="ok <b>")
    access_request_decide(request_id=approved.pk, approver=sys_owner, decision="approve", comment="")
    access_request_decide(request_id=denied.pk, approver=ent_owner, decision="deny", comment="not now")
    access_request_cancel(request_id=cancelled.pk, actor=alice.user, reason="changed my mind")
    bot = MachineFactory(name="alice-bot", owner=alice)
    AccessRequest.objects.filter(pk=machine_made.pk).update(
        requester=None,
        requester_identity=bot,
        renewal_of=AccessRequest.objects.get(pk=approved.pk).grant,
        ticket="INC-7",
        intent="nightly <reconciliation>",
        intent_task="T-1",
        intent_action="read",
        intent_resource="db/orders",
        delegation_chain=[{"delegation": 3, "from": {"id": 1, "name": "Alice", "kind": "human"}, "expires_at": None}],
        start_at=timezone.now() + timedelta(hours=2, microseconds=1234),
        activation_deadline=timezone.now() + timedelta(days=1),
    )
    return [pending, approved, denied, cancelled, machine_made]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_the_rows_are_what_the_serializer_writes(requests_of_every_shape, alice, zone):
    keys = [r.pk for r in requests_of_every_shape]
    with timezone.override(zone):
        drawn = AccessRequestSerializer(
            visible_requests(alice.user).filter(pk__in=keys).order_by("-id"), many=True
        ).data
        written = request_rows(list(request_values(AccessRequest.objects.filter(pk__in=keys)).order_by("-id")))
    # the same JSON, byte for byte: every field, its order, times in the zone, stages and approvals in order
    assert json.dumps(written) == json.dumps(drawn)
    assert [len(row["stages"]) for row in written] == [2, 2, 2, 2, 2]
    assert written[3]["stages"][0]["approvals"][0]["comment"] == "ok <b>"


def test_the_list_answers_what_a_single_request_answers_and_reads_three_queries(requests_of_every_shape, alice):
    client = APIClient()
    client.force_authenticate(alice.user)
    with CaptureQueriesContext(connection) as ctx:
        listed = client.get(URL).json()["results"]
    # the requests, their stages, the stages' approvals (read before the next request resets the log)
    reads = [q["sql"] for q in ctx.captured_queries if '"jit_' in q["sql"].split("WHERE")[0]]
    assert len(reads) == 3, reads
    assert [row["id"] for row in listed] == sorted((r.pk for r in requests_of_every_shape), reverse=True)
    assert listed == [client.get(f"{URL}{row['id']}/").json() for row in listed]


def test_an_empty_page_reads_no_stages():
    assert request_rows([]) == []
