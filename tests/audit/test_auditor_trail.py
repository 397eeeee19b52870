"""The audit trail reads as sentences with names and links, and its filters answer exactly (issue 16,
auditor point 1): sign-ins can be hidden, actions are grouped, times are the viewer's, targets exact."""

import re
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import time_machine
from django.urls import reverse
from django.utils.html import strip_tags

from audit.choices import AuditAction
from audit.filters import action_choices
from audit.models import AuditEvent
from audit.sentences import SENTENCES, describe
from audit.services import Target, audit_event_record
from governance.choices import RiskTier
from jit.services.approvals import access_request_decide
from jit.services.requests import access_request_submit
from tests.factories.governance import EntitlementFactory, GrantFactory, PersonFactory, SystemFactory

pytestmark = pytest.mark.django_db


def sentences(response) -> list[str]:
    html = response.content.decode()
    return [" ".join(strip_tags(s).split()) for s in re.findall(r'<p class="trail-sentence">(.*?)</p>', html, re.S)]


@pytest.fixture
def approved(db):
    """Olu Owner approved Riya's request for s3-logs-reader (AWS production), through the services."""
    olu = PersonFactory(name="Olu Owner")
    riya = PersonFactory(name="Riya Requester")
    logs = EntitlementFactory(
        name="s3-logs-reader", owner=olu, system=SystemFactory(name="AWS production"), risk_tier=RiskTier.LOW
    )
    request = access_request_submit(
        actor=riya.user, beneficiary_id=riya.pk, entitlement_id=logs.pk, justification="Read <b>the</b> logs"
    )
    access_request_decide(request_id=request.pk, approver=olu.user, decision="approve", comment="ok")
    return SimpleNamespace(olu=olu, riya=riya, logs=logs, request=request)


def test_a_decision_reads_as_a_sentence_whose_objects_are_links(client, auditor, approved):
    # given Olu Owner approved Riya's request
    client.force_login(auditor)

    # when the auditor reads the approvals in the trail
    response = client.get(reverse("audit:event_list"), {"action": "request.approved"})

    # then the event is a sentence with the people's and objects' names, each a link to its page
    assert sentences(response) == [
        f"Olu Owner approved request #{approved.request.pk} for s3-logs-reader (AWS production)"
    ]
    html = response.content.decode()
    for url in (
        reverse("governance:identity_detail", args=[approved.olu.pk]),
        reverse("jit:request_detail", args=[approved.request.pk]),
        reverse("governance:entitlement_detail", args=[approved.logs.pk]),
    ):
        assert f'href="{url}"' in html


def test_the_data_is_labelled_fields_with_names_not_ids(client, auditor, approved):
    client.force_login(auditor)
    response = client.get(reverse("audit:event_list"), {"action": "request.submitted"})
    (event,) = response.context["events"]
    # the sentence names the beneficiary (the requester, so "themself"); the fields are labelled, in words
    assert sentences(response) == [
        f"Riya Requester requested s3-logs-reader (AWS production) for themself (request #{approved.request.pk})"
    ]
    fields = {field.label: strip_tags(field.value) for field in event.fields}
    assert fields["Justification"] == "Read &lt;b&gt;the&lt;/b&gt; logs"  # shown as text, never as markup
    assert "Read &lt;b&gt;the&lt;/b&gt; logs" in response.content.decode()
    assert fields["Duration"] == "1 week" and "Beneficiary" not in fields  # its maximum, in words
    assert f'"beneficiary": {approved.riya.pk}' not in response.content.decode()  # no raw data


def test_ids_in_the_data_are_named_and_a_vanished_one_says_so():
    grant = GrantFactory(identity__name="billing-bot", entitlement__name="db-read", entitlement__system__name="Ledger")
    event = audit_event_record(
        actor=None, action=AuditAction.IDENTITY_OFFBOARDED, target=grant.identity,
        data={"grants_revoked": [grant.pk, 999999], "reason": "left"},
    )  # fmt: skip
    (described,) = describe([event])
    fields = {field.label: strip_tags(field.value) for field in described.fields}
    assert strip_tags(described.sentence) == "The system offboarded billing-bot"
    assert fields == {"Grants revoked": f"grant #{grant.pk}, grant #999999 (deleted)", "Reason": "left"}


def test_an_action_without_a_sentence_reads_as_its_label(monkeypatch):
    # given an action added later, with no sentence yet (and one whose sentence names what the data lacks)
    monkeypatch.delitem(SENTENCES, "grant.connector_answered")
    answered = audit_event_record(
        actor=None, action=AuditAction.GRANT_CONNECTOR_ANSWERED, target=Target("t.thing", "4", "Thing 4")
    )
    retried = audit_event_record(actor=None, action=AuditAction.OUTBOX_RETRIED, target=None, data={})
    # then each still reads: who, the action's label, what it was about
    assert [strip_tags(d.sentence) for d in describe([answered, retried])] == [
        "The system: target answered the connector, Thing 4",
        "The system: outbox message retried",
    ]


def test_sign_ins_can_be_hidden_but_failures_stay(client, auditor, make_user):
    # given sign-ins, a sign-out, a failed sign-in and a decision
    alice = make_user("alice")
    audit_event_record(actor=alice, action=AuditAction.USER_LOGGED_IN, target=alice)
    audit_event_record(actor=alice, action=AuditAction.USER_LOGGED_OUT, target=alice)
    audit_event_record(actor=None, action=AuditAction.USER_LOGIN_FAILED, data={"username": "mallory"})
    audit_event_record(actor=alice, action=AuditAction.ROLE_ASSIGNED, target=alice, data={"group": "requester"})
    client.force_login(auditor)

    # when the auditor hides sign-ins
    response = client.get(reverse("audit:event_list"), {"hide_sign_ins": "on"})

    # then the comings and goings are gone, the failure and the decision stay
    actions = {item.event.action for item in response.context["events"]}
    assert actions == {"user.login_failed", "role.assigned"}
    # and asking for sign-ins by name still shows them
    named = client.get(reverse("audit:event_list"), {"hide_sign_ins": "on", "action": "user.logged_in"})
    assert {item.event.action for item in named.context["events"]} == {"user.logged_in"}


def test_actions_are_grouped_by_area_and_a_whole_area_can_be_chosen(client, auditor, approved):
    client.force_login(auditor)
    groups = dict(action_choices())
    assert {"Requests and approvals", "Grants", "Break-glass", "Sign-ins, logins and roles"} <= set(groups)
    assert ("request.approved", "Request approved") in groups["Requests and approvals"]
    every_action = [value for options in groups.values() for value, _label in options if not value.startswith("area:")]
    assert sorted(every_action) == sorted(AuditAction.values)  # each action once, in exactly one group
    page = client.get(reverse("audit:event_list")).content.decode()
    assert '<optgroup label="Requests and approvals">' in page

    response = client.get(reverse("audit:event_list"), {"action": "area:requests"})
    actions = {item.event.action for item in response.context["events"]}
    assert actions and all(a.startswith("request.") for a in actions)


def _at(moment: datetime, label: str) -> None:
    with time_machine.travel(moment, tick=False):
        audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD, target=Target("t.x", label, label))


def test_times_are_read_and_shown_in_the_viewers_time_zone(client, auditor, settings):
    # given events either side of 09:00 in Tokyo (00:00 UTC), the portal itself on UTC
    settings.TIME_ZONE = "UTC"
    _at(datetime(2026, 3, 9, 23, 59, tzinfo=UTC), "before")  # 08:59 in Tokyo
    _at(datetime(2026, 3, 10, 0, 0, 30, tzinfo=UTC), "at-nine")  # 09:00:30 in Tokyo
    _at(datetime(2026, 3, 10, 0, 1, tzinfo=UTC), "after")  # 09:01 in Tokyo
    client.force_login(auditor)
    client.cookies["tz"] = "Asia/Tokyo"  # what static/js/browser-time-zone.js stores

    # when the auditor asks for 09:00 to 09:00 in their browser's zone
    response = client.get(
        reverse("audit:event_list"), {"action": "outbox.dead", "since": "2026-03-10T09:00", "until": "2026-03-10T09:00"}
    )

    # then that minute is found, and times are shown in their zone
    assert [item.event.target_id for item in response.context["events"]] == ["at-nine"]
    html = response.content.decode()
    assert "2026-03-10 09:00:30 JST" in html and "Times are in Asia/Tokyo" in html
    # a zone in the link (the form's hidden field) wins over the cookie: the link means the same to everyone
    linked = client.get(
        reverse("audit:event_list"), {"action": "outbox.dead", "since": "2026-03-10T00:01", "tz": "UTC"}
    )
    assert [item.event.target_id for item in linked.context["events"]] == ["after"]
    assert 'data-zone-fixed="1"' in linked.content.decode()
    # an unknown zone is ignored, never an error
    client.cookies["tz"] = "Mars/Olympus"
    assert client.get(reverse("audit:event_list")).context["time_zone"] == "UTC"


def test_a_date_alone_still_means_the_whole_day(client, auditor):
    _at(datetime(2026, 3, 10, 23, 59, tzinfo=UTC), "late")
    _at(datetime(2026, 3, 11, 0, 0, tzinfo=UTC), "next-day")
    client.force_login(auditor)
    response = client.get(reverse("audit:event_list"), {"action": "outbox.dead", "until": "2026-03-10", "tz": "UTC"})
    assert [item.event.target_id for item in response.context["events"]] == ["late"]
    assert 'value="2026-03-10T23:59"' in response.content.decode()  # shown in the datetime-local input


def test_the_target_search_is_exact(client, auditor):
    # given events about "db", "db-admin" and requests #1 and #10-like numbers
    ledger = SystemFactory(name="Ledger")
    db = EntitlementFactory(name="db", system=ledger)
    db_admin = EntitlementFactory(name="db-admin", system=ledger)
    for entitlement in (db, db_admin):
        audit_event_record(actor=None, action=AuditAction.ENTITLEMENT_UPDATED, target=entitlement, data={})
    client.force_login(auditor)

    def found(text):
        response = client.get(reverse("audit:event_list"), {"target": text})
        return {(item.event.target_type, item.event.target_id) for item in response.context["events"]}

    mine = {("governance.entitlement", str(db.pk))}
    assert found("db") == mine  # not db-admin
    assert found("DB") == mine  # case aside
    assert found("db (Ledger)") == mine  # as the trail writes it
    assert found("Ledger / db") == mine
    assert found(f"governance.entitlement:{db.pk}") == mine
    assert found("d") == set()  # never a part of a name
    grant = GrantFactory()
    audit_event_record(actor=None, action=AuditAction.GRANT_EXPIRED, target=grant)
    audit_event_record(
        actor=None, action=AuditAction.GRANT_EXPIRED, target=Target("governance.grant", f"{grant.pk}0", "x")
    )
    assert found(f"grant #{grant.pk}") == {("governance.grant", str(grant.pk))}


def test_each_target_links_to_every_event_about_it_and_the_same_operation(client, auditor, approved):
    client.force_login(auditor)
    html = client.get(reverse("audit:event_list"), {"action": "request.approved"}).content.decode()
    assert f'href="/audit/?target=jit.accessrequest%3A{approved.request.pk}"' in html


def test_the_page_costs_the_same_queries_for_one_event_of_each_kind_as_for_many(client, auditor, count_queries):
    # given one event of each kind the trail names (person, grant, request...), then many more of each
    def make_events():
        grant = GrantFactory()
        person = PersonFactory()
        request = access_request_submit(
            actor=person.user, beneficiary_id=person.pk, entitlement_id=EntitlementFactory().pk, justification="x"
        )
        audit_event_record(actor=person.user, action=AuditAction.GRANT_USAGE_RECORDED, target=grant,
                           data={"identity": grant.identity_id, "entitlement": grant.entitlement_id})  # fmt: skip
        audit_event_record(
            actor=None, action=AuditAction.IDENTITY_OFFBOARDED, target=person, data={"grants_revoked": [grant.pk]}
        )
        return request

    make_events()
    client.force_login(auditor)
    one = count_queries(lambda: client.get(reverse("audit:event_list")))
    for _ in range(5):
        make_events()
    many = count_queries(lambda: client.get(reverse("audit:event_list")))
    assert AuditEvent.objects.count() > 15
    assert one == many

    # and a target search by name adds a constant few, not one per event
    searched = count_queries(lambda: client.get(reverse("audit:event_list"), {"target": "nobody by this name"}))
    assert searched <= one + 12


def test_export_keeps_the_raw_evidence_and_a_zone_does_not_break_it(client, auditor, approved):
    client.force_login(auditor)
    response = client.get(
        reverse("audit:event_export"), {"since": "2020-01-01T00:00", "tz": "Europe/Berlin", "hide_sign_ins": "on"}
    )
    body = b"".join(response.streaming_content).decode()
    assert response.status_code == 200 and "request.approved" in body and "user.logged_in" not in body


def test_the_trail_and_its_links_stay_closed_to_others(client, approved):
    client.force_login(approved.olu.user)
    assert client.get(reverse("audit:event_list")).status_code == 403


@pytest.mark.parametrize("moment", ["2026-13-01T10:00", "2026-01-01T25:00", "yesterday", "2026-01-01T10:00+02:00"])
def test_a_moment_that_does_not_parse_is_an_error_beside_its_field(client, auditor, moment):
    client.force_login(auditor)
    response = client.get(reverse("audit:event_list"), {"since": moment})
    assert "since" in response.context["filter"].errors and b'id="id_since_error"' in response.content


def test_the_end_before_the_start_is_refused_to_the_minute(client, auditor):
    client.force_login(auditor)
    response = client.get(reverse("audit:event_list"), {"since": "2026-03-10T10:00", "until": "2026-03-10T09:59"})
    assert response.context["filter"].errors["until"] == ["The end date is before the start date."]
    ok = client.get(reverse("audit:event_list"), {"since": "2026-03-10T10:00", "until": "2026-03-10T10:00"})
    assert not ok.context["filter"].errors


def test_pages_follow_the_chain_and_the_total_is_counted_up_to_a_cap(client, auditor, monkeypatch):
    # given 120 events, a page of 50 and a count that stops at 100
    import audit.trail_pages as pages

    monkeypatch.setattr(pages, "COUNT_CAP", 100)
    monkeypatch.setattr(pages.trail_page, "__kwdefaults__", {"size": 50, "count_cap": 100})
    for n in range(120):
        audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD, target=Target("t.x", str(n), str(n)))
    client.force_login(auditor)
    url = reverse("audit:event_list")

    # when the auditor walks to older events and back
    first = client.get(url, {"action": "outbox.dead"})
    page = first.context["page_obj"]
    second = client.get(url, {"action": "outbox.dead", "after": page.next_cursor}).context["page_obj"]
    third = client.get(url, {"action": "outbox.dead", "after": second.next_cursor}).context["page_obj"]
    back = client.get(url, {"action": "outbox.dead", "before": second.previous_cursor}).context["page_obj"]

    # then pages hold every event once, newest first, and the filters stay in the links
    seqs = [e.seq for e in [*page, *second, *third]]
    assert len(seqs) == len(set(seqs)) == 120 and seqs == sorted(seqs, reverse=True)
    assert (page.has_previous, page.has_next, third.has_next) == (False, True, False)
    assert [e.seq for e in back] == [e.seq for e in page]
    assert (page.count, page.count_capped) == (100, True)
    assert f"action=outbox.dead&amp;after={page.next_cursor}" in first.content.decode()
    assert "50 shown of 100+" in first.content.decode()
    # a cursor that is not a number is ignored, never an error
    assert client.get(url, {"after": "x'; drop"}).status_code == 200
