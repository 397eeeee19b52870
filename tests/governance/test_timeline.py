"""Timelines of an identity and an entitlement: every request, decision, grant, use and removal, in
time order, a page at a time at a constant query count, for those who may read the history (issue 16,
auditor point 2)."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags

from audit.choices import AuditAction
from audit.services import audit_event_record
from governance.choices import RiskTier
from governance.services.grants import grant_revoke
from jit.services.approvals import access_request_decide
from jit.services.requests import access_request_submit
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SystemFactory,
    with_role,
)

pytestmark = pytest.mark.django_db


def sentences(response) -> list[str]:
    html = response.content.decode()
    return [" ".join(strip_tags(s).split()) for s in re.findall(r'<p class="trail-sentence">(.*?)</p>', html, re.S)]


@pytest.fixture
def story(db):
    """A machine's life with one entitlement: asked for, approved, granted, used, revoked; and noise beside it."""
    olu = with_role(PersonFactory(name="Olu Owner"), "owner")
    bot = MachineFactory(name="billing-bot", owner=olu)
    other_bot = MachineFactory(name="other-bot", owner=olu)
    ledger = SystemFactory(name="Ledger", owner=olu)
    reader = EntitlementFactory(
        name="ledger-read", system=ledger, owner=olu, risk_tier=RiskTier.LOW,
        approval_stages=[{"approver": "group", "group": "approver", "quorum": 1}],
    )  # fmt: skip
    other = EntitlementFactory(name="ledger-write", system=ledger, owner=olu)
    ann = with_role(PersonFactory(name="Ann Approver"), "approver")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        request = access_request_submit(
            actor=olu.user, beneficiary_id=bot.pk, entitlement_id=reader.pk, justification="nightly reconciliation"
        )
    with time_machine.travel(start + timedelta(minutes=5), tick=False):
        access_request_decide(request_id=request.pk, approver=ann.user, decision="approve", comment="fine")
    request.refresh_from_db()
    grant = request.grant
    with time_machine.travel(start + timedelta(minutes=10), tick=False):
        audit_event_record(actor=None, action=AuditAction.GRANT_USAGE_RECORDED, target=grant,
                           data={"before": {"last_used_at": None}, "after": {"last_used_at": "2026-01-01T00:00:00Z"},
                                 "source": "import"})  # fmt: skip
    with time_machine.travel(start + timedelta(minutes=20), tick=False):
        grant_revoke(grant_id=grant.pk, actor=olu.user, reason="task done")
    # noise: another machine's request, another entitlement's request
    access_request_submit(actor=olu.user, beneficiary_id=other_bot.pk, entitlement_id=reader.pk, justification="x")
    access_request_submit(actor=olu.user, beneficiary_id=other_bot.pk, entitlement_id=other.pk, justification="x")
    return locals()


def test_an_identitys_timeline_tells_its_story_in_order_and_nothing_else(client, auditor, story):
    # given the machine's story (and other machines' and entitlements' events beside it)
    client.force_login(auditor)

    # when the auditor reads its timeline, oldest first
    url = reverse("governance:identity_timeline", args=[story["bot"].pk])
    response = client.get(url, {"order": "oldest"})

    # then every step is there, in order, as sentences, and only its own
    request, grant = story["request"], story["grant"]
    told = sentences(response)
    assert told[0] == f"Olu Owner requested ledger-read (Ledger) for billing-bot (request #{request.pk})"
    assert f"Ann Approver approved request #{request.pk} for ledger-read (Ledger)" in told
    assert f"The system recorded use of ledger-read (Ledger) by billing-bot (grant #{grant.pk})" in told
    assert f"Olu Owner asked to remove ledger-read (Ledger) from billing-bot (grant #{grant.pk})" in told
    assert told.index(f"Ann Approver approved request #{request.pk} for ledger-read (Ledger)") < told.index(
        f"The system recorded use of ledger-read (Ledger) by billing-bot (grant #{grant.pk})"
    )
    assert not any("other-bot" in line or "ledger-write" in line for line in told)
    seqs = [item.event.seq for item in response.context["events"]]
    assert seqs == sorted(seqs)
    # and newest first by default
    newest = [item.event.seq for item in client.get(url).context["events"]]
    assert newest == sorted(seqs, reverse=True)


@pytest.mark.parametrize("name", ["identity_timeline", "entitlement_timeline"])
def test_a_database_without_limits_in_a_union_reads_the_same_timeline(client, auditor, story, monkeypatch, name):
    # SQLite (`make run`) takes no LIMIT inside a UNION: there the timeline's branches are one query
    from django.db import connection

    client.force_login(auditor)
    url = reverse(f"governance:{name}", args=[story["bot" if name == "identity_timeline" else "reader"].pk])
    for order in ({}, {"order": "oldest"}):
        with_union = [item.event.seq for item in client.get(url, order).context["events"]]
        monkeypatch.setattr(connection.features, "supports_slicing_ordering_in_compound", False)
        with CaptureQueriesContext(connection) as ctx:
            without = [item.event.seq for item in client.get(url, order).context["events"]]
        monkeypatch.undo()
        assert without == with_union and len(with_union) > 3
        assert not any("UNION" in query["sql"] for query in ctx.captured_queries)


def test_an_entitlements_timeline_holds_every_holders_requests_and_grants(client, auditor, story):
    client.force_login(auditor)
    response = client.get(reverse("governance:entitlement_timeline", args=[story["reader"].pk]))
    told = " | ".join(sentences(response))
    assert "for billing-bot" in told and "for other-bot" in told  # both machines' requests for it
    assert f"grant #{story['grant'].pk}" in told
    assert "ledger-write" not in told
    assert "Timeline of ledger-read" in response.content.decode()


def test_who_may_read_a_timeline(client, story, admin_user, requester):
    bot, reader = story["bot"], story["reader"]
    identity_url = reverse("governance:identity_timeline", args=[bot.pk])
    entitlement_url = reverse("governance:entitlement_timeline", args=[reader.pk])
    # the owner of the machine and of the entitlement: it is their history
    client.force_login(story["olu"].user)
    assert client.get(identity_url).status_code == 200 and client.get(entitlement_url).status_code == 200
    # an admin reads every trail
    client.force_login(admin_user)
    assert client.get(identity_url).status_code == 200
    # an approver sees the inventory, not another's trail; a requester does not even see the machine
    client.force_login(story["ann"].user)
    assert client.get(identity_url).status_code == 403 and client.get(entitlement_url).status_code == 403
    client.force_login(requester)
    assert client.get(identity_url).status_code == 404
    assert client.get(reverse("governance:identity_timeline", args=[999999])).status_code == 404
    client.logout()
    assert client.get(identity_url).status_code == 302


def test_the_detail_page_links_to_the_timeline_for_those_who_may_read_it(client, auditor, story):
    bot = story["bot"]
    detail = reverse("governance:identity_detail", args=[bot.pk])
    timeline = reverse("governance:identity_timeline", args=[bot.pk])
    client.force_login(auditor)
    assert f'href="{timeline}"' in client.get(detail).content.decode()
    client.force_login(story["ann"].user)
    assert f'href="{timeline}"' not in client.get(detail).content.decode()


def test_a_timeline_is_paginated_at_a_constant_query_count(client, auditor, count_queries):
    # given a machine with one grant's worth of events, then with many more grants and requests
    olu = PersonFactory(name="Olu Owner")
    bot = MachineFactory(name="busy-bot", owner=olu)
    keeper = PersonFactory(name="Kim Keeper")
    ledger = SystemFactory(name="Ledger", owner=keeper)

    def more(n):
        for i in range(n):
            entitlement = EntitlementFactory(name=f"role-{n}-{i}", system=ledger, owner=keeper)
            grant = GrantFactory(identity=bot, entitlement=entitlement)
            for action in (AuditAction.GRANT_CREATED, AuditAction.GRANT_EXPIRED):
                audit_event_record(actor=olu.user, action=action, target=grant,
                                   data={"identity": bot.pk, "entitlement": entitlement.pk})  # fmt: skip

    more(1)
    client.force_login(auditor)
    url = reverse("governance:identity_timeline", args=[bot.pk])
    one = count_queries(lambda: client.get(url))
    short = client.get(url).context["page_obj"]
    more(30)
    many = count_queries(lambda: client.get(url))
    first = client.get(url, {"order": "oldest"}).context["page_obj"]
    next_page = count_queries(lambda: client.get(url, {"order": "oldest", "after": first.next_cursor}))

    # then each page costs the same, and the pages follow each other without a gap or a repeat; a
    # timeline that fits on one page is counted as it is read, without a COUNT
    assert many == next_page and one == many - 1
    assert short.count == len(short.object_list) > 0 and not short.has_next
    second = client.get(url, {"order": "oldest", "after": first.next_cursor}).context["page_obj"]
    assert first.count == 62 and len(first.object_list) == 50 and len(second.object_list) == 12
    seqs = [e.seq for e in first] + [e.seq for e in second]
    assert seqs == sorted(seqs) and len(set(seqs)) == 62
    assert not second.has_next and second.has_previous
    back = client.get(url, {"order": "oldest", "before": second.previous_cursor}).context["page_obj"]
    assert [e.seq for e in back] == [e.seq for e in first] and not back.has_previous
