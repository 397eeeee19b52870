"""What an approver's card says beside the request: conflicts between one person's pending requests,
what they hold now (including what was just approved), earlier stages' decisions, the beneficiary's
team, manager and use, and past requests linked. The page stays at a fixed number of queries.
Ref: #16 (approver, points 1, 2 and 4)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.choices import GrantKind, RiskTier
from jit.choices import RequestStatus
from jit.models import AccessRequest
from jit.services.approvals import access_request_decide
from jit.services.requests import access_request_submit
from tests.factories.governance import EntitlementFactory, GrantFactory, PersonFactory, SodRuleFactory

pytestmark = pytest.mark.django_db


def card(content: str, request) -> str:
    """The HTML of one request's card on the queue page."""
    start = content.index(f'<article id="req-{request.pk}"')
    return content[start : content.index("</article>", start)]


@pytest.fixture
def payments_pair(entitlement, make_user):
    """A second entitlement of the same owner and system that must not be held with `entitlement`."""
    make_user("sod-approver", roles=("approver",))  # the extra stage a separation-of-duties hit adds
    approve = EntitlementFactory(
        name="payments-approve",
        risk_tier=RiskTier.MEDIUM,
        system=entitlement.system,
        owner=entitlement.owner,
        approval_stages=entitlement.approval_stages,
    )
    SodRuleFactory(name="Write and approve payments", entitlements=[entitlement, approve])
    return approve


def test_two_pending_requests_that_together_break_a_rule_each_name_the_other(
    client, alice, entitlement, payments_pair, submit, ent_owner
):
    # given Alice asks for both halves of a separation-of-duties pair, one after the other
    write = submit(entitlement)
    approve = submit(payments_pair)
    client.force_login(ent_owner)

    # when the owner of both opens the queue
    content = client.get(reverse("jit:approval_queue")).content.decode()

    # then each card says so and names the other request
    assert "Write and approve payments" in card(content, write) and f"Request #{approve.pk}" in card(content, write)
    assert f"Request #{write.pk}" in card(content, approve) and "also pending" in card(content, approve)
    assert "Approving both breaks it" in card(content, write)


def test_holds_now_includes_what_was_just_approved_and_the_conflict_follows_it(
    client, alice, entitlement, payments_pair, submit, ent_owner, sys_owner
):
    # given one of the pair is approved by both its stages (its grant waits for provisioning)
    write = submit(entitlement)
    approve = submit(payments_pair)
    access_request_decide(request_id=write.pk, approver=ent_owner, decision="approve")
    access_request_decide(request_id=write.pk, approver=sys_owner, decision="approve")
    client.force_login(ent_owner)

    # when the other one is looked at
    other = card(client.get(reverse("jit:approval_queue")).content.decode(), approve)

    # then the access just approved is among what Alice holds, and the conflict names it
    assert "just approved: being provisioned" in other
    assert "just approved, being provisioned" in other and "Write and approve payments" in other


def test_a_later_stage_sees_the_earlier_stages_decisions_and_comments(client, alice, entitlement, submit, ent_owner):
    # given the entitlement owner approved stage 1 with a comment
    access_request = submit(entitlement)
    access_request_decide(request_id=access_request.pk, approver=ent_owner, decision="approve", comment="ok for now")
    client.force_login(entitlement.system.owner.user)

    # when the system owner opens stage 2
    shown = card(client.get(reverse("jit:approval_queue")).content.decode(), access_request)

    # then they see who decided stage 1 and what they said
    assert "Earlier stages" in shown and "Stage 1 (Entitlement owner)" in shown
    assert "approved by Entowner" in shown and "“ok for now”" in shown


def test_the_card_shows_team_manager_title_holdings_usage_and_linked_past_requests(
    client, alice, entitlement, submit, ent_owner
):
    # given Alice has a team, a manager, standing and just-in-time access, and an earlier request
    alice.team, alice.manager = "Payments", PersonFactory(name="Mona Manager")
    alice.last_used_at = timezone.now() - timedelta(hours=3)
    alice.save()
    GrantFactory(
        identity=alice,
        entitlement=EntitlementFactory(name="ledger-read", risk_tier=RiskTier.HIGH),
        last_used_at=timezone.now() - timedelta(days=2),
    )
    GrantFactory(identity=alice, entitlement=EntitlementFactory(name="deploy"), kind=GrantKind.JIT)
    earlier = submit(EntitlementFactory(name="old-role", owner=entitlement.owner))
    access_request_decide(request_id=earlier.pk, approver=ent_owner, decision="deny", comment="not now")
    access_request = submit(entitlement)
    client.force_login(ent_owner)

    # when
    shown = card(client.get(reverse("jit:approval_queue")).content.decode(), access_request)

    # then
    assert "Team: Payments" in shown and "Manager: Mona Manager" in shown
    assert "the inventory records no job title" in shown  # Identity has no title field: said, not hidden
    assert "Last active: <time" in shown and "3 h ago" in shown
    assert "ledger-read" in shown and "High" in shown and "standing" in shown and "2 days ago" in shown
    assert "deploy" in shown and "just-in-time" in shown
    # the earlier request was routed to this owner, who may open it: linked, and named by its system too
    assert f'href="{reverse("jit:request_detail", args=[earlier.pk])}"' in shown
    assert f"</a>: {earlier.entitlement.system.name} / old-role <span" in shown


def test_past_requests_the_approver_may_not_open_are_named_but_not_linked(
    client, alice, entitlement, submit, ent_owner
):
    # given an earlier request of Alice's decided by someone else entirely
    elsewhere = submit(EntitlementFactory(name="hr-read"))
    access_request = submit(entitlement)
    client.force_login(ent_owner)

    shown = card(client.get(reverse("jit:approval_queue")).content.decode(), access_request)

    assert f"Request #{elsewhere.pk}" in shown
    assert reverse("jit:request_detail", args=[elsewhere.pk]) not in shown


def test_the_queue_with_all_its_context_runs_as_many_queries_for_one_card_as_for_twenty(
    client, entitlement, ent_owner, sys_owner, make_user, count_queries
):
    # given pending requests from different people, each holding access (standing, JIT, one being
    # provisioned), each with an earlier stage decided with a comment, each in a conflict with
    # another pending request of theirs, with past requests, and the approver a deputy too
    from jit.services.deputies import approver_absence_set

    make_user("sod-approver", roles=("approver",))
    away = PersonFactory(user__roles=["approver"]).user
    approver_absence_set(
        actor=away, deputy_id=sys_owner.pk, starts_at=timezone.now(), ends_at=timezone.now() + timedelta(days=1)
    )
    partner = EntitlementFactory(
        name="partner", system=entitlement.system, owner=entitlement.owner, approval_stages=entitlement.approval_stages
    )
    SodRuleFactory(entitlements=[entitlement, partner])

    def person_with_context():
        person = PersonFactory(manager=PersonFactory())
        GrantFactory(identity=person, kind=GrantKind.JIT, last_used_at=timezone.now())
        GrantFactory(identity=person)
        GrantFactory(identity=person, status="pending_provision", granted_at=None)
        AccessRequest.objects.create(  # a past request, as the trail left it
            requester=person.user,
            beneficiary=person,
            entitlement=EntitlementFactory(),
            duration=timedelta(hours=1),
            status=RequestStatus.DENIED,
        )
        for wanted in (entitlement, partner):
            request = access_request_submit(
                actor=person.user,
                beneficiary_id=person.pk,
                entitlement_id=wanted.pk,
                duration=timedelta(hours=2),
                justification="work",
            )
            access_request_decide(request_id=request.pk, approver=ent_owner, decision="approve", comment="fine")

    person_with_context()
    client.force_login(sys_owner)
    url = reverse("jit:approval_queue")

    # when
    one = count_queries(lambda: client.get(url))
    for _ in range(9):
        person_with_context()
    twenty = count_queries(lambda: client.get(url))

    # then
    page = client.get(url)
    assert len(page.context["page_obj"]) == 20
    assert all(card.conflicts and card.earlier_stages and card.holdings for card in page.context["page_obj"])
    assert one == twenty, f"approver queue: {one} queries with 2 cards, {twenty} with 20"
