"""The findings page: who sees what, filters, links and a constant query count. Ref: #3 item 7."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from governance.choices import FindingKind, FindingStatus, IdentityStatus, Severity
from governance.models import Finding
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, SystemFactory, with_role

pytestmark = pytest.mark.django_db

URL = "/inventory/findings/"


def make_finding(*, owner_to_act=None, identity=None, entitlement=None, kind=FindingKind.STALE, **kw) -> Finding:
    now = timezone.now()
    subject = identity or entitlement
    if subject is None:
        identity = subject = MachineFactory()
    return Finding.objects.create(
        key=f"{kind}:{subject.pk}:{Finding.objects.count()}",
        kind=kind,
        severity=kw.pop("severity", Severity.MEDIUM),
        identity=identity,
        entitlement=entitlement,
        owner_to_act=owner_to_act,
        details={"subject": f"Subject {subject}", "reason": "Because it is so."},
        first_seen_at=now - timedelta(days=1),
        last_seen_at=now,
        **kw,
    )


@pytest.fixture
def owner_person(make_user):
    return PersonFactory(user=make_user("olu", roles=("requester",)))


def test_url_name_is_stable():
    assert reverse("governance:finding_list") == URL


def test_anonymous_is_sent_to_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_requester_sees_only_findings_they_must_act_on(client, owner_person):
    # given
    mine = make_finding(owner_to_act=owner_person, identity=MachineFactory(owner=owner_person, name="my-bot"))
    theirs = make_finding(owner_to_act=PersonFactory(), identity=MachineFactory(name="their-bot"))
    client.force_login(owner_person.user)

    # when
    response = client.get(URL)

    # then
    assert list(response.context["page_obj"].object_list) == [mine]
    assert b"my-bot" in response.content and b"their-bot" not in response.content
    assert "mine" not in response.context["filter_form"].fields
    assert reverse("governance:identity_detail", args=[mine.identity_id]).encode() in response.content
    assert theirs.pk not in [f.pk for f in response.context["page_obj"].object_list]


def test_requester_without_identity_sees_nothing_and_is_told_why(client, requester):
    make_finding(owner_to_act=PersonFactory())
    client.force_login(requester)
    response = client.get(URL)
    assert len(response.context["page_obj"]) == 0
    assert b"not linked to an identity" in response.content and b"Nothing for you to act on" in response.content


def test_auditor_sees_all_and_filters_by_kind_status_and_mine(client, make_user):
    # given
    auditor_user = make_user("aud", roles=("auditor",))
    me = PersonFactory(user=auditor_user)
    stale = make_finding(owner_to_act=me)
    orphan = make_finding(kind=FindingKind.ORPHANED, owner_to_act=PersonFactory(), severity=Severity.HIGH)
    gone = make_finding(status=FindingStatus.RESOLVED, resolved_at=timezone.now())
    entitlement = EntitlementFactory(name="prod-admin")
    unowned = make_finding(kind=FindingKind.ENTITLEMENT_WITHOUT_OWNER, entitlement=entitlement)
    client.force_login(auditor_user)

    def shown(**params):
        return [f.pk for f in client.get(URL, params).context["page_obj"].object_list]

    # then: open by default, worst first
    assert shown()[0] == orphan.pk and set(shown()) == {stale.pk, orphan.pk, unowned.pk}
    assert shown(kind="orphaned") == [orphan.pk]
    assert shown(status="resolved") == [gone.pk]
    assert set(shown(status="all")) == {stale.pk, orphan.pk, gone.pk, unowned.pk}
    assert shown(mine="on") == [stale.pk]
    assert shown(q="prod-admin") == [unowned.pk]
    page = client.get(URL).content
    assert reverse("governance:entitlement_detail", args=[entitlement.pk]).encode() in page
    assert b"No one" in page  # the entitlement finding has nobody to act


def test_empty_state(client, auditor):
    client.force_login(auditor)
    assert b"No finding matches these filters" in client.get(URL).content


def test_pages(client, auditor):
    for _ in range(30):
        make_finding()
    client.force_login(auditor)
    first, second = client.get(URL), client.get(URL, {"page": 2})
    assert len(first.context["page_obj"]) == 25 and len(second.context["page_obj"]) == 5
    assert b"page=2" in first.content


def test_query_count_does_not_grow_with_the_number_of_findings(client, admin_user, count_queries):
    # given: findings on identities and entitlements, each with its own owner to act
    me = PersonFactory(user=admin_user)
    make_finding(owner_to_act=me)
    client.force_login(admin_user)

    # when
    one = count_queries(lambda: client.get(URL))
    for i in range(19):
        if i % 2:
            make_finding(owner_to_act=PersonFactory(), entitlement=EntitlementFactory(), identity=None)
        else:
            make_finding(owner_to_act=PersonFactory())
    twenty = count_queries(lambda: client.get(URL))

    # then
    assert len(client.get(URL).context["page_obj"]) == 20
    assert one == twenty, f"findings page: {one} queries with 1 row, {twenty} with 20"


def test_findings_sort_by_each_column_header(client, auditor):
    # given four findings: each severity once, other kinds, owners and times in other orders
    now = timezone.now()
    rows = [
        ("critical", FindingKind.STALE, "Cy", 3, 1),
        ("low", FindingKind.ORPHANED, "Al", 1, 4),
        ("high", FindingKind.STALE, "Di", 4, 2),
        ("medium", FindingKind.ORPHANED, "Bo", 2, 3),
    ]
    made = {}
    for severity, kind, owner, days_ago, hours_ago in rows:
        finding = make_finding(severity=severity, kind=kind, owner_to_act=PersonFactory(name=owner))
        Finding.objects.filter(pk=finding.pk).update(
            first_seen_at=now - timedelta(days=days_ago), last_seen_at=now - timedelta(hours=hours_ago)
        )
        made[severity] = finding
    client.force_login(auditor)

    def severities(sort):
        return [f.severity for f in client.get(URL, {"sort": sort}).context["page_obj"].object_list]

    # then severity sorts by rank, not alphabetically, and every other header sorts its column
    assert severities("severity") == ["low", "medium", "high", "critical"]
    assert severities("-severity") == ["critical", "high", "medium", "low"]
    assert severities("owner") == ["low", "medium", "critical", "high"]  # Al, Bo, Cy, Di
    assert severities("-first_seen") == ["low", "medium", "critical", "high"]  # newest first
    assert severities("last_seen") == ["low", "medium", "high", "critical"]  # seen longest ago first
    assert severities("kind") == ["medium", "low", "critical", "high"]  # orphaned, then stale; worst first within
    # an unknown key is ignored: worst first, as without one
    assert severities("details__subject") == severities("") == ["critical", "high", "medium", "low"]
    page = client.get(URL, {"sort": "severity", "kind": ""}).content.decode()
    for key in ["kind", "-severity", "owner", "first_seen", "last_seen"]:
        assert f"sort={key}" in page, key
    assert '<input type="hidden" name="sort" value="severity">' in page  # filtering keeps the order


def test_a_sorted_findings_page_keeps_a_constant_query_count(client, admin_user, count_queries):
    make_finding(owner_to_act=PersonFactory())
    client.force_login(admin_user)
    one = {sort: count_queries(lambda s=sort: client.get(URL, {"sort": s})) for sort in ["owner", "-severity"]}
    for _ in range(15):
        make_finding(owner_to_act=PersonFactory(), severity=Severity.HIGH)
    many = {sort: count_queries(lambda s=sort: client.get(URL, {"sort": s})) for sort in ["owner", "-severity"]}
    assert one == many


#
# At scale: the default order from an index, and the fixes asked once for the page
#
def ownerless(**kw):
    """An entitlement whose owner left: the system's owner (or a delegate) must name a new one."""
    return EntitlementFactory(owner=PersonFactory(status=IdentityStatus.OFFBOARDED), **kw)


def ownerless_finding(entitlement) -> Finding:
    return make_finding(kind=FindingKind.ENTITLEMENT_WITHOUT_OWNER, entitlement=entitlement, identity=None)


def fix_link(finding: Finding) -> str:
    return reverse("governance:finding_fix", args=[finding.pk, "assign-entitlement-owner"])


def test_a_system_owner_is_offered_the_fix_of_each_ownerless_entitlement_they_may_edit(client):
    # given: a system owner (not an admin); ownerless entitlements on their system, on others' systems
    # delegated to them or to their team (guardian), and on others' systems not delegated at all
    olu = with_role(PersonFactory(name="Olu"), "owner")
    team = Group.objects.create(name="platform-team")
    olu.user.groups.add(team)
    on_mine = ownerless_finding(ownerless(system=SystemFactory(owner=olu)))
    to_me, to_team, not_mine = (ownerless_finding(ownerless()) for _ in range(3))
    assign_perm("governance.change_entitlement", olu.user, to_me.entitlement)
    assign_perm("governance.change_entitlement", team, to_team.entitlement)
    client.force_login(olu.user)

    # when
    page = client.get(URL).content.decode()

    # then
    for offered in (on_mine, to_me, to_team):
        assert fix_link(offered) in page
    assert fix_link(not_mine) not in page


def test_ownerless_entitlements_cost_a_system_owner_no_query_each(client, count_queries):
    # Each finding on an entitlement of a system the viewer does not own asked guardian whether it was
    # delegated to them: one query a row (2 more for every such finding on the page).
    olu = with_role(PersonFactory(name="Olu"), "owner")
    SystemFactory(owner=olu)
    delegated = ownerless_finding(ownerless())
    assign_perm("governance.change_entitlement", olu.user, delegated.entitlement)
    ownerless_finding(ownerless())
    client.force_login(olu.user)

    two = count_queries(lambda: client.get(URL))
    for _ in range(8):
        ownerless_finding(ownerless())
    ten = count_queries(lambda: client.get(URL))

    page = client.get(URL)
    assert len(page.context["page_obj"]) == 10 and fix_link(delegated) in page.content.decode()
    assert two == ten, f"findings page of a system owner: {two} queries with 2 ownerless entitlements, {ten} with 10"


@pytest.mark.postgres
def test_the_default_page_reads_the_worst_open_findings_off_an_index_without_sorting_them(client, auditor):
    # Worst first ranked and sorted every open finding: 16-24 ms at 26,000. The page's keys are read in
    # order off the open findings' index instead, and the read stops at the page's end (no Sort node).
    for severity in Severity.values * 3:
        make_finding(severity=severity)
    make_finding(status=FindingStatus.RESOLVED, resolved_at=timezone.now())
    client.force_login(auditor)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(URL).status_code == 200
    (keys,) = [
        q["sql"] for q in ctx.captured_queries if q["sql"].startswith('SELECT "governance_finding"."id" AS "pk"')
    ]
    assert "ORDER BY CASE" in keys and "LIMIT" in keys, keys

    with connection.cursor() as cursor:
        # A few rows: show what the planner CAN do at scale. Without an index in the page's order, a Sort
        # stays in the plan whatever these say; with one, the other partial index no longer looks cheaper.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {keys}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "gov_finding_open_worst_idx" in plan, plan
    assert "Sort" not in plan, plan
