"""The access pages filter and paginate in place (htmx), like the inventory pages; without JS they are
plain GET pages. A decision refused from the request's page goes back to that page."""

import pytest
from django.urls import reverse

from governance.choices import RiskTier
from governance.models import Notification
from jit.choices import RequestStatus
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def assert_results_only(response) -> str:
    """The results fragment: no page around it (no <html>, no main navigation), and never cached as the page."""
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="results"'), body[:200]
    assert "<html" not in body and 'aria-label="Main"' not in body and "<nav" not in body
    assert "HX-Request" in response["Vary"]
    return body


def assert_whole_page(response) -> str:
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" in body and 'aria-label="Main"' in body
    assert 'id="results"' in body
    # The filter form and the results it swaps
    assert 'hx-target="#results"' in body and 'hx-push-url="true"' in body
    return body


@pytest.fixture
def other_entitlement(entitlement):
    """Same approver (the entitlement owner), another system."""
    return EntitlementFactory(
        name="ledger-read",
        risk_tier=RiskTier.MEDIUM,
        approval_stages=entitlement.approval_stages,
        system=SystemFactory(name="Ledger"),
        owner=entitlement.owner,
    )


def test_approval_queue_filters_in_place_with_htmx(client, entitlement, other_entitlement, submit, ent_owner):
    # given: two requests waiting for the same approver, in two systems
    wanted = submit(entitlement)
    other = submit(other_entitlement)
    client.force_login(ent_owner)
    url = reverse("jit:approval_queue")
    # when
    fragment = client.get(url, {"system": entitlement.system_id}, headers=HTMX)
    page = client.get(url, {"system": entitlement.system_id})
    # then
    body = assert_results_only(fragment)
    assert f'id="req-{wanted.pk}"' in body and f'id="req-{other.pk}"' not in body
    assert f'hx-post="{reverse("jit:approval_decide", args=[wanted.pk])}"' in body  # rows still decide in place
    full = assert_whole_page(page)
    assert f'id="req-{wanted.pk}"' in full and f'id="req-{other.pk}"' not in full
    assert 'aria-label="Filter the queue"' in full and f'hx-get="{url}"' in full


def test_approval_queue_empty_state_is_in_the_fragment(client, entitlement, submit, ent_owner):
    submit(entitlement)
    client.force_login(ent_owner)
    response = client.get(reverse("jit:approval_queue"), {"risk_tier": RiskTier.HIGH}, headers=HTMX)
    assert "Nothing waits for you" in assert_results_only(response)


def test_request_catalogue_searches_in_place_with_htmx(client, alice, entitlement, other_entitlement):
    client.force_login(alice.user)
    url = reverse("jit:request_catalogue")
    # when
    fragment = client.get(url, {"q": "ledger"}, headers=HTMX)
    page = client.get(url, {"q": "ledger"})
    nothing = client.get(url, {"q": "no-such-thing"}, headers=HTMX)
    # then
    body = assert_results_only(fragment)
    assert "ledger-read" in body and "db-write" not in body
    assert 'aria-label="Request ledger-read in Ledger"' in body
    full = assert_whole_page(page)
    assert "ledger-read" in full and "db-write" not in full
    assert 'aria-label="Search the catalogue"' in full and 'for="id_q"' in full
    assert "No requestable entitlement matches these filters." in assert_results_only(nothing)


def test_my_requests_filter_by_status_in_place_with_htmx(client, alice, entitlement, other_entitlement, submit):
    from jit.services.requests import access_request_cancel

    # given: one pending request, one cancelled
    pending = submit(entitlement)
    cancelled = submit(other_entitlement)
    access_request_cancel(request_id=cancelled.pk, actor=alice.user, reason="not needed")
    client.force_login(alice.user)
    url = reverse("jit:request_list")
    # when
    fragment = client.get(url, {"status": RequestStatus.CANCELLED}, headers=HTMX)
    page = client.get(url, {"status": RequestStatus.CANCELLED})
    denied = client.get(url, {"status": RequestStatus.DENIED}, headers=HTMX)
    # then
    body = assert_results_only(fragment)
    assert reverse("jit:request_detail", args=[cancelled.pk]) in body
    assert reverse("jit:request_detail", args=[pending.pk]) not in body
    full = assert_whole_page(page)
    assert reverse("jit:request_detail", args=[cancelled.pk]) in full
    assert reverse("jit:request_detail", args=[pending.pk]) not in full
    assert 'aria-label="Filter my requests"' in full and "Request access" in full
    assert "No requests with this status yet." in assert_results_only(denied)


def test_notifications_paginate_in_place_with_htmx(client, alice):
    # given: 31 notifications, 30 a page, newest first: the oldest is alone on page 2
    user = alice.user
    for n in range(31):
        Notification.objects.create(recipient=user, kind="x", subject=f"note-{n:02}")
    Notification.objects.create(recipient=PersonFactory().user, kind="x", subject="not yours")
    client.force_login(user)
    url = reverse("jit:notification_list")
    # when
    fragment = client.get(url, {"page": 2}, headers=HTMX)
    first = client.get(url)
    # then: page 2 is the fragment, its pagination links swap it again
    body = fragment.content.decode()
    assert body.lstrip().startswith('<div id="results"') and "<html" not in body and 'aria-label="Main"' not in body
    assert "note-00" in body and "note-30" not in body and "not yours" not in body
    assert f'hx-get="{url}?page=1"' in body and 'rel="prev"' in body
    full = assert_whole_page(first)
    assert "note-30" in full and "note-00" not in full
    assert f'href="?page=2" hx-get="{url}?page=2" rel="next"' in full  # a plain link without JS
    assert "Mark all read" in full


def test_a_history_restore_gets_the_whole_page(client, alice, entitlement):
    """htmx asks the server for a page missing from its history cache with HX-Request too."""
    client.force_login(alice.user)
    response = client.get(reverse("jit:request_catalogue"), headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert_whole_page(response)


def decide_from_detail(client, access_request, *, next_url, decision="approve", comment=""):
    return client.post(
        reverse("jit:approval_decide", args=[access_request.pk]),
        {"decision": decision, "comment": comment, "stage_position": 1, "next": next_url},
    )


def test_a_conflicting_decision_from_the_request_page_goes_back_to_it(client, alice, entitlement, submit, ent_owner):
    # given: the stage was decided meanwhile
    access_request = submit(entitlement)
    client.force_login(ent_owner)
    detail = reverse("jit:request_detail", args=[access_request.pk])
    decide_from_detail(client, access_request, next_url=detail, decision="deny", comment="no")
    # when
    response = decide_from_detail(client, access_request, next_url=detail)
    # then
    assert response.status_code == 302 and response["Location"] == detail
    assert b"already denied" in client.get(response["Location"]).content


def test_a_refused_decision_from_the_request_page_goes_back_to_it(client, alice, entitlement, submit):
    access_request = submit(entitlement)
    client.force_login(alice.user)  # the requester may not decide
    detail = reverse("jit:request_detail", args=[access_request.pk])
    response = decide_from_detail(client, access_request, next_url=detail)
    assert response.status_code == 302 and response["Location"] == detail
    assert b"You cannot decide on a request you made." in client.get(detail).content


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/access/", ""])
def test_a_refused_decision_never_redirects_off_site_and_falls_back_to_the_queue(
    client, alice, entitlement, submit, next_url
):
    access_request = submit(entitlement)
    client.force_login(alice.user)
    response = decide_from_detail(client, access_request, next_url=next_url)
    assert response.status_code == 302 and response["Location"] == reverse("jit:approval_queue")
