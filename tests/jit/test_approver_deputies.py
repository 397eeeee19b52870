"""Out of office: an approver names a deputy for a period; requests route to the deputy meanwhile,
never one the deputy may not decide, and every step is audited. Ref: #16 (approver, point 3)."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent
from governance.errors import PermissionRefused, ValidationFailed
from jit.models import ApproverAbsence
from jit.services.approvals import access_request_decide
from jit.services.deputies import (
    approver_absence_end,
    approver_absence_set,
    approver_absences_hand_over_due,
)
from tests.factories.governance import PersonFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now


@pytest.fixture
def deputy(db):
    return PersonFactory(name="Dora Deputy", user__username="dora", user__roles=["requester", "approver"]).user


def away(approver, deputy, *, start=None, days=3, reason="holiday"):
    start = start or NOW()
    return approver_absence_set(
        actor=approver, deputy_id=deputy.pk, starts_at=start, ends_at=start + timedelta(days=days), reason=reason
    )


def eligible(request, position=1) -> set[str]:
    return set(request.stages.get(position=position).eligible.values_list("username", flat=True))


def test_a_request_submitted_while_the_approver_is_away_goes_to_the_deputy(
    alice, entitlement, submit, ent_owner, deputy
):
    # given the entitlement owner is away with Dora as deputy (audited, Dora told)
    absence = away(ent_owner, deputy)
    named = AuditEvent.objects.get(action=AuditAction.APPROVER_ABSENCE_SET)
    assert named.data["deputy"] == deputy.pk and named.data["reason"] == "holiday"
    assert deputy.notifications.filter(kind="deputy.named").exists()

    # when Alice asks
    access_request = submit(entitlement)

    # then Dora may decide stage 1 (the owner stays eligible for when they are back), and does
    assert eligible(access_request) == {"entowner", "dora"}
    assert deputy.notifications.filter(kind="request.approval_needed").exists()
    access_request_decide(request_id=access_request.pk, approver=deputy, decision="approve", comment="for Entowner")
    assert access_request.stages.get(position=1).status == "approved"
    assert absence.approver == ent_owner


def test_requests_already_waiting_are_shared_with_the_deputy_when_the_absence_starts(
    alice, entitlement, submit, ent_owner, deputy
):
    # given a request waiting for the owner, and an absence that starts tomorrow
    access_request = submit(entitlement)
    absence = away(ent_owner, deputy, start=NOW() + timedelta(days=1))
    assert eligible(access_request) == {"entowner"}  # not yet
    assert approver_absences_hand_over_due() == 0

    # when the beat runs after the absence started
    with time_machine.travel(NOW() + timedelta(days=1, minutes=1)):
        shared = approver_absences_hand_over_due()
        again = approver_absences_hand_over_due()

    # then the waiting stage is shared with Dora, once, audited and told
    assert (shared, again) == (1, 0)
    assert eligible(access_request) == {"entowner", "dora"}
    handed = AuditEvent.objects.get(action=AuditAction.REQUEST_HANDED_TO_DEPUTY)
    assert handed.data == {"stage": 1, "absent": ent_owner.pk, "deputy": deputy.pk, "absence": absence.pk}
    absence.refresh_from_db()
    assert absence.handed_over_at is not None


def test_an_absence_starting_now_shares_what_waits_at_once(alice, entitlement, submit, ent_owner, deputy):
    access_request = submit(entitlement)
    away(ent_owner, deputy)
    assert eligible(access_request) == {"entowner", "dora"}


def test_the_deputy_is_never_routed_their_own_request(entitlement, ent_owner, deputy, submit):
    # given Dora is the deputy, and Dora herself asks for the entitlement
    away(ent_owner, deputy)
    access_request = submit(entitlement, actor=deputy, beneficiary=deputy.identity)

    # then the request is not routed to her: self-approval stays impossible
    assert eligible(access_request) == {"entowner"}
    with pytest.raises(PermissionRefused):
        access_request_decide(request_id=access_request.pk, approver=deputy, decision="approve")


def test_a_waiting_request_of_the_deputy_is_not_shared_with_them(entitlement, ent_owner, deputy, submit):
    access_request = submit(entitlement, actor=deputy, beneficiary=deputy.identity)
    away(ent_owner, deputy)
    assert eligible(access_request) == {"entowner"}
    assert not AuditEvent.objects.filter(action=AuditAction.REQUEST_HANDED_TO_DEPUTY).exists()


def test_a_deputy_away_too_hands_on_to_their_own_deputy(alice, entitlement, submit, ent_owner, deputy):
    third = PersonFactory(name="Tess", user__username="tess", user__roles=["approver"]).user
    away(deputy, third)
    away(ent_owner, deputy)
    assert eligible(submit(entitlement)) == {"entowner", "tess"}


@pytest.mark.parametrize(
    ("who", "start", "days", "words"),
    [
        ("self", 0, 3, "your own deputy"),
        ("auditor", 0, 3, "auditors decide nothing"),
        ("deputy", 0, 0, "after the start"),
        ("deputy", 0, 120, "at most 90 days"),
    ],
)
def test_a_deputy_who_cannot_stand_in_or_a_bad_period_is_refused(ent_owner, deputy, auditor, who, start, days, words):
    chosen = {"self": ent_owner, "auditor": auditor, "deputy": deputy}[who]
    with pytest.raises(ValidationFailed) as refused:
        away(ent_owner, chosen, start=NOW() + timedelta(days=start), days=days)
    assert words in refused.value.message
    assert not ApproverAbsence.objects.exists()
    assert not AuditEvent.objects.filter(action=AuditAction.APPROVER_ABSENCE_SET).exists()


def test_overlapping_absences_and_deputies_naming_each_other_are_refused(ent_owner, deputy):
    away(ent_owner, deputy, days=5)
    with pytest.raises(ValidationFailed, match="already away"):
        away(ent_owner, deputy, start=NOW() + timedelta(days=2))
    with pytest.raises(ValidationFailed, match="named you as their deputy"):
        away(deputy, ent_owner, start=NOW() + timedelta(days=1))


def test_an_auditor_names_no_deputy(auditor, deputy):
    with pytest.raises(PermissionRefused):
        away(auditor, deputy)


def test_ending_an_absence_stops_the_routing_and_is_audited(alice, entitlement, submit, ent_owner, deputy):
    absence = away(ent_owner, deputy)
    approver_absence_end(actor=ent_owner, absence_id=absence.pk)
    assert AuditEvent.objects.filter(action=AuditAction.APPROVER_ABSENCE_ENDED, data__deputy=deputy.pk).exists()
    assert eligible(submit(entitlement)) == {"entowner"}
    with pytest.raises(PermissionRefused):
        approver_absence_end(actor=deputy, absence_id=absence.pk)  # only one's own


def test_the_out_of_office_page_names_a_deputy_and_ends_it(client, ent_owner, deputy):
    # given
    client.force_login(ent_owner)
    url = reverse("jit:approval_absence")
    assert b"Dora Deputy (dora)" in client.get(url).content

    # a missing end is said beside the field
    refused = client.post(url, {"deputy": deputy.pk})
    assert refused.status_code == 400 and b'id="id_ends_at_error"' in refused.content

    # when
    until = (NOW() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(url, {"deputy": deputy.pk, "ends_at": until, "time_zone": "UTC"}, follow=True)

    # then
    assert b"decides for you meanwhile" in response.content
    absence = ApproverAbsence.objects.get()
    queue = client.get(reverse("jit:approval_queue")).content
    assert b"You are out of office" in queue and b"Dora Deputy" in queue
    ended = client.post(url, {"end": absence.pk}, follow=True)
    assert b"Your absence is ended" in ended.content


def test_nobody_ends_someone_elses_absence_through_the_page(client, ent_owner, deputy):
    absence = away(ent_owner, deputy)
    client.force_login(deputy)
    assert client.post(reverse("jit:approval_absence"), {"end": absence.pk}).status_code == 404
    absence.refresh_from_db()
    assert absence.ended_at is None


def test_the_deputys_card_says_for_whom(client, alice, entitlement, submit, ent_owner, deputy):
    away(ent_owner, deputy)
    submit(entitlement)
    client.force_login(deputy)
    content = client.get(reverse("jit:approval_queue")).content.decode()
    assert "As deputy for Entowner" in content and "You are the deputy of" in content
