"""My grants (time left, extend, release, do-not-renew), notifications and the dashboard. Ref: #4."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from governance.choices import GrantKind, GrantStatus
from governance.models import Notification
from jit.models import AccessRequest
from tests.factories.governance import EntitlementFactory, GrantFactory, PersonFactory

pytestmark = pytest.mark.django_db

NOON = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def frozen():
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


def jit_grant(identity, entitlement=None, **kw):
    kw.setdefault("expires_at", timezone.now() + timedelta(hours=2))
    return GrantFactory(identity=identity, entitlement=entitlement or EntitlementFactory(), kind=GrantKind.JIT, **kw)


def test_my_grants_shows_time_left_for_mine_and_my_bots_only(client, alice, alice_bot, frozen):
    # given
    mine = jit_grant(alice, EntitlementFactory(name="db-read"))
    bots = jit_grant(alice_bot, EntitlementFactory(name="queue-write"), expires_at=NOON + timedelta(minutes=30))
    jit_grant(PersonFactory(), EntitlementFactory(name="someone-elses"))
    client.force_login(alice.user)
    # when
    response = client.get(reverse("jit:my_grants"))
    # then
    assert [g.pk for g in response.context["groups"]["in_force"]] == [bots.pk, mine.pk]  # soonest first
    assert b"2 h 0 min" in response.content and b"30 min" in response.content
    assert b"someone-elses" not in response.content


def test_a_grant_past_its_expiry_shows_as_expired_before_the_sweep(client, alice, frozen):
    grant = jit_grant(alice, granted_at=NOON - timedelta(hours=3), expires_at=NOON - timedelta(minutes=1))
    client.force_login(alice.user)
    response = client.get(reverse("jit:my_grants"))
    groups = response.context["groups"]
    assert grant.status == GrantStatus.ACTIVE
    assert groups["in_force"] == [] and groups["ended"] == [grant]
    assert b'badge status-expired">Expired' in response.content
    assert reverse("jit:grant_release", args=[grant.pk]).encode() not in response.content


def test_release_asks_for_confirmation_then_releases(client, alice):
    # given
    grant = jit_grant(alice)
    client.force_login(alice.user)
    url = reverse("jit:grant_release", args=[grant.pk])
    # when
    confirm = client.get(url)
    response = client.post(url, {"reason": "done early"}, follow=True)
    # then
    grant.refresh_from_db()
    assert b"Yes, release it" in confirm.content
    assert grant.status == GrantStatus.REVOKING and grant.end_reason == "released"
    assert b"released" in response.content


def test_nobody_releases_or_extends_a_grant_that_is_not_theirs(client, alice):
    grant = jit_grant(PersonFactory())
    client.force_login(alice.user)
    assert client.post(reverse("jit:grant_release", args=[grant.pk])).status_code == 404
    assert client.get(reverse("jit:grant_extend", args=[grant.pk])).status_code == 404
    assert client.post(reverse("jit:grant_no_renew", args=[grant.pk])).status_code == 404
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE and not grant.no_renew


def test_extend_submits_a_renewal_request(client, alice, entitlement):
    grant = jit_grant(alice, entitlement)
    client.force_login(alice.user)
    response = client.post(
        reverse("jit:grant_extend", args=[grant.pk]), {"duration_hours": 4, "justification": "migration not done"}
    )
    renewal = AccessRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("jit:request_detail", args=[renewal.pk])
    assert renewal.renewal_of == grant and renewal.duration == timedelta(hours=4)


def test_extend_offers_only_the_room_left_under_the_maximum(client, alice, entitlement, frozen):
    grant = jit_grant(alice, entitlement, expires_at=timezone.now() + timedelta(days=6))
    client.force_login(alice.user)
    page = client.get(reverse("jit:grant_extend", args=[grant.pk]))
    # the limit in plain units (issue 16)
    limit = b"up to 1 day more, because the total is capped at 7 days from now and it has 6 days left"
    assert limit in page.content
    response = client.post(reverse("jit:grant_extend", args=[grant.pk]), {"duration_hours": 48, "justification": "x"})
    error = "At most 1 day more: the total is capped at 7 days from now and it has 6 days left."
    assert response.context["form"].errors["duration_hours"] == [error]
    assert response.content.decode().count(error) == 1  # shown once, beside the field
    assert not AccessRequest.objects.exists()


def test_extend_requires_a_reason_and_writes_nothing_without_one(client, alice, entitlement):
    grant = jit_grant(alice, entitlement)
    client.force_login(alice.user)
    response = client.post(reverse("jit:grant_extend", args=[grant.pk]), {"duration_hours": 4, "justification": ""})
    assert response.status_code == 200 and "justification" in response.context["form"].errors
    assert not AccessRequest.objects.exists()


def test_extend_warns_of_step_up_after_repeated_renewals(client, alice, entitlement, make_user):
    # given: the access was renewed three times lately
    make_user("approver1", roles=("approver",))
    now = timezone.now()
    previous = None
    for hours_ago in (12, 9, 6):
        previous = GrantFactory(
            identity=alice,
            entitlement=entitlement,
            kind=GrantKind.JIT,
            status=GrantStatus.EXPIRED,
            granted_at=now - timedelta(hours=hours_ago),
            expires_at=now - timedelta(hours=hours_ago - 3),
            renewal_of=previous,
        )
    current = jit_grant(alice, entitlement, granted_at=now - timedelta(hours=3), renewal_of=previous)
    client.force_login(alice.user)
    # when
    response = client.get(reverse("jit:grant_extend", args=[current.pk]))
    # then
    assert response.context["decision"].step_up
    assert b"Step-up approval" in response.content


def test_owner_marks_a_bots_grant_reviewed_do_not_renew(client, alice, alice_bot):
    grant = jit_grant(alice_bot)
    client.force_login(alice.user)
    page = client.get(reverse("jit:my_grants"))
    assert b"Reviewed: do not renew" in page.content
    response = client.post(reverse("jit:grant_no_renew", args=[grant.pk]))
    grant.refresh_from_db()
    assert response.status_code == 302 and grant.no_renew


def test_notifications_unread_first_count_in_the_nav_and_mark_all_read(client, alice):
    # given
    user = alice.user
    read = Notification.objects.create(recipient=user, kind="x", subject="old news", read_at=timezone.now())
    unread = Notification.objects.create(recipient=user, kind="x", subject="approve this")
    Notification.objects.create(recipient=PersonFactory().user, kind="x", subject="not yours")
    client.force_login(user)
    # when
    listed = client.get(reverse("jit:notification_list"))
    # then
    assert [n.pk for n in listed.context["page_obj"]] == [unread.pk, read.pk]
    assert b"Notifications (1)" in listed.content and b"not yours" not in listed.content
    # when
    client.post(reverse("jit:notifications_read"))
    # then
    assert not Notification.objects.filter(recipient=user, read_at__isnull=True).exists()
    assert Notification.objects.filter(read_at__isnull=True).count() == 1  # never another's
    assert b"Notifications (" not in client.get(reverse("jit:notification_list")).content


def test_dashboard_panels_have_empty_states_and_approvals_only_for_approvers(client, alice, make_user):
    client.force_login(alice.user)
    response = client.get(reverse("dashboard"))
    for text in (b"No access in force", b"No pending requests", b"all caught up"):
        assert text in response.content
    assert b"My approvals to do" not in response.content  # a plain requester approves nothing
    client.force_login(make_user(roles=("approver",)))
    assert b"Nothing waits for your approval" in client.get(reverse("dashboard")).content


def test_a_system_owner_sees_the_access_to_put_in_place_by_hand_on_the_dashboard(client, alice, entitlement):
    waiting = GrantFactory(
        identity=alice,
        entitlement=entitlement,
        kind=GrantKind.JIT,
        status=GrantStatus.PENDING_PROVISION,
        expires_at=None,
        granted_at=None,
        approved_duration=timedelta(hours=2),
    )
    client.force_login(entitlement.system.owner.user)
    page = client.get(reverse("dashboard"))
    assert b"Access for you to put in place or remove" in page.content
    assert reverse("governance:grant_detail", args=[waiting.pk]).encode() in page.content
    client.force_login(alice.user)
    assert b"Access for you to put in place" not in client.get(reverse("dashboard")).content


def test_dashboard_shows_grants_with_time_left_requests_and_approvals(client, alice, entitlement, submit, frozen):
    # given
    jit_grant(alice, EntitlementFactory(name="db-read"))
    access_request = submit(entitlement)
    # when
    client.force_login(alice.user)
    requester_view = client.get(reverse("dashboard"))
    client.force_login(entitlement.owner.user)
    approver_view = client.get(reverse("dashboard"))
    # then
    assert b"db-read" in requester_view.content and b"2 h 0 min left" in requester_view.content
    assert str(access_request).encode() in requester_view.content
    assert [r.pk for r in approver_view.context["approvals_todo"]] == [access_request.pk]
    assert b"Approval needed" in approver_view.content  # the unread notification


def test_the_dashboard_invites_only_those_who_may_register_a_machine(client, make_user, alice):
    from django.contrib.auth.models import Group

    auditor = PersonFactory(name="Ada Auditor")
    auditor.user.groups.set([Group.objects.get(name="auditor")])
    client.force_login(auditor.user)
    assert b"Register one" not in client.get(reverse("dashboard")).content
    client.force_login(alice.user)
    assert b"Register one" in client.get(reverse("dashboard")).content
