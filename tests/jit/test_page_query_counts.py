"""The JIT pages run the same number of queries for one row as for a page of rows (no N+1).

Like the approval queue's test (test_views_approvals.py): render the page with one row, add
varied rows (other entitlements and systems, other holders, other states and kinds), render it
again, and compare the counts. A page with several sections starts with one row in each, so a
section's own constant queries are already in the first count and only per-row queries differ.
"""

from datetime import timedelta
from itertools import cycle, islice

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.choices import Connector, FindingKind, FindingStatus, GrantKind, GrantStatus, RiskTier, Severity
from governance.models import Finding, Notification
from jit.choices import RequestStatus, StageStatus
from jit.models import AccessRequest
from jit.services.approvals import access_request_decide
from jit.services.requests import access_request_cancel, access_request_submit
from tests.factories.break_glass import BreakGlassEntitlementFactory, EligibilityFactory, activate
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SystemFactory,
)

pytestmark = pytest.mark.django_db

MORE = 14  # rows added to the first one: ~15 in all
TIERS = cycle([RiskTier.LOW, RiskTier.MEDIUM, RiskTier.HIGH])


def assert_same_count(name: str, one: int, many: int, rows: int, *, first: int = 1) -> None:
    assert one == many, f"{name}: {one} queries with {first} row(s), {many} with {rows}"
    print(f"\n{name}: {many} queries for {first} or {rows} rows")


def submit(actor, beneficiary, entitlement, **kw):
    kw.setdefault("justification", "Fix incident 42")
    kw.setdefault("duration", timedelta(hours=2))
    return access_request_submit(actor=actor.user, beneficiary_id=beneficiary.pk, entitlement_id=entitlement.pk, **kw)


def approve_every_stage(access_request):
    """Each pending stage approved by one of its eligible approvers, until the request is decided."""
    while True:
        access_request.refresh_from_db()
        stage = access_request.stages.filter(status=StageStatus.PENDING).order_by("position").first()
        if access_request.status != RequestStatus.PENDING or stage is None:
            return access_request
        decided = access_request.approvals.values("approver")
        approver = stage.eligible.exclude(pk__in=decided).exclude(pk=access_request.requester_id).first()
        access_request_decide(
            request_id=access_request.pk, approver=approver, decision="approve", stage_position=stage.position
        )


#
# My grants
#
def _jit(identity, **kw):
    kw.setdefault("expires_at", timezone.now() + timedelta(hours=2))
    return GrantFactory(
        identity=identity, kind=GrantKind.JIT, entitlement=EntitlementFactory(risk_tier=next(TIERS)), **kw
    )


def _waiting(identity):
    """Issued, not yet provisioned: no start, so no expiry yet (its clock starts when provisioned)."""
    return _jit(
        identity,
        status=GrantStatus.PENDING_PROVISION,
        granted_at=None,
        expires_at=None,
        approved_duration=timedelta(hours=2),
    )


def grant_makers(alice, alice_bot, backed_up_bot):
    """One grant each: in force (JIT, standing, a bot's, do-not-renew, extension pending),
    waiting for provisioning, and recently ended (released, expired, being removed, past expiry)."""
    now = timezone.now()

    def with_pending_extension():
        grant = _jit(alice, expires_at=now + timedelta(minutes=40))
        submit(alice, alice, grant.entitlement, duration=timedelta(hours=1), renewal_of_id=grant.pk)
        return grant

    in_force = [
        lambda: _jit(alice),
        lambda: _jit(alice_bot, expires_at=now + timedelta(minutes=30)),  # soon, and "do not renew" offered
        lambda: GrantFactory(identity=alice, entitlement=EntitlementFactory(system=SystemFactory())),  # standing
        lambda: _jit(backed_up_bot, no_renew=True),
        with_pending_extension,
    ]
    pending = [
        lambda: _waiting(alice),
        lambda: _waiting(alice_bot),
    ]
    ended = [
        lambda: _jit(alice, status=GrantStatus.REVOKED, end_reason="released", revoked_at=now),
        lambda: _jit(alice_bot, status=GrantStatus.EXPIRED, end_reason="expired", expires_at=now - timedelta(hours=1)),
        lambda: _jit(alice, status=GrantStatus.REVOKING, end_reason="expired", expires_at=now - timedelta(minutes=5)),
        lambda: _jit(backed_up_bot, expires_at=now - timedelta(minutes=10)),  # active, past expiry: shown ended
    ]
    return in_force, pending, ended


def test_my_grants_query_count_does_not_grow_with_the_grants(client, alice, alice_bot, count_queries):
    # given: one grant in each section (in force, waiting for provisioning, recently ended)
    backed_up_bot = MachineFactory(backup_owner=alice)
    in_force, pending, ended = grant_makers(alice, alice_bot, backed_up_bot)
    for section in (in_force, pending, ended):
        section[0]()
    GrantFactory(identity=PersonFactory())  # someone else's: never shown
    client.force_login(alice.user)
    url = reverse("jit:my_grants")
    # when
    one = count_queries(lambda: client.get(url))
    for make in islice(cycle(in_force[1:] + pending[1:] + ended[1:] + in_force[:1]), MORE):
        make()
    many = count_queries(lambda: client.get(url))
    # then
    response = client.get(url)
    shown = {name: len(grants) for name, grants in response.context["groups"].items()}
    assert sum(shown.values()) == 3 + MORE and all(shown.values()), shown
    for variant in (b"extension pending", b"reviewed: not renewable", b"Reviewed: do not renew", b"<td>Standing</td>"):
        assert variant in response.content, variant
    for variant in (b"starts when provisioned", b"Expired", b"Revoked", b"Revoking"):
        assert variant in response.content, variant
    assert_same_count("my grants", one, many, 3 + MORE, first=3)


#
# My requests
#
def request_makers(alice, alice_bot, backed_up_bot):
    """One request each, in every state: pending (for me, my bot, a bot I back up, an extension),
    approved and granted, approved awaiting activation (high risk), denied, cancelled, timed out."""

    def pending_for(beneficiary, requester=alice):
        return lambda: submit(requester, beneficiary, EntitlementFactory(risk_tier=RiskTier.LOW))

    def approved():
        request = approve_every_stage(submit(alice, alice, EntitlementFactory(risk_tier=RiskTier.MEDIUM)))
        assert request.status == RequestStatus.APPROVED and request.grant_id, request.status
        return request

    def awaiting_activation():
        request = approve_every_stage(
            submit(alice, alice_bot, EntitlementFactory(risk_tier=RiskTier.HIGH), ticket="INC-7")
        )
        assert request.status == RequestStatus.APPROVED and request.activation_deadline, request.status
        return request

    def denied():
        request = submit(alice, alice, EntitlementFactory(risk_tier=RiskTier.LOW))
        stage = request.stages.get()
        return access_request_decide(
            request_id=request.pk,
            approver=stage.eligible.first(),
            decision="deny",
            comment="Not needed",
            stage_position=1,
        )

    def cancelled():
        request = submit(alice, alice_bot, EntitlementFactory(risk_tier=RiskTier.LOW))
        return access_request_cancel(request_id=request.pk, actor=alice.user, reason="done already")

    def timed_out():
        request = submit(alice, alice, EntitlementFactory(risk_tier=RiskTier.MEDIUM))
        AccessRequest.objects.filter(pk=request.pk).update(status=RequestStatus.TIMED_OUT, decided_at=timezone.now())
        return request

    def extension():
        grant = GrantFactory(identity=alice, kind=GrantKind.JIT, entitlement=EntitlementFactory(risk_tier=RiskTier.LOW))
        return submit(alice, alice, grant.entitlement, duration=timedelta(hours=1), renewal_of_id=grant.pk)

    return [
        pending_for(alice),
        pending_for(alice_bot),
        pending_for(backed_up_bot, requester=backed_up_bot.owner),  # made by someone else, visible to me
        approved,
        awaiting_activation,
        denied,
        cancelled,
        timed_out,
        extension,
    ]


def test_my_requests_query_count_does_not_grow_with_the_requests(client, alice, alice_bot, count_queries):
    # given
    backed_up_bot = MachineFactory(backup_owner=alice)
    makers = request_makers(alice, alice_bot, backed_up_bot)
    makers[0]()
    stranger = PersonFactory()
    submit(stranger, stranger, EntitlementFactory())  # someone else's: never shown
    client.force_login(alice.user)
    url = reverse("jit:request_list")
    # when
    one = count_queries(lambda: client.get(url))
    for make in islice(cycle(makers[1:] + makers[:1]), MORE):
        make()
    many = count_queries(lambda: client.get(url))
    # then
    response = client.get(url)
    page = response.context["page_obj"]
    assert len(page) == 1 + MORE and b"extension" in response.content
    statuses = {r.status for r in page}
    assert statuses == {
        RequestStatus.PENDING,
        RequestStatus.APPROVED,
        RequestStatus.DENIED,
        RequestStatus.CANCELLED,
        RequestStatus.TIMED_OUT,
    }, statuses
    assert_same_count("my requests", one, many, 1 + MORE)


#
# The request catalogue
#
def test_request_catalogue_query_count_does_not_grow_with_the_entitlements(client, alice, count_queries):
    # given
    EntitlementFactory(name="first")
    client.force_login(alice.user)
    url = reverse("jit:request_catalogue")
    # when
    one = count_queries(lambda: client.get(url))
    shared_system = SystemFactory(name="Shared system")
    for i in range(MORE):
        EntitlementFactory(
            system=shared_system if i % 3 == 0 else SystemFactory(),
            owner=PersonFactory() if i % 2 else MachineFactory().owner,
            risk_tier=[RiskTier.LOW, RiskTier.MEDIUM, RiskTier.HIGH, RiskTier.CRITICAL][i % 4],
            max_duration=timedelta(hours=4) if i % 2 else None,
            justification_required=bool(i % 2),
            ticket_required=i % 3 == 1,
            business_purpose="Operate the service " * (1 + i % 10),
        )
    EntitlementFactory(name="not-requestable", requestable=False)  # never listed
    many = count_queries(lambda: client.get(url))
    # then
    page = client.get(url).context["page_obj"]
    assert len(page) == 1 + MORE
    assert_same_count("request catalogue", one, many, 1 + MORE)


#
# Notifications
#
NOTICE_KINDS = [
    ("request.approval_needed", "Approval needed: db-read for Bob", "Justification: incident", "/access/approvals/"),
    ("request.approved", "Approved: db-read for Alice", "", "/access/requests/1/"),
    ("request.denied", "Denied: db-admin for Alice", "Not needed", "/access/requests/2/"),
    ("grant.expiring", "Your access to db-read ends soon", "Extend it if you still need it.", "/access/grants/"),
    ("request.reminder", "Approval needed: queue-write for svc-1 (reminder)", "", ""),
    ("request.timed_out", "Timed out: db-write for Alice", "Nobody decided in time.", ""),
    ("identity.offboarded", "Bob was offboarded", "", ""),
]


def notice(user, i: int, *, read: bool = False) -> Notification:
    kind, subject, body, link = NOTICE_KINDS[i % len(NOTICE_KINDS)]
    return Notification.objects.create(
        recipient=user,
        kind=kind,
        subject=f"{subject} #{i}",
        body=body,
        link=link,
        key=f"test:{i}",
        read_at=timezone.now() if read else None,
    )


def test_notifications_query_count_does_not_grow_with_the_notifications(client, alice, count_queries):
    # given
    notice(alice.user, 0)
    notice(PersonFactory().user, 1)  # someone else's: never shown
    client.force_login(alice.user)
    url = reverse("jit:notification_list")
    # when
    one = count_queries(lambda: client.get(url))
    for i in range(1, 1 + MORE):
        notice(alice.user, i, read=i % 3 == 0)
    many = count_queries(lambda: client.get(url))
    # then
    page = client.get(url).context["page_obj"]
    assert len(page) == 1 + MORE and {n.kind for n in page} == {kind for kind, *_ in NOTICE_KINDS}
    assert_same_count("notifications", one, many, 1 + MORE)


#
# The dashboard
#
def test_dashboard_query_count_does_not_grow_with_its_panels(client, alice, alice_bot, count_queries):
    """Every panel starts with one row and ends full (the dashboard shows up to 10 or 5 of each)."""
    now = timezone.now()
    manual = SystemFactory(owner=alice, connector=Connector.MANUAL)

    def grant_in_force(i):
        holder = [alice, alice_bot, MachineFactory(owner=alice)][i % 3]
        expires_at = None if i % 4 == 3 else now + timedelta(minutes=30 + 60 * i)
        kind = GrantKind.STANDING if expires_at is None else GrantKind.JIT
        GrantFactory(identity=holder, kind=kind, expires_at=expires_at, entitlement=EntitlementFactory())

    def pending_request(i):
        submit(alice, alice if i % 2 else alice_bot, EntitlementFactory(risk_tier=next(TIERS)))

    def approval_to_do(i):
        # someone else's request for an entitlement I own, from a person who holds access already
        person = PersonFactory()
        GrantFactory(identity=person, kind=GrantKind.JIT)
        beneficiary = person if i % 2 else MachineFactory(owner=person)
        submit(person, beneficiary, EntitlementFactory(owner=alice, risk_tier=next(TIERS)), ticket="INC-9")

    def finding(i):
        subject = {"identity": MachineFactory(owner=alice)} if i % 2 else {"entitlement": EntitlementFactory()}
        Finding.objects.create(
            key=f"test:{i}",
            kind=[FindingKind.STALE, FindingKind.ROTATION_OVERDUE, FindingKind.EXCESSIVE_PRIVILEGE][i % 3],
            severity=Severity.MEDIUM,
            status=FindingStatus.OPEN,
            owner_to_act=alice,
            details={"subject": "test", "reason": "because"},
            first_seen_at=now - timedelta(days=1 + i),
            last_seen_at=now,
            **subject,
        )

    def ready_to_activate(i):
        # high risk: approved, it waits for its holder to start it
        shell = EntitlementFactory(risk_tier=RiskTier.HIGH, system=SystemFactory())
        made = submit(alice, alice if i % 2 else alice_bot, shell)
        access_request_decide(request_id=made.pk, approver=shell.owner.user, decision="approve", stage_position=1)

    def to_provision(i):
        # my system is provisioned by hand: access to put in place, or to take away
        status = GrantStatus.REVOKING if i % 2 else GrantStatus.PENDING_PROVISION
        GrantFactory(status=status, kind=GrantKind.STANDING, entitlement=EntitlementFactory(system=manual))

    def break_glass(i):
        # someone breaks glass into an entitlement I own: live, and mine to review
        activate(EligibilityFactory(entitlement=BreakGlassEntitlementFactory(owner=alice)))

    def add_rows(i):
        grant_in_force(i)
        pending_request(i)
        approval_to_do(i)
        notice(alice.user, i)
        finding(i)
        ready_to_activate(i)
        to_provision(i)
        break_glass(i)

    # given: one row in each panel
    add_rows(0)
    client.force_login(alice.user)
    url = reverse("dashboard")
    one = count_queries(lambda: client.get(url))
    first = client.get(url).context
    panels = ("grants_in_force", "pending_requests", "approvals_todo", "ready_to_activate")
    assert [len(first[p]) for p in panels] == [1, 1, 1, 1]
    assert len(first["break_glass_panel"]["activations"]) == len(_reviews_panel(first)["rows"]) == 1
    # when
    for i in range(1, 1 + MORE):
        add_rows(i)
    many = count_queries(lambda: client.get(url))
    # then: every panel full
    context = client.get(url).context
    assert len(context["grants_in_force"]) == len(context["pending_requests"]) == len(context["approvals_todo"]) == 10
    assert context["approvals_todo_count"] == 1 + MORE
    assert len(context["unread_notifications"]) == 10
    assert len(context["owned"]) == len(context["findings"]) == 5
    assert len(context["ready_to_activate"]) == len(context["break_glass_panel"]["activations"]) == 10
    assert len(context["provisioning"]) == 6 and len(_reviews_panel(context)["rows"]) == 5
    assert _reviews_panel(context)["mine"]["total"] == context["break_glass_panel"]["count"] == 1 + MORE
    assert_same_count("dashboard", one, many, 1 + MORE)


def _reviews_panel(context) -> dict:
    """The break-glass reviews panel's own context (the live panel's is also called `panel`)."""
    return next(c["panel"] for c in context if "panel" in c and "mine" in c["panel"])
