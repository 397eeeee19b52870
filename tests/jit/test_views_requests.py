"""Request pages: catalogue, form with its policy preview, my requests, detail, cancel. Ref: #4."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEvent
from governance.choices import RiskTier
from jit.choices import RequestStatus
from jit.models import AccessRequest
from tests.factories.governance import EntitlementFactory, PersonFactory

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def form_data(beneficiary, **overrides):
    data = {"beneficiary": beneficiary.pk, "duration_hours": 2, "justification": "Fix incident 42", "ticket": ""}
    data.update(overrides)
    return data


def test_catalogue_lists_requestable_entitlements_and_filters_by_risk(client, alice, entitlement):
    # given
    EntitlementFactory(name="not-for-you", requestable=False)
    client.force_login(alice.user)
    # when
    everything = client.get(reverse("jit:request_catalogue"))
    high_only = client.get(reverse("jit:request_catalogue"), {"risk_tier": RiskTier.HIGH})
    # then
    assert b"db-write" in everything.content and b"not-for-you" not in everything.content
    assert reverse("jit:request_create", args=[entitlement.pk]).encode() in everything.content
    assert b"db-write" not in high_only.content and b"No requestable entitlement" in high_only.content


def test_catalogue_marks_what_i_hold_and_what_i_asked_for(client, alice, entitlement, submit):
    from governance.choices import GrantKind
    from tests.factories.governance import GrantFactory

    held = EntitlementFactory(name="held-one")
    GrantFactory(identity=alice, entitlement=held, kind=GrantKind.STANDING)
    submit(entitlement)
    client.force_login(alice.user)
    rows = {e.name: e for e in client.get(reverse("jit:request_catalogue")).context["page_obj"]}
    assert rows["held-one"].held_by_me and not rows["held-one"].requested_by_me
    assert rows["db-write"].requested_by_me and not rows["db-write"].held_by_me
    content = client.get(reverse("jit:request_catalogue")).content
    assert b"you hold it" in content and b"you asked" in content


def test_form_shows_the_maximum_and_the_preview_with_approvers(client, alice, entitlement):
    client.force_login(alice.user)
    response = client.get(reverse("jit:request_create", args=[entitlement.pk]))
    assert response.status_code == 200
    # the presets go up to the maximum, said in the page's one style (issue 16)
    assert b"7 days (the maximum)" in response.content and b"at most 168 (7 days" in response.content
    assert b"Entowner" in response.content and b"Sysowner" in response.content


def test_submitting_through_the_page_creates_a_request_and_redirects(client, alice, entitlement):
    # given
    client.force_login(alice.user)
    # when
    response = client.post(reverse("jit:request_create", args=[entitlement.pk]), form_data(alice))
    # then
    access_request = AccessRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("jit:request_detail", args=[access_request.pk])
    assert access_request.requester == alice.user and access_request.beneficiary == alice
    assert access_request.duration.total_seconds() == 2 * 3600
    assert access_request.status == RequestStatus.PENDING
    detail = client.get(response["Location"])
    assert b"submitted" in detail.content and b"Fix incident 42" in detail.content


def test_duration_over_the_maximum_shows_the_error_beside_the_field_and_writes_nothing(client, alice, entitlement):
    client.force_login(alice.user)
    events_before = AuditEvent.objects.count()
    response = client.post(
        reverse("jit:request_create", args=[entitlement.pk]), form_data(alice, duration_hours=24 * 8)
    )
    assert response.status_code == 200
    assert response.context["form"].errors["duration_hours"] == ["The maximum duration for this entitlement is 7 days."]
    assert b'id="id_duration_hours_error"' in response.content
    assert not AccessRequest.objects.exists()
    assert AuditEvent.objects.count() == events_before


def test_an_entitlement_capped_under_an_hour_can_be_asked_for_in_fractions_of_an_hour(client, alice, entitlement):
    # given access that may last at most half an hour
    entitlement.max_duration = timedelta(minutes=30)
    entitlement.save()
    client.force_login(alice.user)
    url = reverse("jit:request_create", args=[entitlement.pk])

    # then the form offers what is allowed, refuses an hour in the policy's words, and takes 0.5
    assert client.get(url).context["form"]["duration_hours"].value() == Decimal("0.5")
    too_long = client.post(url, form_data(alice, duration_hours="1"))
    assert too_long.context["form"].errors["duration_hours"] == [
        "The maximum duration for this entitlement is 30 minutes."
    ]
    assert client.post(url, form_data(alice, duration_hours="0.5")).status_code == 302
    assert AccessRequest.objects.get().duration == timedelta(minutes=30)


def test_an_absurd_duration_names_the_policys_maximum_and_the_preview_refuses_it(client, alice, entitlement):
    client.force_login(alice.user)
    response = client.post(
        reverse("jit:request_create", args=[entitlement.pk]), form_data(alice, duration_hours=100000)
    )
    assert response.context["form"].errors["duration_hours"] == ["The maximum duration for this entitlement is 7 days."]
    assert b"would be refused" in response.content
    assert not AccessRequest.objects.exists()


def test_missing_justification_shows_the_error_beside_the_field_and_writes_nothing(client, alice, entitlement):
    client.force_login(alice.user)
    response = client.post(reverse("jit:request_create", args=[entitlement.pk]), form_data(alice, justification=""))
    assert response.status_code == 200
    assert response.context["form"].errors["justification"] == ["A justification is required for this entitlement."]
    assert b'id="id_justification_error"' in response.content
    assert not AccessRequest.objects.exists()


def test_preview_endpoint_shows_the_approvers_and_refusals(client, alice, entitlement):
    client.force_login(alice.user)
    url = reverse("jit:request_preview", args=[entitlement.pk])
    allowed = client.post(url, form_data(alice), headers=HTMX)
    too_long = client.post(url, form_data(alice, duration_hours=500), headers=HTMX)
    assert allowed.status_code == 200
    assert b"Entowner" in allowed.content and b"Sysowner" in allowed.content and b"2 approval stages" in allowed.content
    assert b"<html" not in allowed.content  # a fragment for the panel
    assert b"would be refused" in too_long.content and b"maximum duration" in too_long.content


def test_request_for_a_machine_identity_i_own(client, alice, alice_bot, entitlement):
    client.force_login(alice.user)
    response = client.post(reverse("jit:request_create", args=[entitlement.pk]), form_data(alice_bot))
    assert response.status_code == 302
    assert AccessRequest.objects.get().beneficiary == alice_bot


def test_cannot_request_for_someone_else(client, alice, entitlement):
    client.force_login(alice.user)
    someone = PersonFactory()
    response = client.post(reverse("jit:request_create", args=[entitlement.pk]), form_data(someone))
    assert response.status_code == 200 and "beneficiary" in response.context["form"].errors
    assert not AccessRequest.objects.exists()


def test_a_login_without_identity_is_told_an_admin_must_link_it(client, make_user, entitlement):
    client.force_login(make_user("nobody"))
    response = client.get(reverse("jit:request_create", args=[entitlement.pk]))
    assert response.status_code == 200
    assert b"Ask an admin to link your login to your identity" in response.content
    assert b"Submit request" not in response.content


def test_my_requests_lists_mine_filters_by_status_and_has_an_empty_state(client, alice, entitlement, submit):
    # given
    mine = submit(entitlement)
    bob = PersonFactory(name="Bob", user__username="bob")
    others = submit(EntitlementFactory(name="bobs-thing"), actor=bob.user, beneficiary=bob)
    client.force_login(alice.user)
    # when
    listed = client.get(reverse("jit:request_list"))
    denied_only = client.get(reverse("jit:request_list"), {"status": "denied"})
    # then
    assert reverse("jit:request_detail", args=[mine.pk]).encode() in listed.content
    assert reverse("jit:request_detail", args=[others.pk]).encode() not in listed.content
    assert b"No requests with this status" in denied_only.content


def test_my_requests_joins_only_what_the_list_shows(client, alice, alice_bot, entitlement, submit):
    # given a request for my machine
    submit(entitlement, beneficiary=alice_bot)
    client.force_login(alice.user)
    # when I list my requests
    with CaptureQueriesContext(connection) as ctx:
        body = client.get(reverse("jit:request_list")).content.decode()
    # then the row names the entitlement, its system and risk, and who it is for
    assert "db-write" in body and "Payments DB" in body and "alice-bot" in body and "Service account" in body
    # read with those three joins alone: a request's own page joins ten, which cost more to plan than the rows
    (rows,) = [
        query["sql"] for query in ctx.captured_queries if query["sql"].startswith('SELECT "jit_accessrequest"."id",')
    ]
    assert rows.count(" JOIN ") == 3, rows


def test_request_detail_shows_stages_policy_and_history_to_the_requester(client, alice, entitlement, submit):
    access_request = submit(entitlement)
    client.force_login(alice.user)
    response = client.get(reverse("jit:request_detail", args=[access_request.pk]))
    assert response.status_code == 200
    for text in (b"Entowner", b"Sysowner", b"request.submitted", b"Fix incident 42", b"Cancel this request"):
        assert text in response.content


def test_an_eligible_approver_sees_the_request_and_a_stranger_gets_404(client, alice, entitlement, submit, ent_owner):
    access_request = submit(entitlement)
    url = reverse("jit:request_detail", args=[access_request.pk])
    client.force_login(ent_owner)
    assert client.get(url).status_code == 200
    client.force_login(PersonFactory(user__username="mallory").user)
    assert client.get(url).status_code == 404
    assert client.post(reverse("jit:request_cancel", args=[access_request.pk])).status_code == 404


def test_requester_cancels_and_a_second_cancel_is_a_clear_conflict(client, alice, entitlement, submit):
    # given
    access_request = submit(entitlement)
    client.force_login(alice.user)
    url = reverse("jit:request_cancel", args=[access_request.pk])
    # when
    first = client.post(url, {"reason": "not needed"}, follow=True)
    second = client.post(url, headers=HTMX)
    # then
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.CANCELLED
    assert b"cancelled" in first.content
    assert second.status_code == 409 and b"already cancelled" in second.content
    assert AuditEvent.objects.filter(action="request.cancelled").count() == 1


def test_preview_treats_a_missing_justification_as_a_reminder_not_a_refusal(client, alice, entitlement):
    client.force_login(alice.user)
    response = client.post(reverse("jit:request_preview", args=[entitlement.pk]), form_data(alice, justification=""))
    assert b"Allowed once completed" in response.content
    assert b"A justification is required" in response.content and b"would be refused" not in response.content
