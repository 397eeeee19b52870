"""The approver's queue and in-place decisions (htmx). Ref: #4."""

from datetime import timedelta

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from governance.choices import GrantKind, GrantStatus, RiskTier
from jit.choices import RequestStatus
from jit.models import Approval
from tests.factories.governance import EntitlementFactory, GrantFactory, PersonFactory, SodRuleFactory

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def decide(client, access_request, decision="approve", *, stage, comment="", htmx=True):
    return client.post(
        reverse("jit:approval_decide", args=[access_request.pk]),
        {"decision": decision, "comment": comment, "stage_position": stage},
        headers=HTMX if htmx else {},
    )


def test_approver_approves_in_the_queue_and_the_second_stage_completes_it(
    client, alice, entitlement, submit, ent_owner, sys_owner
):
    # given
    access_request = submit(entitlement)
    client.force_login(ent_owner)
    queue = client.get(reverse("jit:approval_queue"))
    assert f'id="req-{access_request.pk}"'.encode() in queue.content and b"Fix incident 42" in queue.content
    # when: stage 1 in place
    first = decide(client, access_request, stage=1, comment="ok")
    # then
    assert first.status_code == 200 and b"now waits for stage 2" in first.content
    assert f'id="req-{access_request.pk}"'.encode() in first.content  # replaces the row
    assert access_request.pk not in [r.pk for r in client.get(reverse("jit:approval_queue")).context["page_obj"]]
    # when: stage 2 by the system owner
    client.force_login(sys_owner)
    assert access_request.pk in [r.pk for r in client.get(reverse("jit:approval_queue")).context["page_obj"]]
    second = decide(client, access_request, stage=2)
    # then
    access_request.refresh_from_db()
    assert second.status_code == 200 and b"Approved" in second.content
    assert access_request.status == RequestStatus.APPROVED
    assert access_request.grant.status == GrantStatus.PENDING_PROVISION


def test_the_last_approval_on_a_holder_suspended_meanwhile_says_why_nothing_was_granted(
    client, alice, entitlement, submit, ent_owner, sys_owner
):
    from governance.services.identities import identity_suspend

    access_request = submit(entitlement)
    client.force_login(ent_owner)
    decide(client, access_request, stage=1)
    identity_suspend(identity_id=alice.pk, actor=None, reason="on leave")

    client.force_login(sys_owner)
    response = decide(client, access_request, stage=2)

    access_request.refresh_from_db()
    assert response.status_code == 200 and b"could not be granted" in response.content
    assert b"suspended" in response.content
    assert access_request.status == RequestStatus.FAILED


def test_a_double_click_on_the_same_stage_is_a_409_and_changes_nothing(client, alice, entitlement, submit, ent_owner):
    # given
    access_request = submit(entitlement)
    client.force_login(ent_owner)
    assert decide(client, access_request, stage=1).status_code == 200
    events, approvals = AuditEvent.objects.count(), Approval.objects.count()
    # when
    replay = decide(client, access_request, stage=1)
    # then
    assert replay.status_code == 409
    assert b"already been decided" in replay.content
    assert (AuditEvent.objects.count(), Approval.objects.count()) == (events, approvals)


def test_deciding_a_request_already_decided_is_a_clear_conflict_without_htmx_too(
    client, alice, entitlement, submit, ent_owner
):
    access_request = submit(entitlement)
    client.force_login(ent_owner)
    decide(client, access_request, "deny", stage=1, comment="no")
    response = decide(client, access_request, stage=1, htmx=False)
    assert response.status_code == 302
    follow = client.get(response["Location"])
    assert b"already denied" in follow.content


def test_requester_cannot_decide_on_their_own_request(client, alice, entitlement, submit):
    access_request = submit(entitlement)
    client.force_login(alice.user)
    response = decide(client, access_request, stage=1)
    assert response.status_code == 403
    assert b"You cannot decide on a request you made." in response.content
    assert not Approval.objects.exists()


def test_a_stranger_cannot_decide_nor_see_that_the_request_exists(client, alice, entitlement, submit):
    access_request = submit(entitlement)
    client.force_login(PersonFactory(user__username="mallory").user)
    assert decide(client, access_request, stage=1).status_code == 404
    assert not Approval.objects.exists()


def test_deny_without_a_comment_shows_the_error_in_the_row(client, alice, entitlement, submit, ent_owner):
    access_request = submit(entitlement)
    client.force_login(ent_owner)
    response = decide(client, access_request, "deny", stage=1)
    assert response.status_code == 400
    assert f'id="req-{access_request.pk}"'.encode() in response.content
    assert b"Required when denying." in response.content
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING and not Approval.objects.exists()


def test_deny_without_a_comment_on_the_requests_page_shows_the_error_beside_the_comment(
    client, alice, entitlement, submit, ent_owner
):
    # given the approver decides from the request's own page (no htmx)
    access_request = submit(entitlement)
    client.force_login(ent_owner)
    detail = reverse("jit:request_detail", args=[access_request.pk])
    page = client.get(detail)
    assert b"times out in" in page.content

    # when they deny without saying why
    response = client.post(
        reverse("jit:approval_decide", args=[access_request.pk]),
        {"decision": "deny", "comment": "", "stage_position": 1, "next": detail},
    )

    # then the same page comes back, the error tied to the comment field, and nothing is decided
    assert response.status_code == 400
    assert b'id="id_comment_error"' in response.content and b"Required when denying." in response.content
    assert b'aria-invalid="true"' in response.content
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING and not Approval.objects.exists()


def test_deny_with_a_comment_ends_the_request(client, alice, entitlement, submit, ent_owner):
    access_request = submit(entitlement)
    client.force_login(ent_owner)
    response = decide(client, access_request, "deny", stage=1, comment="use the read role")
    access_request.refresh_from_db()
    assert response.status_code == 200 and b"Denied" in response.content
    assert access_request.status == RequestStatus.DENIED


def test_queue_row_shows_sod_findings_and_the_beneficiarys_current_grants(
    client, alice, entitlement, submit, ent_owner, make_user
):
    # given: the SoD rule adds a stage for the approver group
    make_user("approver1", roles=("approver",))
    held = EntitlementFactory(name="payments-approve")
    GrantFactory(identity=alice, entitlement=held)
    SodRuleFactory(name="Write and approve payments", entitlements=[held, entitlement])
    submit(entitlement)
    client.force_login(ent_owner)
    # when
    response = client.get(reverse("jit:approval_queue"))
    # then
    assert b"Write and approve payments" in response.content
    assert b"payments-approve" in response.content


def test_queue_row_shows_how_long_it_waited_and_the_beneficiarys_latest_requests(
    client, alice, entitlement, submit, ent_owner
):
    from jit.services.requests import access_request_cancel

    earlier = [submit(EntitlementFactory(name=f"old-{n}")) for n in range(4)]
    for request in earlier:
        access_request_cancel(request_id=request.pk, actor=alice.user)
    submit(entitlement)
    client.force_login(ent_owner)
    content = client.get(reverse("jit:approval_queue")).content.decode()
    assert "times out in 2 d 23 h" in content or "times out in 3 d" in content
    assert content.count('class="badge status-cancelled"') == 3 and "4 in all" in content
    assert "old-3" in content and "old-0" not in content  # the latest first


def test_queue_filters_by_risk_tier_and_system(client, alice, entitlement, submit, ent_owner):
    submit(entitlement)
    client.force_login(ent_owner)
    medium = client.get(reverse("jit:approval_queue"), {"risk_tier": RiskTier.MEDIUM})
    high = client.get(reverse("jit:approval_queue"), {"risk_tier": RiskTier.HIGH})
    system = client.get(reverse("jit:approval_queue"), {"system": entitlement.system_id})
    assert len(medium.context["page_obj"]) == 1 and len(system.context["page_obj"]) == 1
    assert len(high.context["page_obj"]) == 0 and b"Nothing waits for you" in high.content


def test_queue_query_count_does_not_grow_with_the_queue(client, entitlement, ent_owner, count_queries):
    # given: pending requests from different people, each holding some access already
    def pending_request():
        person = PersonFactory()
        GrantFactory(identity=person, kind=GrantKind.JIT)
        GrantFactory(identity=person)
        from jit.services.requests import access_request_submit

        return access_request_submit(
            actor=person.user,
            beneficiary_id=person.pk,
            entitlement_id=entitlement.pk,
            duration=timedelta(hours=2),
            justification="work",
        )

    pending_request()
    client.force_login(ent_owner)
    url = reverse("jit:approval_queue")
    # when
    one = count_queries(lambda: client.get(url))
    for _ in range(19):
        pending_request()
    twenty = count_queries(lambda: client.get(url))
    # then
    assert len(client.get(url).context["page_obj"]) == 20
    assert one == twenty, f"queue: {one} queries with 1 row, {twenty} with 20"
    print(f"\napproval queue: {twenty} queries for 1 or 20 pending requests")
