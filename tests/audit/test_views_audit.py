import csv
import io
import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.choices import AuditAction
from audit.filters import AuditEventFilter
from audit.models import AuditEvent
from audit.services import Target, audit_event_record, data_json

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(make_user):
    alice = make_user("alice")
    audit_event_record(actor=alice, action=AuditAction.USER_LOGGED_IN, target=alice)
    audit_event_record(
        actor=None, action=AuditAction.GRANT_EXPIRED, target=Target("governance.grant", "7", "=cmd|' /C calc'!A0")
    )
    return alice


@pytest.mark.parametrize("url_name", ["audit:event_list", "audit:event_export"])
def test_non_auditors_are_refused(client, requester, events, url_name):
    client.force_login(requester)
    assert client.get(reverse(url_name)).status_code == 403


@pytest.mark.parametrize("url_name", ["audit:event_list", "audit:event_export"])
def test_anonymous_is_sent_to_login(client, url_name):
    response = client.get(reverse(url_name))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_auditor_searches_by_action_and_actor(client, auditor, events):
    client.force_login(auditor)
    response = client.get(reverse("audit:event_list"), {"action": "grant.expired"})
    assert response.status_code == 200
    assert [e.action for e in response.context["page_obj"]] == ["grant.expired"]
    # a part of the login finds its actor (a token no generated name contains: Faker's may hold "alic")
    response = client.get(reverse("audit:event_list"), {"actor": "lic"})
    assert "alice" in {e.actor_label for e in response.context["page_obj"]}
    response = client.get(reverse("audit:event_list"), {"actor": "alicf"})
    assert not response.context["page_obj"]


def test_target_search_by_type_and_id(client, auditor, events):
    client.force_login(auditor)
    response = client.get(reverse("audit:event_list"), {"target": "governance.grant:7"})
    assert [e.target_id for e in response.context["page_obj"]] == ["7"]


def test_empty_result_shows_empty_state(client, auditor, events):
    client.force_login(auditor)
    response = client.get(reverse("audit:event_list"), {"action": "request.denied"})
    assert b"No audit events match" in response.content


def test_list_query_count_does_not_grow_with_rows(client, auditor, count_queries):
    client.force_login(auditor)
    audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD)
    one_row = count_queries(lambda: client.get(reverse("audit:event_list")))
    for _ in range(30):
        audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD)
    assert count_queries(lambda: client.get(reverse("audit:event_list"))) == one_row


def test_export_streams_csv_with_formula_cells_neutralised(client, auditor, events):
    client.force_login(auditor)
    response = client.get(reverse("audit:event_export"))
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content).decode()
    lines = body.strip().splitlines()
    assert lines[0].startswith("seq,occurred_at,actor_type,actor")
    assert "'=cmd|" in body and ",=cmd|" not in body
    # filtering applies to the export too
    response = client.get(reverse("audit:event_export"), {"action": "user.logged_in", "actor": "alice"})
    assert len(b"".join(response.streaming_content).decode().strip().splitlines()) == 2


def test_export_itself_is_audited(client, auditor, events):
    from audit.models import AuditEvent

    client.force_login(auditor)
    b"".join(client.get(reverse("audit:event_export"), {"action": "grant.expired"}).streaming_content)
    event = AuditEvent.objects.get(action="export.downloaded")
    assert event.actor_label == auditor.username and event.data["filters"] == {"action": "grant.expired"}


def test_bad_filters_are_shown_beside_their_fields_and_export_nothing(client, auditor):
    client.force_login(auditor)
    listed = client.get(reverse("audit:event_list"), {"since": "2026-11-20", "until": "2026-11-01"})
    assert listed.context["filter"].errors["until"] == ["The end date is before the start date."]
    assert b"Fix the filters marked above" in listed.content
    exported = client.get(reverse("audit:event_export"), {"since": "2026-13-45"})
    assert exported.status_code == 400 and b"Nothing exported: fix the filters" in exported.content
    assert b'id="id_since_error"' in exported.content
    assert b'action="/audit/"' in exported.content  # fixing the filters searches; it does not export
    assert not AuditEvent.objects.filter(action=AuditAction.EXPORT_DOWNLOADED).exists()


def test_a_page_past_the_end_shows_the_last_page(client, auditor):
    client.force_login(auditor)
    assert client.get(reverse("audit:event_list"), {"page": 9999}).status_code == 200


def test_export_writes_data_as_the_json_its_hash_covers(client, auditor):
    data = {"file_name": "people.csv", "rows": 3, "dry_run": False, "by": {"kind": "human", "n": [1, 2]}}
    event = audit_event_record(actor=None, action=AuditAction.IMPORT_APPLIED, data=data)
    client.force_login(auditor)
    response = client.get(reverse("audit:event_export"), {"action": "import.applied"})
    (row,) = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    assert json.loads(row["data"]) == data
    assert row["data"] == data_json(event.data)


def _recorded_at(moment: datetime, label: str) -> None:
    with time_machine.travel(moment, tick=False):
        audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD, target=Target("t", label, label))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"since": "2026-03-10"}, ["berlin-10th-early", "berlin-10th-late"]),
        ({"until": "2026-03-09"}, ["berlin-9th"]),
        ({"since": "2026-03-10", "until": "2026-03-10"}, ["berlin-10th-early", "berlin-10th-late"]),
        ({"since": "0001-01-01", "until": "9999-12-31"}, ["berlin-9th", "berlin-10th-early", "berlin-10th-late"]),
    ],
)
def test_date_filters_take_whole_days_in_the_portals_time_zone(client, auditor, settings, query, expected):
    settings.TIME_ZONE = "Europe/Berlin"  # UTC+1 in March
    _recorded_at(datetime(2026, 3, 9, 22, 30, tzinfo=UTC), "berlin-9th")  # 23:30 on the 9th in Berlin
    _recorded_at(datetime(2026, 3, 9, 23, 30, tzinfo=UTC), "berlin-10th-early")  # 00:30 on the 10th
    _recorded_at(datetime(2026, 3, 10, 22, 59, tzinfo=UTC), "berlin-10th-late")  # 23:59 on the 10th
    client.force_login(auditor)
    response = client.get(reverse("audit:event_list"), {"action": "outbox.dead", **query})
    assert sorted(e.target_id for e in response.context["page_obj"]) == sorted(expected)


def test_date_filters_compare_the_indexed_time_column_as_a_range():
    filterset = AuditEventFilter({"since": "2026-03-01", "until": "2026-03-31"}, queryset=AuditEvent.objects.all())
    with CaptureQueriesContext(connection) as queries:
        list(filterset.qs)
    sql = queries.captured_queries[-1]["sql"]
    assert '"occurred_at" >= ' in sql and '"occurred_at" < ' in sql
    assert "::date" not in sql and "AT TIME ZONE" not in sql.upper() and "django_datetime_cast_date" not in sql
