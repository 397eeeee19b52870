"""The dashboard's panels list what their pages list, and read it in a fixed few queries.

Each panel picks its rows with its page's filters, then reads only what it shows: the same rows, in
the same order, as the approval queue, my requests, my grants and the activation list; the approvals
counted however many wait; the person's groups asked once for all the panels.
"""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from governance import policies
from governance.choices import FindingKind, FindingStatus, GrantKind, IdentityStatus, RiskTier, Severity
from governance.models import Finding
from jit import selectors
from jit.services.approvals import access_request_decide
from tests.factories.break_glass import BreakGlassEntitlementFactory, EligibilityFactory, activate
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db

LIMIT = 10


@pytest.fixture
def full(alice, alice_bot, submit):
    """More of everything than a panel shows: grants, requests waiting, approved access to start,
    and requests routed to Alice (she owns their entitlements)."""
    now = timezone.now()
    for i in range(LIMIT + 2):
        expires_at = None if i % 4 == 3 else now + timedelta(minutes=30 + 17 * (i * 7 % 12))
        GrantFactory(
            identity=[alice, alice_bot][i % 2],
            kind=GrantKind.STANDING if expires_at is None else GrantKind.JIT,
            expires_at=expires_at,
        )
        submit(EntitlementFactory(risk_tier=RiskTier.MEDIUM), beneficiary=[alice, alice_bot][i % 2])
        shell = EntitlementFactory(risk_tier=RiskTier.HIGH)
        made = submit(shell, beneficiary=[alice, alice_bot][i % 2])
        access_request_decide(request_id=made.pk, approver=shell.owner.user, decision="approve", stage_position=1)
        person = PersonFactory()
        submit(
            EntitlementFactory(owner=alice, risk_tier=RiskTier.LOW),
            actor=person.user,
            beneficiary=person if i % 2 else MachineFactory(owner=person),
        )
    return alice


def keys(rows) -> list[int]:
    return [row.pk for row in rows]


def test_the_panels_list_what_their_pages_list_in_their_order(full):
    user = full.user
    panels = selectors.dashboard_panels(user=user, limit=LIMIT)
    queue = selectors.approval_queue(user=user)
    assert keys(panels["approvals_todo"]) == keys(queue[:LIMIT])
    assert panels["approvals_todo_count"] == queue.count() == LIMIT + 2
    assert keys(panels["pending_requests"]) == keys(selectors.pending_requests(user=user)[:LIMIT])
    assert keys(panels["ready_to_activate"]) == keys(selectors.ready_to_activate(user=user)[:LIMIT])
    assert keys(panels["grants_in_force"]) == keys(selectors.my_grants(user=user)["in_force"][:LIMIT])
    assert all(len(panels[name]) == LIMIT for name in ("approvals_todo", "pending_requests", "ready_to_activate"))
    notices = selectors.notification_list(user=user).filter(read_at__isnull=True)[:LIMIT]
    assert keys(panels["unread_notifications"]) == keys(notices)


def test_the_panels_read_their_rows_in_a_fixed_six_queries(full, django_assert_num_queries):
    """The approvals' keys with their count, then their requests; each other panel its keys and rows
    in one statement (the grants, the requests ready to start, those pending), the notices: not the
    queue page's joins and prefetches, and no count apart."""
    user = full.user
    policies.identity_of(user)
    with django_assert_num_queries(6):
        panels = selectors.dashboard_panels(user=user, limit=LIMIT)
        for request in panels["approvals_todo"] + panels["pending_requests"] + panels["ready_to_activate"]:
            assert request.entitlement.system.name and request.beneficiary.name
        for grant in panels["grants_in_force"]:
            assert grant.entitlement.system.name and grant.identity.name


def test_a_count_of_approvals_waiting_when_none_is_shown(alice):
    panels = selectors.dashboard_panels(user=alice.user)
    assert panels["approvals_todo"] == [] and panels["approvals_todo_count"] == 0


def test_the_dashboard_asks_for_the_persons_groups_once(client, alice):
    # given: Alice reviews a live break-glass activation (she owns its entitlement)
    activate(EligibilityFactory(entitlement=BreakGlassEntitlementFactory(owner=alice)))
    client.force_login(alice.user)
    # when
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("dashboard")).content.decode()
    # then: the live panel, the reviews panel and the roles all from one look at her groups
    assert "Live break-glass" in page and "Break-glass reviews" in page
    assert sum('"auth_user_groups"' in q["sql"] for q in queries.captured_queries) == 1


def test_the_findings_panel_shows_the_latest_open_findings_naming_me(client, alice):
    now = timezone.now()

    def finding(i, **kw):
        return Finding.objects.create(
            key=f"test:{i}",
            kind=FindingKind.STALE,
            severity=Severity.MEDIUM,
            status=kw.pop("status", FindingStatus.OPEN),
            owner_to_act=kw.pop("owner_to_act", alice),
            identity=MachineFactory(owner=alice, name=f"bot-{i}"),
            first_seen_at=now - timedelta(days=2),
            last_seen_at=kw.pop("last_seen_at", now),
        )

    # given: seven open findings for Alice (two seen earlier), one resolved, one for someone else
    latest = [finding(i) for i in range(5)]
    earlier = [finding(5 + i, last_seen_at=now - timedelta(hours=1 + i)) for i in range(2)]
    finding(7, status=FindingStatus.RESOLVED)
    finding(8, owner_to_act=PersonFactory())
    client.force_login(alice.user)
    # when
    shown = client.get(reverse("dashboard")).context["findings"]
    # then: the five seen last, newest first (ties: the newest finding first)
    links = [reverse("governance:identity_detail", args=[f.identity_id]) for f in sorted(latest, key=lambda f: f.pk)]
    assert [f.url for f in shown] == links[::-1]
    assert [f.subject for f in shown] == [f"bot-{i}" for i in range(4, -1, -1)]
    assert not {f.url for f in shown} & {reverse("governance:identity_detail", args=[f.identity_id]) for f in earlier}


#
# Each panel's SQL is built once per process: what varies is bound at each run
#
def test_the_panels_read_the_clock_at_each_request(alice, alice_bot, submit):
    """Built once, the SQL still takes the time of each request: what ends in between leaves the panels."""
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        GrantFactory(identity=alice, kind=GrantKind.JIT, expires_at=start + timedelta(hours=1))
        shell = EntitlementFactory(risk_tier=RiskTier.HIGH)
        made = submit(shell, beneficiary=alice_bot)
        access_request_decide(request_id=made.pk, approver=shell.owner.user, decision="approve", stage_position=1)
        made.refresh_from_db()
        panels = selectors.dashboard_panels(user=alice.user)
        assert len(panels["grants_in_force"]) == len(panels["ready_to_activate"]) == 1
    with time_machine.travel(max(made.activation_deadline, start + timedelta(hours=1)) + timedelta(minutes=1)):
        panels = selectors.dashboard_panels(user=alice.user)
        assert panels["grants_in_force"] == panels["ready_to_activate"] == []


def test_the_panels_show_each_person_their_own(alice, submit, make_user):
    """One SQL for everyone of a shape (an identity, active): each run bound to the person asking."""
    bob = PersonFactory(name="Bob")
    mine, bobs = submit(EntitlementFactory()), submit(EntitlementFactory(), actor=bob.user, beneficiary=bob)
    GrantFactory(identity=bob)
    for person, request in ((alice, mine), (bob, bobs), (alice, mine)):
        panels = selectors.dashboard_panels(user=person.user)
        assert keys(panels["pending_requests"]) == [request.pk]
        assert [g.identity.name for g in panels["grants_in_force"]] == ([] if person == alice else ["Bob"])
    # a login without an identity, and a suspended person: other shapes, nothing of anyone else's
    for user in (make_user(roles=("approver",)), PersonFactory(status=IdentityStatus.SUSPENDED).user):
        panels = selectors.dashboard_panels(user=user)
        assert [panels[name] for name in ("pending_requests", "grants_in_force", "approvals_todo")] == [[], [], []]


def test_the_panels_on_a_database_without_arrays_find_the_same_rows(full, monkeypatch):
    """Elsewhere than on PostgreSQL a panel's query is built at each run, its keys picked with `IN`."""
    user = full.user
    on_postgres = selectors.dashboard_panels(user=user, limit=LIMIT)
    monkeypatch.setattr(connection, "vendor", "other")
    elsewhere = selectors.dashboard_panels(user=user, limit=LIMIT)
    monkeypatch.undo()
    assert elsewhere == on_postgres


def test_the_reviews_panel_shows_each_reviewer_their_own():
    """Two reviewers of one shape (the same groups): one SQL, each run bound to the person asking."""
    from jit.templatetags.break_glass_review_tags import review_panel

    alice, bob = PersonFactory(name="Alice"), PersonFactory(name="Bob")
    hers = activate(EligibilityFactory(entitlement=BreakGlassEntitlementFactory(owner=alice)))
    his = activate(EligibilityFactory(entitlement=BreakGlassEntitlementFactory(owner=bob)))
    for person, activation in ((alice, hers), (bob, his), (alice, hers)):
        panel = review_panel(person.user)
        assert [row.pk for row in panel["rows"]] == [activation.pk] and panel["mine"]["total"] == 1
