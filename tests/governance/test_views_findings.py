"""The findings page: who sees what, filters, links and a constant query count. Ref: #3 item 7."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.choices import FindingKind, FindingStatus, Severity
from governance.models import Finding
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory

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
    print(f"\nfindings page: {twenty} queries for 1 or 20 findings")


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
