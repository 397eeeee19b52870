"""Nobody gets access without someone else's look, no approval path is promised that cannot be
finished, and a request that stalls can be withdrawn or asked again. Ref: #4 items 1, 2, 3, 5, 8."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from governance.choices import GrantStatus, RiskTier
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.services.catalogue import entitlement_update
from governance.services.grants import grant_renew
from governance.services.identities import identity_suspend
from jit.choices import RequestStatus
from jit.models import AccessRequest
from jit.selectors import approval_queue
from jit.services.approvals import access_request_decide
from jit.services.expiry import grants_expire_due
from jit.services.requests import _renewal_facts, access_request_cancel, access_request_preview
from tests.factories.governance import EntitlementFactory, GrantFactory, PersonFactory

pytestmark = pytest.mark.django_db

ONE_STAGE = [{"approver": "entitlement_owner", "quorum": 1}]


def approve(request, user):
    return access_request_decide(request_id=request.pk, approver=user, decision="approve")


#
# Self-approval through the back door
#
def test_an_entitlement_owner_who_loosens_its_policy_still_needs_someone_else_for_their_own_bot(
    submit, alice, alice_bot
):
    PersonFactory().user.groups.add(Group.objects.get(name="approver"))
    entitlement = EntitlementFactory(owner=alice, risk_tier=RiskTier.MEDIUM)  # loosening high ones takes an admin
    entitlement_update(
        entitlement_id=entitlement.pk,
        actor=alice.user,
        changes={"risk_tier": RiskTier.LOW, "auto_approve_machines": True},
    )
    request = submit(entitlement, beneficiary=alice_bot, duration=timedelta(hours=1))
    assert request.status == RequestStatus.PENDING and request.grant is None
    assert alice.user.pk not in {u.pk for stage in request.stages.all() for u in stage.eligible.all()}


def test_someone_else_owning_the_entitlement_keeps_machine_auto_approval(submit, alice_bot):
    entitlement = EntitlementFactory(risk_tier=RiskTier.LOW, auto_approve_machines=True)
    assert submit(entitlement, beneficiary=alice_bot, duration=timedelta(hours=1)).status == RequestStatus.APPROVED


def test_a_suspended_approver_decides_nothing_and_no_longer_sees_the_queue(submit, entitlement, ent_owner):
    request = submit(entitlement)
    identity_suspend(identity_id=entitlement.owner.pk, actor=None, reason="under investigation")
    with pytest.raises(PermissionRefused, match="suspended"):
        approve(request, ent_owner)
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING and not request.approvals.exists()
    fresh = type(ent_owner).objects.get(pk=ent_owner.pk)  # the next page load
    assert not approval_queue(user=fresh).exists()


#
# Approval paths that cannot be finished
#
def test_two_stages_drawing_on_one_small_group_are_refused_before_anyone_waits(submit, alice):
    group = Group.objects.get(name="approver")
    for _ in range(2):
        PersonFactory().user.groups.add(group)
    entitlement = EntitlementFactory(
        risk_tier=RiskTier.MEDIUM,
        approval_stages=[
            {"approver": "group", "group": "approver", "quorum": 1},
            {"approver": "group", "group": "approver", "quorum": 2},
        ],
    )
    decision, _ = access_request_preview(
        actor=alice.user, beneficiary=alice, entitlement=entitlement, duration=timedelta(hours=1), justification="x"
    )
    assert not decision.allowed and "stage 2" in decision.reasons[0]
    with pytest.raises(ValidationFailed, match="stage 2"):
        submit(entitlement, duration=timedelta(hours=1))
    assert not AccessRequest.objects.exists()


def test_a_third_group_member_makes_the_same_path_completable_whoever_approves_first(submit, alice):
    group = Group.objects.get(name="approver")
    people = [PersonFactory().user for _ in range(3)]
    for user in people:
        user.groups.add(group)
    entitlement = EntitlementFactory(
        risk_tier=RiskTier.MEDIUM,
        approval_stages=[
            {"approver": "group", "group": "approver", "quorum": 1},
            {"approver": "group", "group": "approver", "quorum": 2},
        ],
    )
    request = submit(entitlement, duration=timedelta(hours=1))
    for user in people:
        approve(request, user)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED


#
# Requests that stall
#
def test_an_approved_request_waiting_for_activation_can_be_withdrawn_and_asked_again(submit, alice):
    entitlement = EntitlementFactory(risk_tier=RiskTier.HIGH, approval_stages=ONE_STAGE)
    request = submit(entitlement, duration=timedelta(hours=1))
    approve(request, entitlement.owner.user)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED and request.activation_deadline is not None
    with pytest.raises(InvalidTransition, match="waiting to start"):
        submit(entitlement, duration=timedelta(hours=1))
    access_request_cancel(request_id=request.pk, actor=alice.user, reason="no longer needed")
    request.refresh_from_db()
    assert request.status == RequestStatus.CANCELLED
    assert submit(entitlement, duration=timedelta(hours=1)).status == RequestStatus.PENDING


def test_a_lapsed_activation_window_does_not_block_asking_again(submit, alice):
    entitlement = EntitlementFactory(risk_tier=RiskTier.HIGH, approval_stages=ONE_STAGE)
    request = submit(entitlement, duration=timedelta(hours=1))
    approve(request, entitlement.owner.user)
    with time_machine.travel(timezone.now() + timedelta(days=3), tick=False):
        assert submit(entitlement, duration=timedelta(hours=1)).status == RequestStatus.PENDING


def test_a_granted_request_cannot_be_cancelled(submit, alice):
    entitlement = EntitlementFactory(risk_tier=RiskTier.LOW, approval_stages=ONE_STAGE)
    request = submit(entitlement, duration=timedelta(hours=1))
    approve(request, entitlement.owner.user)
    with pytest.raises(InvalidTransition):
        access_request_cancel(request_id=request.pk, actor=alice.user)


def test_asking_again_while_expired_access_is_being_removed_says_so(submit, alice):
    entitlement = EntitlementFactory(risk_tier=RiskTier.MEDIUM)
    grant = GrantFactory(
        identity=alice, entitlement=entitlement, kind="jit", expires_at=timezone.now() - timedelta(minutes=1)
    )
    grants_expire_due()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING
    with pytest.raises(InvalidTransition, match="still being removed from"):
        submit(entitlement, duration=timedelta(hours=1))


#
# Step-up facts and bounds
#
def test_a_renewed_grant_counts_only_until_its_renewal_replaced_it(alice):
    start = timezone.now()
    entitlement = EntitlementFactory(risk_tier=RiskTier.MEDIUM)
    first = GrantFactory(
        identity=alice, entitlement=entitlement, kind="jit", granted_at=start, expires_at=start + timedelta(hours=8)
    )
    with time_machine.travel(start + timedelta(hours=1), tick=False):
        renewal = grant_renew(grant_id=first.pk, actor=None, duration=timedelta(hours=8))
    renewal = type(renewal).objects.select_related("renewal_of").get(pk=renewal.pk)
    _, cumulative = _renewal_facts(renewal, start + timedelta(hours=2))
    assert cumulative == timedelta(hours=2)


def test_an_absurd_duration_is_a_clear_400_through_the_api(alice, entitlement):
    api = APIClient()
    api.force_authenticate(alice.user)
    body = {"beneficiary": alice.pk, "entitlement": entitlement.pk, "duration_seconds": 10**15, "justification": "x"}
    response = api.post("/api/v1/requests/", body, format="json")
    assert response.status_code == 400 and "duration_seconds" in response.json()["errors"]
    assert not AccessRequest.objects.exists()


#
# Do-not-renew from the grant page
#
def test_the_entitlement_owner_marks_a_persons_expiring_grant_do_not_renew_from_its_page(client, alice):
    entitlement = EntitlementFactory(risk_tier=RiskTier.MEDIUM)
    grant = GrantFactory(
        identity=alice, entitlement=entitlement, kind="jit", expires_at=timezone.now() + timedelta(minutes=30)
    )
    page = reverse("governance:grant_detail", args=[grant.pk])
    client.force_login(entitlement.owner.user)
    assert reverse("jit:grant_no_renew", args=[grant.pk]).encode() in client.get(page).content
    response = client.post(reverse("jit:grant_no_renew", args=[grant.pk]), {"next": page}, follow=True)
    assert response.redirect_chain[-1][0] == page
    assert b"will not be renewed" in response.content
    grant.refresh_from_db()
    assert grant.no_renew


def test_the_holder_of_a_persons_grant_is_not_offered_do_not_renew(client, alice):
    grant = GrantFactory(identity=alice, kind="jit", expires_at=timezone.now() + timedelta(minutes=30))
    client.force_login(alice.user)
    assert (
        reverse("jit:grant_no_renew", args=[grant.pk]).encode()
        not in client.get(reverse("governance:grant_detail", args=[grant.pk])).content
    )


def test_the_requester_withdraws_an_approved_request_from_its_page_before_activating_it(client, submit, alice):
    entitlement = EntitlementFactory(risk_tier=RiskTier.HIGH, approval_stages=ONE_STAGE)
    request = submit(entitlement, duration=timedelta(hours=1))
    approve(request, entitlement.owner.user)
    client.force_login(alice.user)
    page = client.get(reverse("jit:request_detail", args=[request.pk]))
    assert b"Activate now" in page.content and b"Cancel this request" in page.content
    client.post(reverse("jit:request_cancel", args=[request.pk]), {"reason": "done without it"})
    request.refresh_from_db()
    assert request.status == RequestStatus.CANCELLED and request.grant is None
