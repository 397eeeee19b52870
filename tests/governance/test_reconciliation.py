"""Reconciliation: what a target grants against the grants in force, drift both ways, and its fixes.

A stand-in connector plays the target (registered in place of `manual`): its holdings are what the
test says; provisioning, revoking and removing change them. Ref: issue 15 part 4.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent, OutboxMessage, OutboxStatus
from audit.outbox import outbox_dispatch
from governance.choices import FindingKind, FindingStatus, GrantKind, GrantStatus, IdentityStatus, Severity
from governance.connectors import CONNECTORS, BaseConnector, Holding, Outcome, PermanentError
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import Campaign, Finding, Grant, Notification, ReviewItem, System
from governance.models.certification import CampaignKind
from governance.services.findings import findings_scan
from governance.services.grants import grant_confirm_provisioned, grant_confirm_revoked
from governance.services.reconciliation import (
    drift_scope,
    finding_adopt,
    finding_reprovision,
    finding_revoke_at_target,
    system_reconcile,
    systems_reconcile_due,
    ungoverned_key,
)
from governance.tasks import systems_reconcile_task
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SystemFactory,
    with_role,
)

pytestmark = pytest.mark.django_db

UNGOVERNED, MISSING = FindingKind.UNGOVERNED_ACCESS, FindingKind.MISSING_AT_TARGET


class Target(BaseConnector):
    """A target whose access is a set the test controls; it notes whether a transaction was open when read."""

    held: set[Holding] = set()
    reads_in_transaction: list[bool] = []
    during_read = None  # a callable run while the target is being read (something changing meanwhile)

    def holdings(self) -> set[Holding]:
        Target.reads_in_transaction.append(connection.in_atomic_block)
        if Target.during_read is not None:
            Target.during_read()
        return set(Target.held)

    def provision(self, grant) -> Outcome:
        Target.held.add(Holding(self.account_for(grant.identity), self.target_name_for(grant.entitlement)))
        return Outcome.CONFIRMED

    def revoke(self, grant) -> Outcome:
        Target.held.discard(Holding(self.account_for(grant.identity), self.target_name_for(grant.entitlement)))
        return Outcome.CONFIRMED

    def remove_holding(self, holding: Holding) -> Outcome:
        Target.reads_in_transaction.append(connection.in_atomic_block)
        Target.held.discard(holding)
        return Outcome.CONFIRMED


class RefusingTarget(Target):
    def remove_holding(self, holding: Holding) -> Outcome:
        raise PermanentError("role is owned by the database owner")


class BlindTarget(BaseConnector):
    """A connector that cannot tell what its target grants (as `manual` really is)."""


class DownTarget(BaseConnector):
    def holdings(self) -> set[Holding]:
        raise ConnectionError("connection refused")


@pytest.fixture
def target(monkeypatch):
    """Every `manual` system is the stand-in target; `webhook` systems are a target that is down."""
    monkeypatch.setitem(CONNECTORS, "manual", f"{__name__}.Target")
    monkeypatch.setitem(CONNECTORS, "webhook", f"{__name__}.DownTarget")
    monkeypatch.setattr(Target, "held", set())
    monkeypatch.setattr(Target, "reads_in_transaction", [])
    monkeypatch.setattr(Target, "during_read", None)
    return Target


@pytest.fixture
def estate(target):
    """A system with two roles; app-a holds `reader` by a grant; app-b is known but holds nothing."""
    owner = with_role(PersonFactory(name="Sam Sysowner", user__username="sam"), "owner")
    system = SystemFactory(name="Billing DB", owner=owner)
    reader = EntitlementFactory(system=system, name="reader")
    writer = EntitlementFactory(system=system, name="writer-role", target_name="writer")
    app_a = MachineFactory(name="app-a", external_id="app-a")
    app_b = MachineFactory(name="app-b", external_id="app-b")
    grant = GrantFactory(identity=app_a, entitlement=reader)
    return {
        "owner": owner,
        "system": system,
        "reader": reader,
        "writer": writer,
        "a": app_a,
        "b": app_b,
        "grant": grant,
    }


def open_drift(system) -> dict[str, Finding]:
    return {f.key: f for f in drift_scope(system.pk).filter(status=FindingStatus.OPEN)}


def reconcile(system, actor=None) -> dict:
    return system_reconcile(system_id=system.pk, actor=actor)


#
# Drift both ways
#
def test_access_without_a_grant_and_a_grant_the_target_lacks_are_both_found(estate, target):
    # given the target grants app-b the writer role and an unknown account the reader role, but not app-a's grant
    system = estate["system"]
    target.held = {Holding("app-b", "writer"), Holding("ghost", "reader")}

    # when
    result = reconcile(system)

    # then
    assert (result["ungoverned"], result["missing"], result["opened"]) == (2, 1, 3)
    findings = open_drift(system)
    known = findings[ungoverned_key(system.pk, Holding("app-b", "writer"))]
    assert known.kind == UNGOVERNED and known.severity == Severity.HIGH
    assert (known.identity_id, known.entitlement_id) == (estate["b"].pk, estate["writer"].pk)
    assert known.owner_to_act_id == estate["owner"].pk
    assert known.details | {"subject": "", "reason": ""} == {
        "subject": "",
        "reason": "",
        "account": "app-b",
        "target_name": "writer",
        "system": system.pk,
        "system_name": "Billing DB",
    }
    ghost = findings[ungoverned_key(system.pk, Holding("ghost", "reader"))]
    assert ghost.identity_id is None and ghost.entitlement_id == estate["reader"].pk
    missing = findings[f"missing_at_target:{system.pk}:{estate['grant'].pk}"]
    assert missing.kind == MISSING and missing.grant_id == estate["grant"].pk
    assert missing.owner_to_act_id == estate["owner"].pk and missing.details["account"] == "app-a"

    system.refresh_from_db()
    assert system.last_reconciled_at is not None
    reconciled = AuditEvent.objects.get(action=AuditAction.SYSTEM_RECONCILED, target_id=str(system.pk))
    assert reconciled.data["ungoverned"] == 2 and reconciled.data["missing"] == 1 and reconciled.data["holdings"] == 2
    assert AuditEvent.objects.filter(action=AuditAction.FINDING_OPENED).count() == 3


def test_a_second_run_refreshes_instead_of_opening_again(estate, target):
    system = estate["system"]
    target.held = {Holding("ghost", "reader")}
    reconcile(system)
    first = {key: f.last_seen_at for key, f in open_drift(system).items()}

    result = reconcile(system)

    assert (result["opened"], result["still_open"], result["resolved"]) == (0, 2, 0)
    again = open_drift(system)
    assert again.keys() == first.keys() and all(again[k].last_seen_at >= first[k] for k in first)
    assert AuditEvent.objects.filter(action=AuditAction.FINDING_OPENED).count() == 2
    assert AuditEvent.objects.filter(action=AuditAction.SYSTEM_RECONCILED).count() == 2


def test_findings_resolve_when_the_target_matches_the_grants_again(estate, target):
    system = estate["system"]
    target.held = {Holding("ghost", "reader")}
    reconcile(system)

    target.held = {Holding("app-a", "reader")}  # someone removed ghost's access and put app-a's back
    result = reconcile(system)

    assert result["resolved"] == 2 and open_drift(system) == {}
    assert drift_scope(system.pk).filter(status=FindingStatus.RESOLVED, resolved_at__isnull=False).count() == 2
    assert AuditEvent.objects.filter(action=AuditAction.FINDING_RESOLVED).count() == 2


def test_work_in_flight_is_not_drift_either_way(estate, target):
    # given grants waiting for provisioning or removal, or whose removal failed
    system, reader = estate["system"], estate["reader"]
    Grant.objects.filter(pk=estate["grant"].pk).update(status=GrantStatus.PENDING_PROVISION, granted_at=None)
    revoking = GrantFactory(
        identity=MachineFactory(external_id="app-c"), entitlement=reader, status=GrantStatus.REVOKING
    )
    GrantFactory(identity=MachineFactory(external_id="app-d"), entitlement=reader, status=GrantStatus.REVOKE_FAILED)
    target.held = {Holding("app-c", "reader"), Holding("app-d", "reader")}

    # when
    result = reconcile(system)

    # then nothing is drift: the target is being changed
    assert (result["ungoverned"], result["missing"]) == (0, 0) and open_drift(system) == {}
    assert revoking.pk


def test_a_grant_past_its_expiry_is_expected_nowhere_and_explains_its_access(estate, target):
    # the sweep has not reached it yet: its access at the target is on its way out, and its absence is right
    system = estate["system"]
    Grant.objects.filter(pk=estate["grant"].pk).update(
        kind=GrantKind.JIT, expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert reconcile(system)["missing"] == 0
    target.held = {Holding("app-a", "reader")}
    assert reconcile(system)["ungoverned"] == 0


def test_a_grant_whose_identity_has_no_account_name_is_left_out(estate, target):
    system = estate["system"]
    GrantFactory(identity=MachineFactory(external_id=None), entitlement=estate["writer"])
    target.held = {Holding("app-a", "reader")}

    assert reconcile(system)["missing"] == 0


def test_changes_while_the_target_is_read_are_not_drift(estate, target):
    # given a grant confirmed and another removed while the holdings are being read
    system = estate["system"]
    pending = Grant.objects.create(
        identity=estate["b"], entitlement=estate["writer"], status=GrantStatus.PENDING_PROVISION
    )
    leaving = GrantFactory(identity=MachineFactory(external_id="app-c"), entitlement=estate["writer"])
    Grant.objects.filter(pk=leaving.pk).update(status=GrantStatus.REVOKING)

    def meanwhile():
        grant_confirm_provisioned(grant_id=pending.pk, actor=None)
        grant_confirm_revoked(grant_id=leaving.pk, actor=None)

    target.during_read = meanwhile
    # the target was read before the one was provisioned and before the other was removed
    target.held = {Holding("app-a", "reader"), Holding("app-c", "writer")}

    # when
    result = reconcile(system)

    # then neither is drift: the next run sees the target as it is by then
    assert (result["ungoverned"], result["missing"]) == (0, 0)


def test_long_account_and_target_names_get_a_short_stable_key(estate, target):
    system = estate["system"]
    long = Holding("svc-" + "x" * 300, "role:with:colons")
    target.held = {long, Holding("app-a", "reader")}

    reconcile(system)
    reconcile(system)

    (finding,) = open_drift(system).values()
    assert len(finding.key) <= 200 and finding.key == ungoverned_key(system.pk, long)
    assert finding.details["account"] == long.account and finding.details["target_name"] == long.target_name


def test_an_account_two_identities_share_links_neither(estate, target):
    MachineFactory(name="twin", email="shared@example.org")
    MachineFactory(name="twin2", email="shared@example.org")
    system = estate["system"]
    System.objects.filter(pk=system.pk).update(connector_settings={"account_attribute": "email"})
    target.held = {Holding("shared@example.org", "reader")}

    reconcile(system)

    finding = drift_scope(system.pk).get(kind=UNGOVERNED, status=FindingStatus.OPEN)
    assert finding.identity_id is None and finding.entitlement_id == estate["reader"].pk


def test_a_connector_that_cannot_tell_changes_nothing(estate, monkeypatch):
    monkeypatch.setitem(CONNECTORS, "manual", f"{__name__}.BlindTarget")
    result = reconcile(estate["system"])
    assert result == {"system": estate["system"].pk, "can_tell": False}
    assert not Finding.objects.exists()
    assert not AuditEvent.objects.filter(action=AuditAction.SYSTEM_RECONCILED).exists()


#
# The hygiene scan and reconciliation own different findings
#
def test_the_hygiene_scan_leaves_drift_findings_open(estate, target):
    # given drift found by reconciliation, and a hygiene problem
    system = estate["system"]
    target.held = {Holding("ghost", "reader")}
    reconcile(system)
    stale = MachineFactory(credential_type="static_secret", secret_location="unknown")

    # when the 15-minute scan runs
    summary = findings_scan()

    # then the drift findings stay open and the scan handles its own kinds only
    assert len(open_drift(system)) == 2 and summary["resolved"] == 0
    assert Finding.objects.filter(key=f"secret_outside_manager:{stale.pk}", status=FindingStatus.OPEN).exists()
    # and reconciling leaves the hygiene finding alone
    target.held = {Holding("app-a", "reader")}
    reconcile(system)
    assert Finding.objects.filter(key=f"secret_outside_manager:{stale.pk}", status=FindingStatus.OPEN).exists()


def test_reconciling_one_system_leaves_another_systems_drift_alone(estate, target):
    other = EntitlementFactory(name="reader")  # same target name, another system
    target.held = {Holding("ghost", "reader")}
    reconcile(other.system)
    assert len(open_drift(other.system)) == 1

    target.held = set()
    reconcile(estate["system"])

    assert len(open_drift(other.system)) == 1


#
# Permissions (IDOR: another system's owner may not act)
#
def test_only_the_system_owner_or_an_admin_reconciles_and_fixes(estate, target, admin_user):
    system = estate["system"]
    other_owner = with_role(PersonFactory(), "owner")
    SystemFactory(owner=other_owner)
    auditor = PersonFactory(user__roles=["auditor"])
    target.held = {Holding("app-b", "writer")}
    reconcile(system, actor=estate["owner"].user)
    ungoverned = drift_scope(system.pk).get(kind=UNGOVERNED)
    missing = drift_scope(system.pk).get(kind=MISSING)

    for intruder in (other_owner.user, auditor.user, estate["b"].owner.user):
        with pytest.raises(PermissionRefused):
            reconcile(system, actor=intruder)
        with pytest.raises(PermissionRefused):
            finding_revoke_at_target(finding_id=ungoverned.pk, actor=intruder)
        with pytest.raises(PermissionRefused):
            finding_adopt(finding_id=ungoverned.pk, actor=intruder)
        with pytest.raises(PermissionRefused):
            finding_reprovision(finding_id=missing.pk, actor=intruder)
    assert len(open_drift(system)) == 2 and not OutboxMessage.objects.exists()
    assert not Grant.objects.filter(identity=estate["b"]).exists()
    assert reconcile(system, actor=admin_user)["can_tell"]


def test_a_refusal_comes_before_anything_about_the_findings_state(estate, target, admin_user):
    # a resolved drift finding, and a hygiene finding (not drift at all)
    system = estate["system"]
    target.held = {Holding("app-a", "reader"), Holding("app-b", "writer")}
    reconcile(system)
    drift = drift_scope(system.pk).get(kind=UNGOVERNED)
    finding_adopt(finding_id=drift.pk, actor=estate["owner"].user)
    stale = Finding.objects.create(
        key="stale:x", kind=FindingKind.STALE, first_seen_at=timezone.now(), last_seen_at=timezone.now()
    )
    intruder = with_role(PersonFactory(), "owner").user

    with pytest.raises(PermissionRefused):
        finding_adopt(finding_id=drift.pk, actor=intruder)  # not "resolved already"
    for fix in (finding_adopt, finding_revoke_at_target, finding_reprovision):
        with pytest.raises(PermissionRefused):
            fix(finding_id=stale.pk, actor=estate["owner"].user)
        with pytest.raises(ValidationFailed, match="not drift"):
            fix(finding_id=stale.pk, actor=admin_user)
    with pytest.raises(InvalidTransition, match="resolved already"):
        finding_adopt(finding_id=drift.pk, actor=admin_user)


def test_another_systems_owner_is_refused_on_the_pages(client, estate, target):
    system = estate["system"]
    target.held = {Holding("app-b", "writer")}
    reconcile(system)
    ungoverned = drift_scope(system.pk).get(kind=UNGOVERNED)
    missing = drift_scope(system.pk).get(kind=MISSING)
    client.force_login(with_role(PersonFactory(), "owner").user)

    assert client.post(reverse("governance:finding_adopt", args=[ungoverned.pk])).status_code == 403
    assert client.post(reverse("governance:finding_revoke_at_target", args=[ungoverned.pk])).status_code == 403
    assert client.post(reverse("governance:finding_reprovision", args=[missing.pk])).status_code == 403
    assert client.post(reverse("governance:system_reconcile", args=[system.pk])).status_code == 403
    page = client.get(reverse("governance:finding_list")).content.decode()
    assert "app-b" in page and "Adopt and send to review" not in page
    assert len(open_drift(system)) == 2 and not OutboxMessage.objects.exists()


def test_someone_who_cannot_see_the_finding_gets_not_found(client, estate, target):
    target.held = {Holding("app-b", "writer")}
    reconcile(estate["system"])
    ungoverned = drift_scope(estate["system"].pk).get(kind=UNGOVERNED)
    client.force_login(PersonFactory().user)  # a requester: sees only findings they must act on

    assert client.post(reverse("governance:finding_adopt", args=[ungoverned.pk])).status_code == 404
    assert client.get(reverse("governance:finding_adopt", args=[ungoverned.pk])).status_code == 405


#
# The target is read with no transaction open
#
@pytest.mark.django_db(transaction=True)
def test_the_target_is_read_and_changed_with_no_transaction_open(target):
    owner = PersonFactory()
    system = SystemFactory(owner=owner)
    EntitlementFactory(system=system, name="reader")
    target.held = {Holding("ghost", "reader")}

    reconcile(system)
    finding = drift_scope(system.pk).get()
    finding_revoke_at_target(finding_id=finding.pk, actor=owner.user)
    outbox_dispatch()

    assert target.reads_in_transaction == [False, False]  # the holdings read, then the removal
    finding.refresh_from_db()
    assert finding.status == FindingStatus.RESOLVED and target.held == set()


#
# Fixes, end to end through the outbox
#
def test_revoke_at_the_target_removes_the_access_and_resolves_the_finding(estate, target):
    # given
    system, owner = estate["system"], estate["owner"]
    target.held = {Holding("app-a", "reader"), Holding("ghost", "reader")}
    reconcile(system)
    finding = drift_scope(system.pk).get(kind=UNGOVERNED)

    # when the system owner asks, twice (a double click)
    finding_revoke_at_target(finding_id=finding.pk, actor=owner.user)
    finding_revoke_at_target(finding_id=finding.pk, actor=owner.user)

    # then one removal is on its way, and the finding stays open until the target confirms
    assert OutboxMessage.objects.filter(kind="connector.remove_holding").count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.HOLDING_REVOKE_REQUESTED).count() == 1
    finding.refresh_from_db()
    assert finding.status == FindingStatus.OPEN and finding.details["removal_asked_at"]
    # and a reconciliation meanwhile keeps the ask on the finding
    reconcile(system)
    finding.refresh_from_db()
    assert finding.details["removal_asks"] == 1

    # when the dispatcher delivers it
    assert outbox_dispatch().delivered == 1

    # then
    assert target.held == {Holding("app-a", "reader")}
    finding.refresh_from_db()
    assert finding.status == FindingStatus.RESOLVED
    removed = AuditEvent.objects.get(action=AuditAction.HOLDING_REVOKED)
    assert removed.target_id == str(finding.pk) and removed.data["account"] == "ghost"
    assert reconcile(system)["ungoverned"] == 0


def test_a_refused_removal_shows_on_the_finding_and_can_be_asked_again(estate, target, monkeypatch, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 1
    monkeypatch.setitem(CONNECTORS, "manual", f"{__name__}.RefusingTarget")
    system, owner = estate["system"], estate["owner"]
    target.held = {Holding("ghost", "reader"), Holding("app-a", "reader")}
    reconcile(system)
    finding = drift_scope(system.pk).get(kind=UNGOVERNED)

    finding_revoke_at_target(finding_id=finding.pk, actor=owner.user)
    assert outbox_dispatch().dead == 1

    finding.refresh_from_db()
    assert finding.status == FindingStatus.OPEN and "owned by the database owner" in finding.details["removal_error"]
    assert Notification.objects.filter(recipient=owner.user, kind="system.holding_removal_failed").exists()
    monkeypatch.setitem(CONNECTORS, "manual", f"{__name__}.Target")  # fixed at the target
    finding_revoke_at_target(finding_id=finding.pk, actor=owner.user)
    assert outbox_dispatch().delivered == 1
    finding.refresh_from_db()
    assert finding.status == FindingStatus.RESOLVED


def test_a_connector_that_cannot_remove_access_says_so(estate, monkeypatch, target):
    class ListsOnly(BaseConnector):
        def holdings(self):
            return {Holding("ghost", "reader")}

    monkeypatch.setattr(f"{__name__}.ListsOnly", ListsOnly, raising=False)
    monkeypatch.setitem(CONNECTORS, "manual", f"{__name__}.ListsOnly")
    reconcile(estate["system"])
    finding = drift_scope(estate["system"].pk).get(kind=UNGOVERNED)

    with pytest.raises(ValidationFailed, match="by hand"):
        finding_revoke_at_target(finding_id=finding.pk, actor=estate["owner"].user)
    assert not OutboxMessage.objects.exists()


def test_adopting_makes_an_active_standing_grant_without_provisioning_and_sends_it_to_review(estate, target):
    # given app-b holds writer at the target with no grant
    system, owner, writer = estate["system"], estate["owner"], estate["writer"]
    target.held = {Holding("app-a", "reader"), Holding("app-b", "writer")}
    reconcile(system)
    finding = drift_scope(system.pk).get(kind=UNGOVERNED)

    # when the system owner adopts it
    grant = finding_adopt(finding_id=finding.pk, actor=owner.user)

    # then the grant is active at once, standing, says where it came from, and nothing asked the target
    grant.refresh_from_db()
    assert (grant.status, grant.kind, grant.identity_id, grant.entitlement_id) == (
        GrantStatus.ACTIVE,
        GrantKind.STANDING,
        estate["b"].pk,
        writer.pk,
    )
    assert f"finding #{finding.pk}" in grant.reason and grant.granted_at is not None
    # no provisioning call: the access exists; only the target's own end (postgresql VALID UNTIL) is told it is standing
    assert set(OutboxMessage.objects.filter(kind__startswith="connector.").values_list("kind", flat=True)) <= {
        "connector.extend"
    }
    adopted = AuditEvent.objects.get(action=AuditAction.GRANT_ADOPTED)
    assert adopted.target_id == str(grant.pk) and adopted.data["finding"] == finding.pk
    assert adopted.actor_user_id == owner.user.pk
    finding.refresh_from_db()
    assert finding.status == FindingStatus.RESOLVED and finding.grant_id == grant.pk
    # and its entitlement's owner reviews it in a micro-review
    item = ReviewItem.objects.get(grant=grant)
    assert item.campaign.kind == CampaignKind.EVENT and item.reviewer_id == writer.owner.user_id
    assert "adopted" in item.campaign.name
    # and the next reconciliation finds nothing to say about it
    assert reconcile(system)["ungoverned"] == 0


def test_only_access_that_maps_to_an_active_identity_and_entitlement_is_adopted(estate, target):
    system, owner = estate["system"], estate["owner"]
    target.held = {Holding("ghost", "reader"), Holding("app-b", "writer"), Holding("app-a", "reader")}
    reconcile(system)
    ghost = drift_scope(system.pk).get(kind=UNGOVERNED, identity__isnull=True)
    app_b = drift_scope(system.pk).get(kind=UNGOVERNED, identity__isnull=False)

    with pytest.raises(ValidationFailed, match="maps to no single identity"):
        finding_adopt(finding_id=ghost.pk, actor=owner.user)
    estate["b"].__class__.objects.filter(pk=estate["b"].pk).update(status=IdentityStatus.OFFBOARDED)
    with pytest.raises(ValidationFailed, match="revoke the access at the target instead"):
        finding_adopt(finding_id=app_b.pk, actor=owner.user)
    assert not Grant.objects.filter(identity=estate["b"]).exists() and not Campaign.objects.exists()
    assert len(open_drift(system)) == 2


def test_a_resolved_finding_is_not_fixed_twice(estate, target):
    system, owner = estate["system"], estate["owner"]
    target.held = {Holding("app-a", "reader"), Holding("app-b", "writer")}
    reconcile(system)
    finding = drift_scope(system.pk).get(kind=UNGOVERNED)
    finding_adopt(finding_id=finding.pk, actor=owner.user)

    with pytest.raises(InvalidTransition):
        finding_adopt(finding_id=finding.pk, actor=owner.user)
    with pytest.raises(InvalidTransition):
        finding_revoke_at_target(finding_id=finding.pk, actor=owner.user)
    assert Grant.objects.filter(identity=estate["b"]).count() == 1


def test_reprovisioning_asks_the_target_again_and_the_grant_is_active_once_it_confirms(estate, target, admin_user):
    # given app-a's grant is missing at the target
    system, grant = estate["system"], estate["grant"]
    reconcile(system)
    finding = drift_scope(system.pk).get(kind=MISSING)

    # when an admin asks for it again
    finding_reprovision(finding_id=finding.pk, actor=admin_user)

    # then the grant waits for the target, and the finding is resolved (the grant is work in flight)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PENDING_PROVISION
    finding.refresh_from_db()
    assert finding.status == FindingStatus.RESOLVED
    retried = AuditEvent.objects.get(action=AuditAction.GRANT_PROVISION_RETRIED, target_id=str(grant.pk))
    assert retried.data["finding"] == finding.pk
    assert reconcile(system)["missing"] == 0  # in flight: not drift

    # when the dispatcher delivers it
    outbox_dispatch()

    # then
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE and Holding("app-a", "reader") in target.held
    result = reconcile(system)
    assert (result["missing"], result["ungoverned"]) == (0, 0)


def test_reprovisioning_a_grant_that_ended_is_refused(estate, target):
    system = estate["system"]
    reconcile(system)
    finding = drift_scope(system.pk).get(kind=MISSING)
    Grant.objects.filter(pk=estate["grant"].pk).update(status=GrantStatus.REVOKED)

    with pytest.raises(InvalidTransition, match="no longer active"):
        finding_reprovision(finding_id=finding.pk, actor=estate["owner"].user)


#
# On a schedule, and on request
#
def test_the_beat_reconciles_due_systems_and_a_failing_target_stops_no_other(estate, target, settings, caplog):
    settings.RECONCILE_INTERVAL_MINUTES = 60
    # given a due system, a system reconciled a moment ago, one whose target is down, and a retired one
    due = estate["system"]
    recent = SystemFactory(last_reconciled_at=timezone.now())
    down = SystemFactory(connector="webhook", name="Down system")
    SystemFactory(status="retired")
    target.held = {Holding("ghost", "reader")}

    # when
    result = systems_reconcile_task()

    # then
    assert result["reconciled"] == 1 and result["ungoverned"] == 1 and result["missing"] == 1
    assert [f["system"] for f in result["failed"]] == [down.pk] and "connection refused" in result["failed"][0]["error"]
    assert "Reconciling system" in caplog.text
    assert Notification.objects.filter(recipient=down.owner.user, kind="system.reconcile_failed").count() == 1
    recent.refresh_from_db()
    assert AuditEvent.objects.filter(action=AuditAction.SYSTEM_RECONCILED).count() == 1
    assert len(open_drift(due)) == 2

    # when run again at once: nothing is due but the failing one, whose owner hears once a day only
    again = systems_reconcile_due()
    assert again["reconciled"] == 0 and len(again["failed"]) == 1
    assert Notification.objects.filter(recipient=down.owner.user, kind="system.reconcile_failed").count() == 1


def test_reconcile_now_from_a_page_goes_through_a_worker(client, estate, target):
    system, owner = estate["system"], estate["owner"]
    target.held = {Holding("ghost", "reader")}
    client.force_login(owner.user)
    url = reverse("governance:system_reconcile", args=[system.pk])
    assert url == f"/inventory/findings/reconcile/{system.pk}/"

    response = client.post(url, follow=True)
    assert "Reconciliation of Billing DB asked" in response.content.decode()
    assert "already on its way" in client.post(url, follow=True).content.decode()
    assert OutboxMessage.objects.filter(kind="system.reconcile", status=OutboxStatus.PENDING).count() == 1
    assert not Finding.objects.exists()  # the request did not wait on the target

    outbox_dispatch()

    assert len(open_drift(system)) == 2
    event = AuditEvent.objects.get(action=AuditAction.SYSTEM_RECONCILED)
    assert event.data["requested_by"] == "sam"


def test_reconcile_now_is_refused_for_a_connector_that_cannot_tell(client, estate, monkeypatch):
    monkeypatch.setitem(CONNECTORS, "manual", f"{__name__}.BlindTarget")
    client.force_login(estate["owner"].user)
    response = client.post(reverse("governance:system_reconcile", args=[estate["system"].pk]), follow=True)
    assert "cannot list what Billing DB grants" in response.content.decode()
    assert not OutboxMessage.objects.exists()


#
# The findings page
#
def test_the_page_shows_drift_with_its_fixes_and_a_message_after_each(client, estate, target):
    system, owner = estate["system"], estate["owner"]
    target.held = {Holding("app-b", "writer"), Holding("ghost", "reader")}
    reconcile(system)
    client.force_login(owner.user)

    page = client.get(reverse("governance:finding_list"), {"kind": UNGOVERNED}).content.decode()
    assert "<code>app-b</code>" in page and "<code>writer</code>" in page and "Billing DB" in page
    assert page.count("Revoke at the target<span") == 2 and page.count("Adopt and send to review<span") == 1
    page = client.get(reverse("governance:finding_list"), {"kind": MISSING}).content.decode()
    assert "Provision again<span" in page

    finding = drift_scope(system.pk).get(kind=UNGOVERNED, identity__isnull=False)
    response = client.post(
        reverse("governance:finding_adopt", args=[finding.pk]), {"query": f"kind={UNGOVERNED}"}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"/inventory/findings/?kind={UNGOVERNED}"
    assert "Adopted as standing grant" in response.content.decode()
    response = client.post(reverse("governance:finding_adopt", args=[finding.pk]), follow=True)
    assert "resolved already" in response.content.decode()
    response = client.post(reverse("governance:finding_reprovision", args=[finding.pk]), follow=True)
    assert "is not “Grant the target does not hold”" in response.content.decode()


def test_the_findings_search_finds_drift_by_account_and_system(client, estate, target, auditor):
    target.held = {Holding("ghost", "reader"), Holding("app-a", "reader")}
    reconcile(estate["system"])
    client.force_login(auditor)
    assert "<code>ghost</code>" in client.get(reverse("governance:finding_list"), {"q": "ghost"}).content.decode()
    page = client.get(reverse("governance:finding_list"), {"q": "Billing"}).content.decode()
    assert "<code>ghost</code>" in page and "Revoke at the target" not in page  # an auditor only reads


#
# Query counts: constant in the number of grants, holdings and findings
#
def _estate_of(size: int, system) -> set[Holding]:
    reader = EntitlementFactory(system=system, name=f"reader-{size}")
    held = set()
    for n in range(size):
        GrantFactory(identity=MachineFactory(external_id=f"g{size}-{n}"), entitlement=reader)
        MachineFactory(external_id=f"u{size}-{n}")
        held.add(Holding(f"u{size}-{n}", f"reader-{size}"))  # ungoverned, and every grant missing
    return held


def test_reconciling_costs_the_same_number_of_queries_for_2_or_30_grants(target):
    counts = []
    for size in (2, 30):
        system = SystemFactory()
        target.held = _estate_of(size, system)
        with CaptureQueriesContext(connection) as ctx:
            result = reconcile(system)
        assert (result["ungoverned"], result["missing"]) == (size, size)
        with CaptureQueriesContext(connection) as again:
            reconcile(system)
        counts.append((len(ctx.captured_queries), len(again.captured_queries)))
    assert counts[0] == counts[1]


def test_the_findings_page_with_drift_costs_the_same_for_1_or_20_rows(client, admin_user, target, count_queries):
    client.force_login(admin_user)
    url = reverse("governance:finding_list")
    system = SystemFactory()
    EntitlementFactory(system=system, name="reader")
    target.held = {Holding("u-0", "reader")}
    reconcile(system)
    one = count_queries(lambda: client.get(url))
    target.held = {Holding(f"u-{n}", "reader") for n in range(20)}
    reconcile(system)
    assert count_queries(lambda: client.get(url)) == one


def test_a_reprovisioned_just_in_time_grant_keeps_its_expiry(estate, target):
    # given a JIT grant the target lost, with two hours left
    system, grant = estate["system"], estate["grant"]
    ends = timezone.now() + timedelta(hours=2)
    Grant.objects.filter(pk=grant.pk).update(kind=GrantKind.JIT, expires_at=ends, approved_duration=timedelta(hours=4))
    reconcile(system)

    # when it is provisioned again
    finding_reprovision(finding_id=drift_scope(system.pk).get(kind=MISSING).pk, actor=estate["owner"].user)
    outbox_dispatch()

    # then it ends when it was going to: provisioning again is not an extension
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE and grant.expires_at == ends
