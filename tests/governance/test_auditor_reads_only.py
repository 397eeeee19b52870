"""Roles mean what the README says: an auditor reads and changes nothing, and requesting needs the
requester role (issue 11, point 3)."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.urls import reverse
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from governance import policies
from governance.choices import GrantStatus, IdentityStatus
from governance.errors import PermissionRefused, ValidationFailed
from governance.services import catalogue, grants, identities
from governance.services.delegation import delegates_of, identity_delegate
from jit.choices import RequestStatus
from jit.models import AccessRequest
from jit.policies import NOT_A_REQUESTER
from jit.services.approvals import access_request_decide
from jit.services.requests import access_request_submit
from portal.navigation import nav_for
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SystemFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def auditor():
    """An auditor and nothing else."""
    return PersonFactory(name="Ada Auditor", user__roles=["auditor"])


#
# Delegation
#
@pytest.mark.parametrize("roles", [["auditor"], []], ids=["auditor-only", "no-role"])
def test_only_someone_whose_role_may_act_can_be_named_a_delegate(client, owner, bot, roles):
    # given a person who may not act: only an auditor, or no portal role at all
    reader = PersonFactory(name="Rita Reader", user__roles=roles)
    # when the owner names them, by service and by page
    with pytest.raises(ValidationFailed) as refused:
        identity_delegate(identity_id=bot.pk, actor=owner.user, delegate=reader)
    client.force_login(owner.user)
    response = client.post(
        reverse("governance:identity_delegate", args=[bot.pk]), {"delegate": reader.email, "reason": "on call"}
    )
    # then nobody was named, and the owner is told why
    assert "delegate" in refused.value.field_errors
    assert delegates_of(bot) == []
    assert "role that may act" in client.get(response.url).content.decode()


def test_a_requester_can_still_be_named_a_delegate(owner, bot):
    colleague = PersonFactory(name="Cara Colleague")
    identity_delegate(identity_id=bot.pk, actor=owner.user, delegate=colleague)
    assert delegates_of(bot) == [colleague]


def test_an_auditor_named_a_delegate_before_the_rule_edits_and_suspends_nothing(client, bot, auditor):
    # given an auditor holding the delegation (named before the rule, or made an auditor since)
    assign_perm(policies.DELEGATED_PERMISSION, auditor.user, bot)
    client.force_login(auditor.user)
    # then they see the identity but are offered no change
    page = client.get(reverse("governance:identity_detail", args=[bot.pk]))
    assert page.status_code == 200 and page.context["can_edit"] is False
    # and every way to change it is refused: page, API and service
    assert client.get(reverse("governance:identity_edit", args=[bot.pk])).status_code == 403
    assert (
        client.post(reverse("governance:identity_edit", args=[bot.pk]), {"name": "x", "description": "x"}).status_code
        == 403
    )
    assert client.post(reverse("governance:identity_suspend", args=[bot.pk]), {"reason": "x"}).status_code == 403
    api = APIClient()
    api.force_authenticate(auditor.user)
    assert api.patch(f"/api/v1/identities/{bot.pk}/", {"team": "x"}, format="json").status_code == 403
    with pytest.raises(PermissionRefused):
        identities.identity_suspend(identity_id=bot.pk, actor=auditor.user, reason="x")
    with pytest.raises(PermissionRefused):
        identities.identity_update(identity_id=bot.pk, actor=auditor.user, changes={"description": "x"})
    bot.refresh_from_db()
    assert bot.status == IdentityStatus.ACTIVE and bot.name == "billing-bot" and bot.team != "x"


def test_an_auditor_who_owns_things_changes_none_of_them(auditor):
    # given an auditor named as owner of a machine, a system and an entitlement, and a grant of them
    bot = MachineFactory(owner=auditor)
    system = SystemFactory(owner=auditor)
    entitlement = EntitlementFactory(system=system, owner=auditor)
    grant = GrantFactory(identity=bot, entitlement=entitlement)
    pending = GrantFactory(identity=PersonFactory(), entitlement=entitlement, status=GrantStatus.PENDING_PROVISION)
    user = auditor.user
    # then every change is refused
    for change in (
        lambda: identities.identity_update(identity_id=bot.pk, actor=user, changes={"description": "x"}),
        lambda: identities.identity_suspend(identity_id=bot.pk, actor=user, reason="x"),
        lambda: identities.identity_change_owner(identity_id=bot.pk, actor=user, owner=PersonFactory()),
        lambda: identities.identity_offboard(identity_id=bot.pk, actor=user, reason="x"),
        lambda: identity_delegate(identity_id=bot.pk, actor=user, delegate=PersonFactory()),
        lambda: catalogue.system_update(system_id=system.pk, actor=user, changes={"description": "x"}),
        lambda: catalogue.entitlement_update(
            entitlement_id=entitlement.pk, actor=user, changes={"business_purpose": "x"}
        ),
        lambda: grants.grant_revoke(grant_id=grant.pk, actor=user, reason="x"),
        lambda: grants.grant_confirm_provisioned(grant_id=pending.pk, actor=user),
    ):
        with pytest.raises(PermissionRefused):
            change()
    assert not policies.may_own_machines(user)
    assert not policies.can_mark_no_renew(user, grant)


def test_an_entitlement_owner_who_is_only_an_auditor_is_not_routed_the_decision_and_cannot_take_it(auditor):
    # given an entitlement whose owner is only an auditor, and a fallback approver
    entitlement = EntitlementFactory(owner=auditor)
    fallback = PersonFactory(user__roles=["approver"])
    fallback.user.groups.add(Group.objects.get_or_create(name=settings.JIT_FALLBACK_GROUP)[0])
    requester = PersonFactory(name="Riya Requester")
    access_request = access_request_submit(
        actor=requester.user,
        beneficiary_id=requester.pk,
        entitlement_id=entitlement.pk,
        duration=timedelta(hours=1),
        justification="incident",
    )
    # then the decision goes to the fallback, never to the auditor
    eligible = {user.pk for stage in access_request.stages.all() for user in stage.eligible.all()}
    assert auditor.user.pk not in eligible and fallback.user.pk in eligible
    # and when the auditor approves anyway, it is refused and the request still waits
    with pytest.raises(PermissionRefused):
        access_request_decide(request_id=access_request.pk, approver=auditor.user, decision="approve")
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING


#
# Requesting needs the requester role
#
@pytest.mark.parametrize(
    "roles", [["auditor"], [], ["approver"], ["owner", "approver"]], ids=["auditor", "none", "approver", "owner"]
)
def test_submitting_needs_the_requester_role_by_service_page_and_api(client, roles):
    # given a person without the requester role, and a requestable entitlement
    person = PersonFactory(user__roles=roles)
    entitlement = EntitlementFactory()
    # when they ask for it, by service, page and API, then each is refused and nothing is asked
    with pytest.raises(PermissionRefused, match="requester role"):
        access_request_submit(
            actor=person.user, beneficiary_id=person.pk, entitlement_id=entitlement.pk, justification="x"
        )
    client.force_login(person.user)
    url = reverse("jit:request_create", args=[entitlement.pk])
    page = client.post(url, {"beneficiary": person.pk, "duration_hours": 1, "justification": "x"})
    assert page.status_code == 403 and NOT_A_REQUESTER in page.content.decode()
    api = APIClient()
    api.force_authenticate(person.user)
    answer = api.post(
        "/api/v1/requests/",
        {"beneficiary": person.pk, "entitlement": entitlement.pk, "duration_seconds": 3600, "justification": "x"},
        format="json",
    )
    assert answer.status_code == 403 and NOT_A_REQUESTER in str(answer.json())
    assert not AccessRequest.objects.exists()


def test_a_requester_submits(client):
    person = PersonFactory()  # a person's login holds the requester role
    entitlement = EntitlementFactory()
    client.force_login(person.user)
    response = client.post(
        reverse("jit:request_create", args=[entitlement.pk]),
        {"beneficiary": person.pk, "duration_hours": 1, "justification": "x"},
    )
    assert response.status_code == 302 and AccessRequest.objects.filter(requester=person.user).exists()


def test_requesting_is_offered_only_to_requesters(client, auditor):
    entitlement = EntitlementFactory(name="db-read")
    requester = PersonFactory()
    assert "Request access" in [item.label for item in nav_for(requester.user)]
    assert "Request access" not in [item.label for item in nav_for(auditor.user)]
    # the catalogue says why and offers no Request button; the request form is not shown
    client.force_login(auditor.user)
    catalogue_page = client.get(reverse("jit:request_catalogue")).content.decode()
    create_url = reverse("jit:request_create", args=[entitlement.pk])
    assert NOT_A_REQUESTER in catalogue_page and create_url not in catalogue_page
    assert (
        create_url not in client.get(reverse("governance:entitlement_detail", args=[entitlement.pk])).content.decode()
    )
    form_page = client.get(create_url)
    assert form_page.status_code == 403 and 'name="justification"' not in form_page.content.decode()
    # while a requester is offered both
    client.force_login(requester.user)
    assert create_url in client.get(reverse("jit:request_catalogue")).content.decode()
    assert client.get(create_url).status_code == 200
