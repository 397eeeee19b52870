"""Several entitlements in one request: one justification, one request and decision each, all or none;
a separation-of-duties block is named in the preview and cannot be submitted. Ref: #16."""

from datetime import timedelta

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from governance.choices import RiskTier
from governance.errors import ValidationFailed
from jit.choices import RequestStatus
from jit.models import AccessRequest
from jit.services.requests import access_request_submit_many
from tests.factories.governance import EntitlementFactory, GrantFactory, SodRuleFactory, SystemFactory

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


@pytest.fixture
def logs(entitlement):
    """Low risk, at most 4 hours, in the same system as db-write."""
    return EntitlementFactory(name="logs-read", system=entitlement.system, max_duration=timedelta(hours=4))


def form_data(beneficiary, **overrides):
    data = {"beneficiary": beneficiary.pk, "duration_preset": "24", "justification": "Incident 42", "ticket": ""}
    return {**data, **overrides}


def test_one_submission_makes_one_request_each_cut_to_its_maximum_and_linked(alice, entitlement, logs):
    # when
    made = access_request_submit_many(
        actor=alice.user,
        beneficiary_id=alice.pk,
        entitlement_ids=[logs.pk, entitlement.pk],
        duration=timedelta(days=1),
        justification="Incident 42",
    )
    # then: in id order, one per entitlement, the justification shared, each its own decision
    assert [r.entitlement for r in made] == sorted([entitlement, logs], key=lambda e: e.pk)
    by_name = {r.entitlement.name: r for r in made}
    assert by_name["db-write"].duration == timedelta(days=1)
    assert by_name["logs-read"].duration == timedelta(hours=4)  # cut to its own maximum
    assert {r.justification for r in made} == {"Incident 42"}
    assert {r.status for r in made} == {RequestStatus.PENDING}
    submissions = {e.data["together"]["submission"] for e in AuditEvent.objects.filter(action="request.submitted")}
    assert len(submissions) == 1


def test_a_refusal_of_one_submits_none_and_names_it(alice, entitlement, logs):
    # given: logs-read and db-write may not be held together
    SodRuleFactory(name="read-write split", action="block", entitlements=[entitlement, logs])
    events = AuditEvent.objects.count()
    # when
    with pytest.raises(ValidationFailed) as refused:
        access_request_submit_many(
            actor=alice.user,
            beneficiary_id=alice.pk,
            entitlement_ids=[entitlement.pk, logs.pk],
            duration=timedelta(hours=2),
            justification="Incident 42",
        )
    # then: nothing written, and the refusal says which
    assert not AccessRequest.objects.exists() and AuditEvent.objects.count() == events
    assert any("read-write split" in line for line in refused.value.field_errors["entitlements"])


def test_the_page_submits_several_and_links_them(client, alice, entitlement, logs):
    client.force_login(alice.user)
    # given: picked together in the catalogue
    picked = client.get(reverse("jit:request_catalogue"), {"go": "1", "together": [logs.pk, entitlement.pk]})
    assert picked.status_code == 302
    form_url = picked["Location"]
    page = client.get(form_url)
    assert [e.name for e in page.context["entitlements"]] == ["db-write", "logs-read"]
    assert b"Request 2 entitlements together" in page.content
    # when
    response = client.post(form_url.split("?")[0], {**form_data(alice), "also": [page.context["entitlements"][1].pk]})
    # then
    assert response.status_code == 302 and response["Location"] == reverse("jit:request_list")
    first, second = AccessRequest.objects.order_by("pk")
    detail = client.get(reverse("jit:request_detail", args=[first.pk])).content.decode()
    assert "Asked together with" in detail and reverse("jit:request_detail", args=[second.pk]) in detail


def test_a_blocked_pair_is_named_in_the_preview_and_cannot_be_submitted(client, alice, entitlement, logs):
    # given: Alice holds db-write; logs-read would complete a blocking rule
    SodRuleFactory(name="read-write split", action="block", entitlements=[entitlement, logs])
    held = GrantFactory(identity=alice, entitlement=entitlement)
    client.force_login(alice.user)
    # when
    page = client.get(reverse("jit:request_create", args=[logs.pk]))
    preview = client.post(reverse("jit:request_preview", args=[logs.pk]), form_data(alice), headers=HTMX)
    # then: the preview names the other entitlement and what to do, and the button is off
    for response in (page, preview):
        body = response.content.decode()
        assert "read-write split" in body and "<strong>db-write</strong>" in body
        assert reverse("jit:grant_release", args=[held.pk]) in body and "Release db-write" in body
        assert "disabled" in body.split('id="request-actions"')[1].split("</div>")[0]
    assert 'hx-swap-oob="true"' in preview.content.decode()
    # and a post anyway is refused by the service, with nothing written
    refused = client.post(reverse("jit:request_create", args=[logs.pk]), form_data(alice))
    assert refused.status_code == 200 and not AccessRequest.objects.exists()


def test_asked_together_a_blocked_pair_says_untick_one(client, alice, entitlement, logs):
    SodRuleFactory(name="read-write split", action="block", entitlements=[entitlement, logs])
    client.force_login(alice.user)
    url = reverse("jit:request_preview", args=[entitlement.pk])
    body = client.post(url, {**form_data(alice), "also": [logs.pk]}, headers=HTMX).content.decode()
    assert "Untick logs-read above" in body or "Untick db-write above" in body


def test_an_unknown_or_unrequestable_entitlement_is_left_out(client, alice, entitlement):
    hidden = EntitlementFactory(requestable=False, system=SystemFactory())
    client.force_login(alice.user)
    page = client.get(reverse("jit:request_create", args=[entitlement.pk]), {"also": [hidden.pk, 999999]})
    assert [e.pk for e in page.context["entitlements"]] == [entitlement.pk]


def test_catalogue_sorts_by_risk_with_aria_sort_and_says_you_hold_it_only_in_force(client, alice):
    from governance.choices import GrantStatus

    high = EntitlementFactory(name="a-high", risk_tier=RiskTier.HIGH)
    low = EntitlementFactory(name="b-low", risk_tier=RiskTier.LOW)
    GrantFactory(identity=alice, entitlement=high, status=GrantStatus.REVOKING)  # being removed: not held
    GrantFactory(identity=alice, entitlement=low)
    client.force_login(alice.user)
    response = client.get(reverse("jit:request_catalogue"), {"sort": "-risk"})
    rows = list(response.context["page_obj"])
    assert [r.name for r in rows] == ["a-high", "b-low"]
    assert not rows[0].held_by_me and rows[1].held_by_me
    assert 'aria-sort="descending"' in response.content.decode()
    assert response.content.decode().count("you hold it") == 1
