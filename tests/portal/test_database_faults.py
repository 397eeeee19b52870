"""A database connection lost in the middle of a request is a 503 "try again", never a 500.

The transaction it was in is gone with it, so nothing is half-written: the person (or the API
client) is told to try again, and the page says so without needing the database to render.
"""

import pytest
from django.db import OperationalError, connection
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse
from django.utils.functional import SimpleLazyObject

from audit.models import AuditEvent, OutboxMessage
from governance.models import Grant
from jit.choices import RequestStatus
from jit.models import AccessRequest, Approval
from portal.faults import DatabaseUnavailableMiddleware


def _terminate_own_backend(*args, **kwargs) -> None:
    """The database drops this connection, as a failover or a restart would, half-way through the service."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")


@pytest.fixture
def connection_dropped_mid_approval(monkeypatch):
    # The approval row and the stage's outcome are written in the transaction by then; the grant is next.
    monkeypatch.setattr("jit.services.approvals._approve", _terminate_own_backend)


def _nothing_written(access_request: AccessRequest, events_before: int, outbox_before: int) -> None:
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    assert not Approval.objects.filter(request=access_request).exists()
    assert not Grant.objects.filter(entitlement=access_request.entitlement).exists()
    assert AuditEvent.objects.count() == events_before
    assert OutboxMessage.objects.count() == outbox_before


pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_a_connection_dropped_mid_approval_is_a_503_to_try_again_with_nothing_written(
    client, pending_request, connection_dropped_mid_approval, monkeypatch, htmx
):
    access_request, approver = pending_request
    client.force_login(approver)
    events, outbox = AuditEvent.objects.count(), OutboxMessage.objects.count()

    response = client.post(
        reverse("jit:approval_decide", args=[access_request.pk]),
        {"decision": "approve", "comment": "", "stage_position": 1},
        headers={"HX-Request": "true"} if htmx else {},
    )

    assert response.status_code == 503
    assert b"briefly unavailable" in response.content and b"try again" in response.content
    assert response["Retry-After"] == "5"
    _nothing_written(access_request, events, outbox)
    # and once the database is back, trying again approves it
    monkeypatch.undo()
    retry = client.post(
        reverse("jit:approval_decide", args=[access_request.pk]),
        {"decision": "approve", "comment": "", "stage_position": 1},
    )
    assert retry.status_code in (200, 302)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.APPROVED


def test_the_api_answers_a_dropped_connection_with_a_json_503_and_retry_after(
    client, pending_request, connection_dropped_mid_approval
):
    access_request, approver = pending_request
    client.force_login(approver)
    events, outbox = AuditEvent.objects.count(), OutboxMessage.objects.count()

    response = client.post(
        f"/api/v1/requests/{access_request.pk}/approve/", {"comment": "", "stage": 1}, content_type="application/json"
    )

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert "try again" in response.json()["detail"]
    assert response["Retry-After"] == "5"
    _nothing_written(access_request, events, outbox)


def test_the_503_page_renders_without_the_database(django_assert_num_queries):
    request = RequestFactory().post("/requests/1/decide/")
    request.user = SimpleLazyObject(lambda: pytest.fail("the 503 page looked the user up in the database"))
    middleware = DatabaseUnavailableMiddleware(lambda request: HttpResponse())

    with django_assert_num_queries(0):
        response = middleware.process_exception(request, OperationalError("server closed the connection"))

    assert response.status_code == 503
    assert b"The service is briefly unavailable" in response.content
    assert b'href="/static/' in response.content  # in the site's design: its stylesheets


def test_other_errors_are_not_taken_for_a_database_fault():
    middleware = DatabaseUnavailableMiddleware(lambda request: HttpResponse())

    assert middleware.process_exception(RequestFactory().get("/"), ValueError("a bug")) is None
