"""Free text is bounded on the pages, in the API and in the database, and lists stay small. Ref: #11 (point 7)."""

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from audit.models import AuditEvent
from governance.choices import GrantKind, GrantStatus
from jit.choices import RequestStatus
from jit.models import AccessRequest, Approval
from tests.api import API, api
from tests.factories.governance import GrantFactory

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
AT_LIMIT = "x" * FREE_TEXT_MAX_LENGTH
OVER_LIMIT = "x" * (FREE_TEXT_MAX_LENGTH + 1)
ONE_MB = "x" * 1024 * 1024
TOO_LONG = [pytest.param(OVER_LIMIT, id="limit+1"), pytest.param(ONE_MB, id="1MB")]
TOO_LONG_MESSAGE = f"{FREE_TEXT_MAX_LENGTH} characters"


def form_data(beneficiary, **overrides):
    return {"beneficiary": beneficiary.pk, "duration_hours": 2, "justification": "Fix incident 42", **overrides}


def submitted(entitlement, alice, justification):
    return api(alice.user).post(
        f"{API}/requests/",
        {
            "beneficiary": alice.pk,
            "entitlement": entitlement.pk,
            "duration_seconds": 3600,
            "justification": justification,
        },
        format="json",
    )


#
# Submitting: the justification (and an agent's intent)
#
@pytest.mark.parametrize("justification", TOO_LONG)
def test_an_over_long_justification_on_the_page_is_a_field_error_and_nothing_is_written(
    client, alice, entitlement, justification
):
    # given
    client.force_login(alice.user)
    events = AuditEvent.objects.count()
    # when
    response = client.post(
        reverse("jit:request_create", args=[entitlement.pk]), form_data(alice, justification=justification)
    )
    # then
    assert TOO_LONG_MESSAGE in str(response.context["form"].errors["justification"])
    assert b'class="field-error"' in response.content
    assert not AccessRequest.objects.exists() and AuditEvent.objects.count() == events


def test_a_justification_of_exactly_the_limit_is_accepted_on_the_page(client, alice, entitlement):
    client.force_login(alice.user)
    response = client.post(
        reverse("jit:request_create", args=[entitlement.pk]), form_data(alice, justification=AT_LIMIT)
    )
    assert response.status_code == 302
    assert AccessRequest.objects.get().justification == AT_LIMIT


@pytest.mark.parametrize("justification", TOO_LONG)
def test_an_over_long_justification_through_the_api_is_400_naming_the_field_and_nothing_is_written(
    alice, entitlement, justification
):
    events = AuditEvent.objects.count()
    response = submitted(entitlement, alice, justification)
    assert response.status_code == 400
    assert TOO_LONG_MESSAGE in str(response.json()["errors"]["justification"])
    assert not AccessRequest.objects.exists() and AuditEvent.objects.count() == events


def test_a_justification_of_exactly_the_limit_is_accepted_through_the_api(alice, entitlement):
    response = submitted(entitlement, alice, AT_LIMIT)
    assert response.status_code == 201, response.json()
    assert AccessRequest.objects.get().justification == AT_LIMIT


def test_an_over_long_intent_through_the_api_is_400_naming_the_field(alice, entitlement):
    response = api(alice.user).post(
        f"{API}/requests/",
        {"beneficiary": alice.pk, "entitlement": entitlement.pk, "justification": "x", "intent": OVER_LIMIT},
        format="json",
    )
    assert response.status_code == 400 and "intent" in response.json()["errors"]
    assert not AccessRequest.objects.exists()


def test_an_over_long_extension_justification_is_a_field_error(client, alice, entitlement):
    grant = GrantFactory(identity=alice, entitlement=entitlement, kind=GrantKind.JIT)
    client.force_login(alice.user)
    response = client.post(
        reverse("jit:grant_extend", args=[grant.pk]), {"duration_hours": 1, "justification": OVER_LIMIT}
    )
    assert TOO_LONG_MESSAGE in str(response.context["form"].errors["justification"])
    assert not AccessRequest.objects.exists()


#
# Cancelling: the reason is refused, never dropped, and nothing is cancelled
#
def test_the_cancel_page_refuses_an_over_long_reason_beside_the_field_and_the_request_stays_pending(
    client, alice, entitlement, submit
):
    # given
    request = submit(entitlement)
    client.force_login(alice.user)
    # when
    response = client.post(reverse("jit:request_cancel", args=[request.pk]), {"reason": OVER_LIMIT})
    # then
    assert response.status_code == 400
    assert TOO_LONG_MESSAGE in str(response.context["cancel_form"].errors["reason"])
    assert 'id="id_reason_error"' in response.content.decode()
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING and request.decision_note == ""
    assert not AuditEvent.objects.filter(action="request.cancelled").exists()


def test_the_cancel_page_keeps_a_reason_of_exactly_the_limit(client, alice, entitlement, submit):
    request = submit(entitlement)
    client.force_login(alice.user)
    response = client.post(reverse("jit:request_cancel", args=[request.pk]), {"reason": AT_LIMIT})
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == RequestStatus.CANCELLED and request.decision_note == AT_LIMIT


def test_cancelling_through_the_api_with_an_over_long_reason_is_400_and_the_request_stays_pending(
    alice, entitlement, submit
):
    request = submit(entitlement)
    response = api(alice.user).post(f"{API}/requests/{request.pk}/cancel/", {"reason": OVER_LIMIT}, format="json")
    assert response.status_code == 400 and "reason" in response.json()["errors"]
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING


#
# Deciding: the comment
#
def test_denying_in_the_queue_with_an_over_long_comment_shows_the_error_in_the_row_and_decides_nothing(
    client, ent_owner, entitlement, submit
):
    request = submit(entitlement)
    client.force_login(ent_owner)
    response = client.post(
        reverse("jit:approval_decide", args=[request.pk]),
        {"decision": "deny", "comment": OVER_LIMIT, "stage_position": 1},
        headers=HTMX,
    )
    assert response.status_code == 400
    assert TOO_LONG_MESSAGE in response.content.decode()
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING and not Approval.objects.exists()


def test_denying_through_the_api_with_an_over_long_comment_is_400_naming_the_field(ent_owner, entitlement, submit):
    request = submit(entitlement)
    response = api(ent_owner).post(f"{API}/requests/{request.pk}/deny/", {"comment": ONE_MB}, format="json")
    assert response.status_code == 400 and "comment" in response.json()["errors"]
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING and not Approval.objects.exists()


#
# Giving access back: the release reason and the "do not renew" note
#
def test_releasing_with_an_over_long_reason_is_refused_beside_the_field_on_the_page_and_in_the_api(
    client, alice, entitlement
):
    grant = GrantFactory(identity=alice, entitlement=entitlement, kind=GrantKind.JIT)
    client.force_login(alice.user)
    page = client.post(reverse("jit:grant_release", args=[grant.pk]), {"reason": OVER_LIMIT})
    assert TOO_LONG_MESSAGE in str(page.context["form"].errors["reason"])
    through_api = api(alice.user).post(f"{API}/grants/{grant.pk}/release/", {"reason": OVER_LIMIT}, format="json")
    assert through_api.status_code == 400 and "reason" in through_api.json()["errors"]
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE


def test_an_over_long_do_not_renew_note_is_refused_not_cut_short(client, alice, alice_bot, entitlement):
    grant = GrantFactory(identity=alice_bot, entitlement=entitlement, kind=GrantKind.JIT)
    client.force_login(alice.user)
    response = client.post(reverse("jit:grant_no_renew", args=[grant.pk]), {"note": OVER_LIMIT}, follow=True)
    assert TOO_LONG_MESSAGE in response.content.decode()
    grant.refresh_from_db()
    assert not grant.no_renew


#
# Lists stay small; the detail page shows everything
#
def test_the_approval_queue_stays_small_with_justifications_at_the_limit(client, alice, alice_bot, ent_owner, submit):
    # given two requests whose justifications are as long as allowed
    from tests.factories.governance import EntitlementFactory

    for beneficiary in (alice, alice_bot):
        entitlement = EntitlementFactory(owner=ent_owner.identity)
        submit(entitlement, beneficiary=beneficiary, justification=AT_LIMIT)
    client.force_login(ent_owner)
    # when
    response = client.get(reverse("jit:approval_queue"))
    # then both are listed, each justification cut short
    assert response.status_code == 200 and len(response.context["page_obj"]) == 2
    assert AT_LIMIT not in response.content.decode()
    assert len(response.content) < 100_000


def test_the_request_page_shows_the_whole_justification(client, alice, entitlement, submit):
    request = submit(entitlement, justification=AT_LIMIT)
    client.force_login(alice.user)
    assert AT_LIMIT in client.get(reverse("jit:request_detail", args=[request.pk])).content.decode()


#
# The database refuses too
#
@pytest.mark.parametrize("field", ["justification", "intent", "decision_note"])
def test_the_database_refuses_over_long_request_text(entitlement, submit, field):
    request = submit(entitlement)
    with pytest.raises(IntegrityError), transaction.atomic():
        AccessRequest.objects.filter(pk=request.pk).update(**{field: OVER_LIMIT})
