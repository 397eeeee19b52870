"""Approving for less than asked (a shorter time, a later start), deciding a selection at once, and
the card answering in place with the queue's empty state. Ref: #16 (approver, points 3 and 5)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent
from governance.errors import ValidationFailed
from jit.choices import RequestStatus
from jit.models import Approval
from jit.services.approvals import access_request_decide, access_requests_decide_many
from jit.services.requests import access_request_cancel
from tests.factories.governance import EntitlementFactory

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def events(request, action):
    return list(AuditEvent.objects.for_target(request).filter(action=action).order_by("seq"))


#
# Less than asked
#
def test_an_approval_for_a_shorter_time_is_kept_audited_with_both_values_and_granted(
    alice, entitlement, submit, ent_owner, sys_owner
):
    # given Alice asks for 4 hours
    access_request = submit(entitlement, duration=timedelta(hours=4))

    # when stage 1 approves 1 hour only, and stage 2 approves what is left
    access_request_decide(
        request_id=access_request.pk, approver=ent_owner, decision="approve", duration=timedelta(hours=1)
    )
    access_request_decide(request_id=access_request.pk, approver=sys_owner, decision="approve")

    # then the grant is for 1 hour, and the trail keeps what was asked and what was approved
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.APPROVED and access_request.duration == timedelta(hours=1)
    assert access_request.grant.approved_duration == timedelta(hours=1)
    stage_1 = events(access_request, AuditAction.REQUEST_STAGE_APPROVED)[0].data
    assert stage_1["before"]["duration_seconds"] == 4 * 3600 and stage_1["after"]["duration_seconds"] == 3600
    assert Approval.objects.get(approver=ent_owner).duration == timedelta(hours=1)
    assert Approval.objects.get(approver=sys_owner).duration is None  # approved as it stood


def test_a_later_start_is_kept_and_the_grant_waits_for_it(alice, entitlement, submit, ent_owner, sys_owner):
    # given
    access_request = submit(entitlement)
    later = timezone.now().replace(microsecond=0) + timedelta(days=2)

    # when the last stage approves from two days on
    access_request_decide(request_id=access_request.pk, approver=ent_owner, decision="approve")
    access_request_decide(request_id=access_request.pk, approver=sys_owner, decision="approve", start_at=later)

    # then nothing is granted yet; the access starts then
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.APPROVED and access_request.grant_id is None
    assert access_request.start_at == later
    data = events(access_request, AuditAction.REQUEST_STAGE_APPROVED)[-1].data
    assert data["before"]["start_at"] is None and data["after"]["start_at"].startswith(later.date().isoformat())


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"duration": timedelta(hours=3)}, "duration", "never lengthen"),
        ({"duration": timedelta(0)}, "duration", "positive"),
        ({"start_at": timezone.now() - timedelta(hours=1)}, "start_at", "in the past"),
        ({"start_at": timezone.now() + timedelta(days=60)}, "start_at", "days ahead"),
    ],
)
def test_an_approval_for_longer_or_earlier_than_asked_is_refused_and_changes_nothing(
    alice, entitlement, submit, ent_owner, change, field, words
):
    access_request = submit(entitlement, duration=timedelta(hours=2))
    before = AuditEvent.objects.count()

    with pytest.raises(ValidationFailed) as refused:
        access_request_decide(request_id=access_request.pk, approver=ent_owner, decision="approve", **change)

    assert words in refused.value.message and field in refused.value.field_errors
    access_request.refresh_from_db()
    assert access_request.duration == timedelta(hours=2) and access_request.start_at is None
    assert not Approval.objects.exists() and AuditEvent.objects.count() == before


def test_a_start_earlier_than_the_one_asked_is_refused(alice, entitlement, submit, ent_owner):
    asked = timezone.now() + timedelta(days=1)
    access_request = submit(entitlement, start_at=asked)
    with pytest.raises(ValidationFailed, match="Not earlier than asked"):
        access_request_decide(
            request_id=access_request.pk, approver=ent_owner, decision="approve", start_at=asked - timedelta(hours=2)
        )


def test_a_denial_with_a_duration_is_refused(alice, entitlement, submit, ent_owner):
    access_request = submit(entitlement)
    with pytest.raises(ValidationFailed, match="A denial grants nothing"):
        access_request_decide(
            request_id=access_request.pk, approver=ent_owner, decision="deny", comment="no", duration=timedelta(hours=1)
        )


def test_the_card_approves_for_less_and_shows_an_error_beside_the_field(client, alice, entitlement, submit, ent_owner):
    # given
    access_request = submit(entitlement, duration=timedelta(hours=2))
    client.force_login(ent_owner)
    url = reverse("jit:approval_decide", args=[access_request.pk])
    queue = client.get(reverse("jit:approval_queue")).content.decode()
    assert '<option value="60">1 hour</option>' in queue and '<option value="240">' not in queue

    # when a start in the past is posted from the card
    refused = client.post(
        url,
        {"decision": "approve", "stage_position": 1, "start_at": "2001-01-01T10:00", "time_zone": "Europe/Paris"},
        headers=HTMX,
    )
    # then the card comes back with the error beside the start, and nothing is decided
    assert refused.status_code == 400 and b'id="start-%d-error"' % access_request.pk in refused.content
    assert b"The start cannot be in the past." in refused.content and not Approval.objects.exists()

    # when one hour is approved, to start at 09:00 in Paris two days on
    day = (timezone.now() + timedelta(days=2)).date()
    done = client.post(
        url,
        {
            "decision": "approve",
            "stage_position": 1,
            "duration_minutes": 60,
            "start_at": f"{day.isoformat()}T09:00",
            "time_zone": "Europe/Paris",
        },
        headers=HTMX,
    )
    # then
    assert done.status_code == 200
    access_request.refresh_from_db()
    assert access_request.duration == timedelta(hours=1)
    assert access_request.start_at.astimezone(timezone.get_fixed_timezone(0)).hour in (7, 8)  # 09:00 Paris in UTC


def test_the_api_approves_for_less_and_refuses_more(alice, entitlement, submit, ent_owner):
    from rest_framework.test import APIClient

    access_request = submit(entitlement, duration=timedelta(hours=2))
    api = APIClient()
    api.force_authenticate(ent_owner)
    url = f"/api/v1/requests/{access_request.pk}/approve/"

    longer = api.post(url, {"stage": 1, "duration_seconds": 3 * 3600}, format="json")
    assert longer.status_code == 400 and "never lengthen" in str(longer.json())
    assert not Approval.objects.exists()

    shorter = api.post(url, {"stage": 1, "duration_seconds": 1800}, format="json")
    assert shorter.status_code == 200
    access_request.refresh_from_db()
    assert access_request.duration == timedelta(minutes=30)


#
# A selection
#
@pytest.fixture
def three(alice, entitlement, submit):
    others = [EntitlementFactory(owner=entitlement.owner, name=f"extra-{n}") for n in range(2)]
    return [submit(entitlement), *(submit(e) for e in others)]


def test_a_selection_is_approved_each_on_its_own_and_one_lost_race_does_not_hide_the_others(alice, three, ent_owner):
    # given one of the three was cancelled by Alice meanwhile
    access_request_cancel(request_id=three[1].pk, actor=alice.user)

    # when the owner approves all three at once
    results = access_requests_decide_many(
        approver=ent_owner, selection=[(r.pk, 1) for r in three], decision="approve", comment="batch"
    )

    # then two are approved (each with its own audit event), the cancelled one is reported
    assert [r.ok for r in results] == [True, False, True]
    assert "already cancelled" in results[1].error.message
    assert results[0].request.status == RequestStatus.PENDING  # waits for stage 2 of db-write
    assert results[2].request.status == RequestStatus.APPROVED
    assert Approval.objects.filter(approver=ent_owner).count() == 2


def test_denying_a_selection_without_a_comment_decides_nothing(alice, three, ent_owner):
    with pytest.raises(ValidationFailed, match="Say why"):
        access_requests_decide_many(approver=ent_owner, selection=[(r.pk, 1) for r in three], decision="deny")
    assert not Approval.objects.exists()


def test_the_page_denies_a_selection_and_reports_each_in_place(client, alice, three, ent_owner):
    client.force_login(ent_owner)
    url = reverse("jit:approval_decide_many")
    selection = [f"{r.pk}:1" for r in three]

    # a denial without a comment: the error beside the form, the selection still ticked, nothing decided
    refused = client.post(url, {"selected": selection, "decision": "deny"}, headers=HTMX)
    assert refused.status_code == 400 and b"Required when denying." in refused.content
    assert refused.content.count(b" checked>") == 3 and not Approval.objects.exists()

    # with a comment: each is denied and said so; the queue is empty without a reload
    done = client.post(url, {"selected": selection, "decision": "deny", "comment": "not this quarter"}, headers=HTMX)
    assert done.status_code == 200 and done.content.count(b"Denied Request #") == 3
    assert b"Nothing waits for you" in done.content
    assert all(r.status == RequestStatus.DENIED for r in [type(three[0]).objects.get(pk=x.pk) for x in three])


def test_a_selection_naming_someone_elses_request_decides_nothing(client, alice, three, entitlement, submit):
    stranger = EntitlementFactory()  # owned by someone else: not in this owner's queue, not visible
    hidden = submit(stranger)
    client.force_login(entitlement.owner.user)
    response = client.post(
        reverse("jit:approval_decide_many"),
        {"selected": [f"{three[0].pk}:1", f"{hidden.pk}:1"], "decision": "approve"},
        headers=HTMX,
    )
    assert response.status_code == 404 and not Approval.objects.exists()


def test_an_auditor_cannot_decide_a_selection(client, auditor, three):
    client.force_login(auditor)
    response = client.post(
        reverse("jit:approval_decide_many"), {"selected": [f"{three[0].pk}:1"], "decision": "approve"}
    )
    assert response.status_code == 403 and not Approval.objects.exists()


#
# In place
#
def test_deciding_the_last_card_brings_the_empty_state_without_a_reload(client, alice, entitlement, submit, ent_owner):
    # given two cards
    first, second = submit(entitlement), submit(EntitlementFactory(owner=entitlement.owner))
    client.force_login(ent_owner)

    # when the first is decided, the card is replaced in place and the queue is not empty yet
    one = client.post(
        reverse("jit:approval_decide", args=[first.pk]), {"decision": "approve", "stage_position": 1}, headers=HTMX
    )
    assert f'<div class="outcome" id="req-{first.pk}">'.encode() in one.content
    assert b'hx-swap-oob="true"' not in one.content

    # when the second (the last) is decided
    two = client.post(
        reverse("jit:approval_decide", args=[second.pk]),
        {"decision": "deny", "comment": "no", "stage_position": 1},
        headers=HTMX,
    )
    # then the answer also swaps in the empty state and removes the selection form
    assert b'<div id="queue-empty" hx-swap-oob="true">' in two.content and b"Nothing waits for you" in two.content
    assert b'<form id="bulk-form" hx-swap-oob="true" hidden>' in two.content
