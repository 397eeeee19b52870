"""The approver's queue read by SQL built once per process: the same rows, counts, names and links as
the querysets they stand for, each approver their own. Ref: #16 (approver, point 3)."""

from datetime import timedelta

import pytest
import time_machine
from django.db.models import Exists, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from audit.kernel.pagination import DeferredJoinPaginator
from audit.services import Actor
from governance import policies as inventory
from governance.choices import IdentityStatus, RiskTier
from jit import selectors, selectors_queue
from jit.choices import RequestStatus
from jit.models import AccessRequest, Approval, ApprovalStage
from jit.services.approvals import access_request_decide
from jit.services.requests import access_request_submit
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db

ORDERS = ("oldest", "newest", "risk", "requester")
TWO_STAGES = [{"approver": "entitlement_owner", "quorum": 1}, {"approver": "system_owner", "quorum": 1}]


@pytest.fixture
def queue(alice, entitlement, submit, ent_owner, sys_owner):
    """Seven requests to the entitlement owner (people and a machine on the API, some days old), and
    two of them past the owner's stage: those wait for the system owner."""
    bob = PersonFactory(name="Bob", user__username="bob")
    bot = MachineFactory(name="etl-bot", kind="ai_agent", may_self_request=True)
    same = {"owner": entitlement.owner, "system": entitlement.system, "approval_stages": TWO_STAGES}
    high = EntitlementFactory(name="root", risk_tier=RiskTier.HIGH, **same)
    low = EntitlementFactory(name="wiki", risk_tier=RiskTier.LOW, **same)
    made = []
    with time_machine.travel(timezone.now() - timedelta(days=3)):
        made += [submit(entitlement), submit(high, actor=bob.user, beneficiary=bob)]
    with time_machine.travel(timezone.now() - timedelta(days=2)):
        made.append(
            access_request_submit(
                actor=Actor(identity=bot),
                beneficiary_id=bot.pk,
                entitlement_id=low.pk,
                duration=timedelta(hours=1),
                justification="nightly load",
            )
        )
    made += [submit(low), submit(high), submit(entitlement, beneficiary=bob, actor=bob.user)]
    made.append(submit(low, beneficiary=bob, actor=bob.user))
    for request in made[:2]:
        access_request_decide(request_id=request.pk, approver=ent_owner, decision="approve")
    return {"made": made, "bob": bob, "bot": bot}


def old_rule(user):
    """`routed_to_me` as it was first written (current position by subquery, owned machines by join)."""
    me = inventory.identity_of(user)
    routed = ApprovalStage.objects.filter(request=OuterRef("pk"), position=OuterRef("current_position"), eligible=user)
    rows = (
        AccessRequest.objects.filter(status=RequestStatus.PENDING)
        .annotate(current_position=selectors.current_stage_position())
        .filter(Exists(routed))
        .exclude(Exists(Approval.objects.filter(request=OuterRef("pk"), approver=user)))
        .exclude(requester=user)
    )
    if me is not None and me.status != IdentityStatus.ACTIVE:
        return AccessRequest.objects.none()
    if me is not None:
        rows = rows.exclude(beneficiary=me).exclude(
            Q(beneficiary__owner=me) | Q(beneficiary__backup_owner=me), ~Q(beneficiary__kind="human")
        )
    return rows


def routed(user) -> set[int]:
    return set(selectors.routed_to_me(user=user).values_list("pk", flat=True))


def test_each_approver_gets_their_own_rows_and_the_rule_reads_as_first_written(queue, ent_owner, sys_owner, alice):
    # when / then: the owner has the five at stage 1, the system owner the two past it, Alice none
    made = [r.pk for r in queue["made"]]
    assert routed(ent_owner) == set(made[2:]) and routed(sys_owner) == set(made[:2]) and routed(alice.user) == set()
    for user in (ent_owner, sys_owner, alice.user, queue["bob"].user):
        assert routed(user) == set(old_rule(user).values_list("pk", flat=True))


def test_machines_one_answers_for_are_left_out_but_not_people_one_is_named_owner_of(ent_owner):
    # given requests for a machine the entitlement owner owns, one it backs up, and a person it is named
    # owner of, each made routable to it by hand (routing leaves such people out; a fallback may not)
    other = EntitlementFactory(owner=PersonFactory(name="Otto"))
    owned = MachineFactory(owner=ent_owner.identity, may_self_request=True)
    backed = MachineFactory(backup_owner=ent_owner.identity, may_self_request=True)
    person = PersonFactory(owner=ent_owner.identity)
    made = [
        access_request_submit(
            actor=Actor(identity=bot), beneficiary_id=bot.pk, entitlement_id=other.pk, justification="x"
        )
        for bot in (owned, backed)
    ]
    made.append(
        access_request_submit(actor=person.user, beneficiary_id=person.pk, entitlement_id=other.pk, justification="x")
    )
    for request in made:
        assert request.status == RequestStatus.PENDING
        request.stages.get(position=1).eligible.add(ent_owner)
    # then
    assert routed(ent_owner) == {made[2].pk} == set(old_rule(ent_owner).values_list("pk", flat=True))


def expected_keys(user, bottom, top, **filters) -> list[int]:
    return list(selectors_queue.queue_rows(user=user, **filters).values_list("pk", flat=True)[bottom:top])


def test_the_prepared_keys_are_the_querysets_slice_under_every_filter_order_and_page(queue, ent_owner, sys_owner):
    bob, bot = f"u{queue['bob'].user.pk}", f"i{queue['bot'].pk}"
    for user in (ent_owner, sys_owner):
        for order in ORDERS:
            for requester in ("", bob, bot, "u0"):
                for waiting in (None, timedelta(days=1)):
                    filters = {"requester": requester, "waiting_at_least": waiting, "order": order}
                    keys = selectors_queue.queue_keys(user=user, per_page=2, **filters)
                    for bottom, top in ((0, 2), (0, 3), (0, 1), (2, 4), (4, 7), (4, 5)):
                        assert keys(bottom, top) == expected_keys(user, bottom, top, **filters), (user, filters, bottom)


def test_past_the_prepared_pages_and_under_the_risk_or_system_filter_the_queryset_picks_the_keys(queue, ent_owner):
    keys = selectors_queue.queue_keys(user=ent_owner, per_page=2)
    assert keys(0, 2) is not None
    assert keys(selectors_queue.PREPARED_PAGES * 2, selectors_queue.PREPARED_PAGES * 2 + 2) is None
    assert keys(0, 4) is None  # longer than a page and one more
    assert selectors_queue.queue_keys(user=ent_owner, per_page=2, risk_tier=RiskTier.HIGH)(0, 2) is None
    assert selectors_queue.queue_keys(user=ent_owner, per_page=2, system_id=1)(0, 2) is None


def test_a_suspended_approver_and_a_login_without_identity_have_empty_prepared_rows(queue, ent_owner, make_user):
    # given
    nobody = make_user("noidentity", roles=("approver",))
    ent_owner.identity.status = IdentityStatus.SUSPENDED
    ent_owner.identity.save(update_fields=["status"])
    for user in (ent_owner, nobody):
        # then
        assert selectors_queue.queue_keys(user=user, per_page=20)(0, 20) == []
        assert selectors_queue.queue_count(user=user) == 0


def test_the_prepared_count_is_the_querysets_count_under_every_filter_and_order(queue, ent_owner, sys_owner):
    bob, bot, alice = f"u{queue['bob'].user.pk}", f"i{queue['bot'].pk}", f"u{queue['made'][0].requester_id}"
    for user in (ent_owner, sys_owner):
        for order in ORDERS:
            for requester in ("", bob, bot, alice, "u0", "i0"):
                for waiting in (None, timedelta(days=1), timedelta(days=30)):
                    filters = {"requester": requester, "waiting_at_least": waiting, "order": order}
                    expected = selectors_queue.queue_rows(user=user, **filters).count()
                    assert selectors_queue.queue_count(user=user, **filters) == expected, (user, filters)
    # then: the owner's five are counted, Bob's two of them, the machine's one
    assert selectors_queue.queue_count(user=ent_owner) == 5
    assert selectors_queue.queue_count(user=ent_owner, requester=bob) == 2
    assert selectors_queue.queue_count(user=ent_owner, requester=bot) == 1


def test_the_risk_and_system_filters_and_a_search_are_counted_by_the_queryset(queue, ent_owner):
    for filters in ({"risk_tier": RiskTier.HIGH}, {"system_id": 1}, {"requester": "bob"}, {"requester": "u"}):
        assert selectors_queue.queue_count(user=ent_owner, **filters) is None, filters
        assert selectors_queue.queue_keys(user=ent_owner, per_page=2, **filters)(0, 2) is None, filters


def test_the_count_is_one_row_of_one_statement_without_grouping(queue, ent_owner):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        selectors_queue.queue_count(user=ent_owner, requester=f"u{queue['bob'].user.pk}")
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"]]
    assert len(counts) == 1 and "GROUP BY" not in counts[0]


def test_a_requester_without_an_identity_is_found_by_login(entitlement, ent_owner, make_user):
    # given a login with no identity asks (for a person it may ask for: here by hand, as an import would)
    person = PersonFactory(name="Carol", user__username="carol")
    request = access_request_submit(
        actor=person.user, beneficiary_id=person.pk, entitlement_id=entitlement.pk, justification="x"
    )
    loner = make_user("loner")
    AccessRequest.objects.filter(pk=request.pk).update(requester=loner)
    # then
    assert [r.pk for r in selectors_queue.queue_rows(user=ent_owner, requester="LON")] == [request.pk]
    assert list(selectors_queue.queue_rows(user=ent_owner, requester="carol")) == []
    assert selectors_queue.queue_count(user=ent_owner, requester=f"u{loner.pk}") == 1


def test_a_page_read_by_key_gives_the_cards_relations_as_select_related_did(
    queue, ent_owner, django_assert_num_queries
):
    # given
    keys = expected_keys(ent_owner, 0, 20)
    joins = (*selectors_queue.CARD_JOINS, "beneficiary__owner", "beneficiary__manager")
    reference = {r.pk: r for r in AccessRequest.objects.filter(pk__in=keys).select_related(*joins)}
    # when
    page = selectors_queue.queue_page(keys)
    # then: in the keys' order, each relation read already (no query more)
    assert [r.pk for r in page] == keys
    with django_assert_num_queries(0):
        for row in page:
            old = reference[row.pk]
            beneficiary = row.beneficiary
            assert (beneficiary.pk, beneficiary.name, beneficiary.kind, beneficiary.status, beneficiary.team) == (
                old.beneficiary.pk,
                old.beneficiary.name,
                old.beneficiary.kind,
                old.beneficiary.status,
                old.beneficiary.team,
            )
            assert beneficiary.last_used_at == old.beneficiary.last_used_at
            assert getattr(beneficiary.owner, "name", None) == getattr(old.beneficiary.owner, "name", None)
            assert getattr(beneficiary.manager, "name", None) == getattr(old.beneficiary.manager, "name", None)
            assert getattr(row.requester, "username", None) == getattr(old.requester, "username", None)
            assert getattr(row.requester_identity, "name", None) == getattr(old.requester_identity, "name", None)
            assert (row.entitlement.name, row.entitlement.system.name) == (
                old.entitlement.name,
                old.entitlement.system.name,
            )
            assert row.policy == old.policy and row.created_at == old.created_at


def test_links_are_given_for_the_requests_each_may_open(queue, ent_owner, sys_owner, alice, auditor, make_user):
    named = {r.pk for r in queue["made"]} | {r.pk for r in AccessRequest.objects.all()}
    for user in (ent_owner, sys_owner, alice.user, queue["bob"].user, auditor, make_user("bystander")):
        expected = set(selectors.requests_visible_to(user).filter(pk__in=named).values_list("pk", flat=True))
        assert selectors_queue._linkable(named, user=user) == expected, user


def test_the_unfiltered_page_builds_no_queryset_of_its_rows(client, queue, ent_owner, monkeypatch):
    # given the prepared queries built once
    client.force_login(ent_owner)
    url = reverse("jit:approval_queue")
    first = [r.pk for r in client.get(url).context["page_obj"]]
    assert first == expected_keys(ent_owner, 0, 20)
    expected_high = expected_keys(ent_owner, 0, 20, risk_tier=RiskTier.HIGH)
    built = []
    real = selectors_queue.queue_rows
    monkeypatch.setattr(selectors_queue, "queue_rows", lambda **kw: built.append(kw) or real(**kw))
    # when / then: keys and count by prepared SQL; the risk filter needs the queryset (and counts it)
    assert [r.pk for r in client.get(url).context["page_obj"]] == first
    assert built == []
    high = client.get(url, {"risk_tier": RiskTier.HIGH}).context["page_obj"]
    assert [r.pk for r in high] == expected_high and len(built) == 1


def test_the_paginator_builds_its_queryset_only_when_the_keys_or_the_count_need_it():
    built = []

    def rows():
        built.append(1)
        return AccessRequest.objects.order_by("pk")

    # keys given and the count known: never built
    load = list  # the rows a page shows, from their keys
    page = DeferredJoinPaginator(rows, 2, load=load, keys=lambda bottom, top: [7], counted=1).get_page(1)
    assert list(page) == [7] and built == []
    # keys declined: built once, for the count and the slice
    page = DeferredJoinPaginator(rows, 2, load=load, keys=lambda bottom, top: None).get_page(1)
    assert list(page) == [] and built == [1]


def test_a_cards_requests_on_their_way_read_the_databases_clock_at_each_run(alice, entitlement, submit, ent_owner):
    """Built once, the SQL of what is on its way to the beneficiary still takes each run's time: an
    approval waiting to be activated is held until its window closes, then no longer."""
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        shell = EntitlementFactory(risk_tier=RiskTier.HIGH)
        approved = submit(shell)
        access_request_decide(request_id=approved.pk, approver=shell.owner.user, decision="approve", stage_position=1)
        approved.refresh_from_db()
        pending = submit(entitlement)
        assert approved.activation_deadline and approved.grant_id is None
        requests, _, _ = selectors_queue._requests_of({alice.pk}, user=ent_owner)
        assert [(h.request.pk, h.state) for h in requests[alice.pk]] == [
            (approved.pk, "approved, not started"),
            (pending.pk, "pending"),
        ]
    with time_machine.travel(approved.activation_deadline + timedelta(minutes=1), tick=False):
        requests, _, _ = selectors_queue._requests_of({alice.pk}, user=ent_owner)
        assert [(h.request.pk, h.state) for h in requests[alice.pk]] == [(pending.pk, "pending")]
