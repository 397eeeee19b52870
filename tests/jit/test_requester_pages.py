"""The requester's pages: access ready to activate, duration presets and the time zone, the extend
page's live preview, notifications that lead to their action, and a request's history in words. Ref: #16."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from governance.choices import GrantKind, RiskTier
from governance.models import Notification
from jit.choices import RequestStatus
from jit.models import AccessRequest
from jit.services.approvals import access_request_decide
from jit.services.lifecycle import grant_warn_expiry
from tests.factories.governance import EntitlementFactory, GrantFactory, SystemFactory

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


@pytest.fixture
def approved_high(alice, submit):
    """High-risk access approved for Alice: it waits for her to activate it within its window."""
    shell = EntitlementFactory(name="prod-shell", risk_tier=RiskTier.HIGH, system=SystemFactory(name="Prod"))
    access_request = submit(shell)
    access_request_decide(request_id=access_request.pk, approver=shell.owner.user, decision="approve", stage_position=1)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.APPROVED and access_request.grant_id is None
    return access_request


def test_approved_access_waiting_for_activation_is_shown_and_activated_in_one_click(client, alice, approved_high):
    client.force_login(alice.user)
    # then: on the dashboard and in my grants, with the window's time left
    for url in (reverse("dashboard"), reverse("jit:my_grants")):
        body = client.get(url).content.decode()
        assert "Ready to activate" in body and re.search(r"ready to activate, (7 h 59|8 h 0) min left", body)
        assert reverse("jit:request_activate", args=[approved_high.pk]) in body
    # when: one click, from the dashboard
    response = client.post(
        reverse("jit:request_activate", args=[approved_high.pk]), {"next": reverse("dashboard")}, follow=True
    )
    # then: back on the dashboard, activated, and the window text is gone everywhere
    approved_high.refresh_from_db()
    assert approved_high.grant_id is not None
    assert response.redirect_chain[-1][0] == reverse("dashboard")
    assert "prod-shell activated" in response.content.decode()
    for url in (reverse("dashboard"), reverse("jit:my_grants"), reverse("jit:request_detail", args=[approved_high.pk])):
        body = client.get(url).content.decode()
        assert "Ready to activate" not in body and "left to activate" not in body and "Activate by" not in body


def test_ready_to_activate_is_not_shown_to_a_stranger(client, approved_high):
    from tests.factories.governance import PersonFactory

    client.force_login(PersonFactory().user)
    assert "Ready to activate" not in client.get(reverse("dashboard")).content.decode()
    assert client.post(reverse("jit:request_activate", args=[approved_high.pk])).status_code == 404


def test_duration_presets_go_up_to_the_maximum_and_a_preset_wins(client, alice, entitlement):
    # given: db-write is medium risk, at most 7 days, 1 day by default
    client.force_login(alice.user)
    url = reverse("jit:request_create", args=[entitlement.pk])
    form = client.get(url).context["form"]
    assert [label for _, label in form.fields["duration_preset"].choices] == [
        "1 hour",
        "4 hours",
        "1 day",
        "7 days (the maximum)",
        "Other",
    ]
    assert form["duration_preset"].value() == "24"
    # when: a preset is picked, whatever the Other box still says
    data = {"beneficiary": alice.pk, "duration_preset": "4", "duration_hours": "999", "justification": "x"}
    assert client.post(url, data).status_code == 302
    # then
    assert AccessRequest.objects.get().duration == timedelta(hours=4)


def test_the_start_is_read_in_the_browsers_time_zone(client, alice, entitlement):
    client.force_login(alice.user)
    url = reverse("jit:request_create", args=[entitlement.pk])
    start = (timezone.now() + timedelta(days=2)).astimezone(timezone.get_fixed_timezone(0)).replace(microsecond=0)
    typed = start.strftime("%Y-%m-%dT%H:%M")
    data = {"beneficiary": alice.pk, "duration_preset": "1", "justification": "x", "start_at": typed}
    assert client.post(url, {**data, "time_zone": "Asia/Tokyo"}).status_code == 302
    # Tokyo is 9 hours ahead of UTC: 10:00 there is 01:00 UTC
    assert AccessRequest.objects.get().start_at == start.replace(second=0) - timedelta(hours=9)
    assert client.session["time_zone"] == "Asia/Tokyo"


def test_the_extend_preview_follows_the_duration_and_says_the_limit_once(client, alice, entitlement):
    grant = GrantFactory(
        identity=alice, entitlement=entitlement, kind=GrantKind.JIT, expires_at=timezone.now() + timedelta(days=6)
    )
    client.force_login(alice.user)
    url = reverse("jit:grant_extend", args=[grant.pk])
    page = client.get(url).content.decode()
    assert "because the total is capped at 7 days from now" in page and "hx-post" in page
    # when: the duration changes (htmx posts a preview: nothing is submitted)
    preview = client.post(url, {"_preview": "1", "duration_preset": "other", "duration_hours": "3"}, headers=HTMX)
    too_long = client.post(url, {"_preview": "1", "duration_preset": "other", "duration_hours": "48"}, headers=HTMX)
    # then
    assert preview.status_code == 200 and "<html" not in preview.content.decode()
    assert "3 hours" in preview.content.decode()
    assert "would be refused" in too_long.content.decode()
    assert "disabled" not in too_long.content.decode()  # the form can put it right: the button stays
    assert not AccessRequest.objects.exists()


def test_notifications_are_in_time_order_name_the_system_lead_to_extend_and_mark_read_when_opened(
    client, alice, entitlement
):
    # given: an expiry warning, then an older unread notice
    grant = GrantFactory(
        identity=alice, entitlement=entitlement, kind=GrantKind.JIT, expires_at=timezone.now() + timedelta(hours=1)
    )
    with time_machine.travel(timezone.now() - timedelta(hours=2)):
        older = Notification.objects.create(recipient=alice.user, kind="x", subject="older", key="x:1")
    grant_warn_expiry(grant_id=grant.pk)
    warning = Notification.objects.get(kind="grant.expiring")
    client.force_login(alice.user)
    # when
    listed = client.get(reverse("jit:notification_list"))
    # then
    assert [n.pk for n in listed.context["page_obj"]] == [warning.pk, older.pk]
    body = listed.content.decode()
    assert "db-write on Payments DB" in warning.subject and "db-write on Payments DB" in body
    open_url = f"{reverse('jit:notification_list')}?open={warning.pk}"
    assert f'href="{open_url}"' in body and ">Extend<" in body
    # when: it is opened
    opened = client.get(open_url)
    # then: read, and at the extend page
    warning.refresh_from_db()
    assert warning.read_at is not None and opened["Location"] == reverse("jit:grant_extend", args=[grant.pk])
    older.refresh_from_db()
    assert older.read_at is None
    # nobody opens another's
    other = Notification.objects.create(recipient=entitlement.owner.user, kind="x", subject="theirs", link="/")
    assert client.get(f"{reverse('jit:notification_list')}?open={other.pk}").status_code == 404


def test_the_request_page_links_its_ids_and_tells_its_history_in_words(client, alice, entitlement, submit):
    # given: submitted, stage 1 approved with a comment
    access_request = submit(entitlement)
    access_request_decide(
        request_id=access_request.pk,
        approver=entitlement.owner.user,
        decision="approve",
        comment="ok for the incident",
        stage_position=1,
    )
    client.force_login(alice.user)
    # when
    body = client.get(reverse("jit:request_detail", args=[access_request.pk])).content.decode()
    # then: sentences with names, not action codes or raw data
    assert "<strong>Alice</strong> asked for db-write on Payments DB for Alice, for 2 hours" in body
    assert "<strong>Entowner</strong> approved stage 1" in body and "<q>ok for the incident</q>" in body
    assert "<pre>" not in body and "<code>request." not in body
    assert reverse("governance:entitlement_detail", args=[entitlement.pk]) in body


def test_an_automatic_approval_says_so_in_words(client, alice, alice_bot, submit):
    auto = EntitlementFactory(name="logs-read", risk_tier=RiskTier.LOW, auto_approve_machines=True)
    approved = submit(auto, beneficiary=alice_bot, duration=timedelta(minutes=30))
    assert approved.status == RequestStatus.APPROVED
    client.force_login(alice.user)
    body = client.get(reverse("jit:request_detail", args=[approved.pk])).content.decode()
    assert "approved it automatically by policy" in body and "approved automatically by policy</strong>" in body
    assert reverse("governance:grant_detail", args=[approved.grant_id]) in body
    listed = client.get(reverse("jit:request_list")).content.decode()
    assert "automatically by policy" in listed


def test_ready_to_activate_and_notifications_keep_their_query_count(client, alice, submit, count_queries):
    """One row or several: the same number of queries (no N+1) on the dashboard, my grants and notifications."""

    def approved_one():
        shell = EntitlementFactory(risk_tier=RiskTier.HIGH, system=SystemFactory())
        made = submit(shell)
        access_request_decide(request_id=made.pk, approver=shell.owner.user, decision="approve", stage_position=1)
        grant = GrantFactory(identity=alice, kind=GrantKind.JIT, entitlement=EntitlementFactory(system=SystemFactory()))
        for key in (f"request:{made.pk}:test", f"grant:{grant.pk}:test"):
            Notification.objects.create(recipient=alice.user, kind="x", subject=key, key=key, link="/access/grants/")

    # given: one of each
    approved_one()
    client.force_login(alice.user)
    urls = [reverse("dashboard"), reverse("jit:my_grants"), reverse("jit:notification_list")]
    one = [count_queries(lambda url=url: client.get(url)) for url in urls]
    # when: four more of each
    for _ in range(4):
        approved_one()
    many = [count_queries(lambda url=url: client.get(url)) for url in urls]
    # then
    assert len(client.get(urls[1]).context["ready_to_activate"]) == 5
    assert one == many, dict(zip(urls, zip(one, many, strict=True), strict=True))
