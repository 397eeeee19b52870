"""A finding closes as soon as it is fixed, and owners fix findings in one step. Ref: #16 Owner 1-2.

The services that change an identity re-check its findings once they commit (not only in the
15-minute scan); the fixes go through one service each, refused to anyone but the identity's owner,
backup owner or an admin; an accepted risk waits in the exception register until its date.
"""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent
from governance.choices import (
    FindingExceptionStatus,
    FindingKind,
    FindingStatus,
    GrantKind,
    GrantStatus,
    IdentityStatus,
    RiskTier,
)
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import Finding, FindingException, Grant, Identity
from governance.services.finding_fixes import (
    finding_accept_risk,
    finding_fix_assign_owner,
    finding_fix_convert_to_jit,
    finding_fix_mark_rotated,
    finding_fix_revoke,
)
from governance.services.findings import findings_recheck, findings_scan
from governance.services.grants import grant_revoke
from governance.services.identities import identity_change_owner, identity_offboard, identity_update
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db


def finding(kind: str, identity: Identity) -> Finding | None:
    return Finding.objects.filter(kind=kind, identity=identity).order_by("-pk").first()


def orphan() -> tuple[Identity, Identity]:
    """A service account whose owner left, and its active backup owner (who may fix it)."""
    backup = PersonFactory(name="Bea Backup")
    machine = MachineFactory(name="orphan-bot", backup_owner=backup)
    Identity.objects.filter(pk=machine.owner_id).update(status=IdentityStatus.OFFBOARDED)
    machine.refresh_from_db()
    return machine, backup


def overdue(owner: Identity | None = None) -> Identity:
    machine = MachineFactory(
        name="rotate-me", last_rotated_at=timezone.now() - timedelta(days=200), **({"owner": owner} if owner else {})
    )
    return machine


def standing_high_risk(owner: Identity) -> Grant:
    machine = MachineFactory(name="prod-bot", owner=owner)
    entitlement = EntitlementFactory(name="prod-admin", risk_tier=RiskTier.HIGH)
    return GrantFactory(identity=machine, entitlement=entitlement)


#
# Item 1: the re-check when the identity changes
#
def test_setting_an_owner_closes_the_orphaned_finding_at_commit(django_capture_on_commit_callbacks):
    # given an orphan the scan found
    machine, backup = orphan()
    findings_scan()
    assert finding(FindingKind.ORPHANED, machine).status == FindingStatus.OPEN

    # when its backup owner takes it over (the ordinary identity service, no fix involved)
    with django_capture_on_commit_callbacks(execute=True):
        identity_change_owner(identity_id=machine.pk, actor=backup.user, owner=backup)

    # then it is closed without waiting for the scan, and the trail says so
    closed = finding(FindingKind.ORPHANED, machine)
    assert closed.status == FindingStatus.RESOLVED and closed.resolved_at is not None
    assert AuditEvent.objects.filter(action=AuditAction.FINDING_RESOLVED, target_id=str(closed.pk)).exists()


def test_recording_a_rotation_closes_the_rotation_finding(django_capture_on_commit_callbacks):
    machine = overdue()
    findings_scan()
    with django_capture_on_commit_callbacks(execute=True):
        identity_update(identity_id=machine.pk, actor=machine.owner.user, changes={"last_rotated_at": timezone.now()})
    assert finding(FindingKind.ROTATION_OVERDUE, machine).status == FindingStatus.RESOLVED


def test_revoking_the_grant_closes_its_findings(django_capture_on_commit_callbacks):
    grant = standing_high_risk(PersonFactory())
    findings_scan()
    assert finding(FindingKind.STANDING_HIGH_RISK, grant.identity).status == FindingStatus.OPEN
    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant_id=grant.pk, actor=grant.identity.owner.user, reason="not needed")
    assert finding(FindingKind.STANDING_HIGH_RISK, grant.identity).status == FindingStatus.RESOLVED


def test_offboarding_closes_its_findings_and_orphans_what_it_owned_at_once(
    django_capture_on_commit_callbacks, admin_user
):
    # given a person with a stale finding of their own, who owns a machine with no backup owner
    leaver = PersonFactory(name="Lee Leaver", last_used_at=timezone.now() - timedelta(days=400))
    Identity.objects.filter(pk=leaver.pk).update(created_at=timezone.now() - timedelta(days=500))
    owned = MachineFactory(name="leaver-bot", owner=leaver)
    findings_scan()
    assert finding(FindingKind.STALE, leaver).status == FindingStatus.OPEN
    assert finding(FindingKind.ORPHANED, owned) is None

    # when
    with django_capture_on_commit_callbacks(execute=True):
        identity_offboard(identity_id=leaver.pk, actor=admin_user, reason="left")

    # then the leaver's findings close and the machine it left behind is flagged, both at once
    assert finding(FindingKind.STALE, leaver).status == FindingStatus.RESOLVED
    assert finding(FindingKind.ORPHANED, owned).status == FindingStatus.OPEN


def test_a_failed_recheck_never_fails_the_change(django_capture_on_commit_callbacks, monkeypatch):
    machine, backup = orphan()
    findings_scan()

    def broken(**_kw):
        raise RuntimeError("detector down")

    monkeypatch.setattr("governance.services.findings.findings_recheck", broken)
    with django_capture_on_commit_callbacks(execute=True):
        identity_change_owner(identity_id=machine.pk, actor=backup.user, owner=backup)
    machine.refresh_from_db()
    assert machine.owner_id == backup.pk  # the change stands; the next scan closes the finding
    findings_scan()
    assert finding(FindingKind.ORPHANED, machine).status == FindingStatus.RESOLVED


def test_one_transaction_rechecks_once_however_many_changes_it_makes(django_capture_on_commit_callbacks):
    # given two overdue machines
    first, second = overdue(), overdue()
    findings_scan()

    # when one transaction records both rotations
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        for machine in (first, second):
            identity_update(
                identity_id=machine.pk, actor=machine.owner.user, changes={"last_rotated_at": timezone.now()}
            )

    # then one re-check ran after commit, for both
    names = [getattr(getattr(c, "func", c), "__qualname__", "") for c in callbacks]
    assert names.count("findings_recheck_on_commit.<locals>.recheck") == 1
    assert finding(FindingKind.ROTATION_OVERDUE, first).status == FindingStatus.RESOLVED
    assert finding(FindingKind.ROTATION_OVERDUE, second).status == FindingStatus.RESOLVED


def test_the_recheck_costs_the_same_whatever_the_inventory_size():
    # given one overdue machine, then many more identities and grants elsewhere
    machine = overdue()
    findings_scan()

    def cost() -> int:
        with CaptureQueriesContext(connection) as ctx:
            findings_recheck(identity_ids=[machine.pk])
        return len(ctx.captured_queries)

    small = cost()
    for _ in range(20):
        GrantFactory(identity=overdue(), entitlement=EntitlementFactory(risk_tier=RiskTier.HIGH))
    findings_scan()

    # then re-checking the one identity runs the same queries (one per detector and the store)
    assert cost() == small


def test_the_recheck_leaves_other_identities_findings_alone():
    mine, other = overdue(), overdue()
    findings_scan()
    Identity.objects.filter(pk=other.pk).update(last_rotated_at=timezone.now())  # fixed behind the scan's back
    findings_recheck(identity_ids=[mine.pk])
    assert finding(FindingKind.ROTATION_OVERDUE, other).status == FindingStatus.OPEN  # the scan's to resolve
    assert finding(FindingKind.ROTATION_OVERDUE, mine).status == FindingStatus.OPEN


#
# Item 2: the fixes
#
def test_backup_owner_assigns_an_owner(django_capture_on_commit_callbacks):
    machine, backup = orphan()
    new_owner = PersonFactory(name="Nia New")
    findings_scan()
    orphaned = finding(FindingKind.ORPHANED, machine)

    with django_capture_on_commit_callbacks(execute=True):
        finding_fix_assign_owner(finding_id=orphaned.pk, actor=backup.user, owner=new_owner, reason="team move")

    machine.refresh_from_db()
    assert machine.owner_id == new_owner.pk and machine.backup_owner_id == backup.pk
    orphaned.refresh_from_db()
    assert orphaned.status == FindingStatus.RESOLVED
    fixed = AuditEvent.objects.get(action=AuditAction.FINDING_FIXED, target_id=str(orphaned.pk))
    assert fixed.data["fix"] == "assign_owner" and fixed.data["owner"] == new_owner.pk
    assert AuditEvent.objects.filter(action=AuditAction.IDENTITY_OWNER_CHANGED, target_id=str(machine.pk)).exists()


def test_mark_rotated_needs_evidence_and_records_it(django_capture_on_commit_callbacks):
    machine = overdue()
    findings_scan()
    overdue_finding = finding(FindingKind.ROTATION_OVERDUE, machine)

    with pytest.raises(ValidationFailed) as refused:
        finding_fix_mark_rotated(finding_id=overdue_finding.pk, actor=machine.owner.user, evidence="  ")
    assert "evidence" in refused.value.field_errors
    assert not AuditEvent.objects.filter(action=AuditAction.FINDING_FIXED).exists()

    with django_capture_on_commit_callbacks(execute=True):
        finding_fix_mark_rotated(finding_id=overdue_finding.pk, actor=machine.owner.user, evidence="CHG-42, vault v7")

    machine.refresh_from_db()
    assert machine.last_rotated_at > timezone.now() - timedelta(minutes=1)
    assert finding(FindingKind.ROTATION_OVERDUE, machine).status == FindingStatus.RESOLVED
    fixed = AuditEvent.objects.get(action=AuditAction.FINDING_FIXED)
    assert fixed.data["evidence"] == "CHG-42, vault v7"


def test_revoke_fix_revokes_the_grant(django_capture_on_commit_callbacks):
    owner = PersonFactory()
    grant = standing_high_risk(owner)
    findings_scan()
    with django_capture_on_commit_callbacks(execute=True):
        finding_fix_revoke(
            finding_id=finding(FindingKind.STANDING_HIGH_RISK, grant.identity).pk, actor=owner.user, reason=""
        )
    grant.refresh_from_db()
    assert grant.status in (GrantStatus.REVOKING, GrantStatus.REVOKED)
    assert finding(FindingKind.STANDING_HIGH_RISK, grant.identity).status == FindingStatus.RESOLVED


def test_convert_to_jit_bounds_the_grant_by_the_entitlements_maximum(django_capture_on_commit_callbacks):
    owner = PersonFactory()
    grant = standing_high_risk(owner)
    findings_scan()
    with django_capture_on_commit_callbacks(execute=True):
        converted = finding_fix_convert_to_jit(
            finding_id=finding(FindingKind.STANDING_HIGH_RISK, grant.identity).pk, actor=owner.user
        )
    assert converted.kind == GrantKind.JIT and converted.status == GrantStatus.ACTIVE
    assert converted.expires_at <= timezone.now() + grant.entitlement.effective_max_duration
    assert finding(FindingKind.STANDING_HIGH_RISK, grant.identity).status == FindingStatus.RESOLVED
    assert AuditEvent.objects.filter(action=AuditAction.GRANT_CONVERTED_TO_JIT, target_id=str(grant.pk)).exists()


@pytest.mark.parametrize("who", ["stranger", "auditor", "entitlement_owner"])
def test_only_the_identitys_owners_and_admins_may_fix(who):
    # given a finding on an owner's machine
    owner = PersonFactory()
    grant = standing_high_risk(owner)
    findings_scan()
    target = finding(FindingKind.STANDING_HIGH_RISK, grant.identity)
    actor = {
        "stranger": PersonFactory().user,
        "auditor": PersonFactory(user__roles=["auditor"]).user,
        "entitlement_owner": grant.entitlement.owner.user,
    }[who]
    until = timezone.now() + timedelta(days=30)

    # when / then: every fix is refused and nothing is written
    for fix, kwargs in (
        (finding_fix_revoke, {}),
        (finding_fix_convert_to_jit, {}),
        (finding_accept_risk, {"reason": "fine", "until": until}),
    ):
        with pytest.raises(PermissionRefused):
            fix(finding_id=target.pk, actor=actor, **kwargs)
    grant.refresh_from_db()
    target.refresh_from_db()
    assert grant.kind == GrantKind.STANDING and grant.status == GrantStatus.ACTIVE
    assert target.status == FindingStatus.OPEN and not FindingException.objects.exists()


def test_admin_may_fix_and_a_fix_of_another_kind_is_refused(admin_user):
    machine = overdue()
    findings_scan()
    rotation = finding(FindingKind.ROTATION_OVERDUE, machine)
    with pytest.raises(ValidationFailed):
        finding_fix_revoke(finding_id=rotation.pk, actor=admin_user)
    finding_fix_mark_rotated(finding_id=rotation.pk, actor=admin_user, evidence="done by ops")


#
# Accepted risks: the exception register
#
def test_accepting_a_risk_moves_it_to_the_register_until_the_date_then_reopens_it(admin_user):
    # given an open finding on an owner's machine
    owner = with_role(PersonFactory(name="Olu Owner"), "owner")
    machine = overdue(owner)
    findings_scan()
    overdue_finding = finding(FindingKind.ROTATION_OVERDUE, machine)
    until = timezone.now() + timedelta(days=10)

    # when the owner accepts it
    exception = finding_accept_risk(
        finding_id=overdue_finding.pk, actor=owner.user, reason="vendor rotates in Q3", until=until
    )

    # then it is accepted, registered and audited, and a scan neither reopens nor duplicates it
    overdue_finding.refresh_from_db()
    assert overdue_finding.status == FindingStatus.ACCEPTED
    assert exception.status == FindingExceptionStatus.ACTIVE and exception.accepted_by == owner.user
    assert exception.accepted_by_name == "Olu Owner" and exception.reason == "vendor rotates in Q3"
    accepted = AuditEvent.objects.get(action=AuditAction.FINDING_RISK_ACCEPTED)
    assert accepted.data["reason"] == "vendor rotates in Q3" and accepted.data["exception"] == exception.pk
    findings_scan()
    assert Finding.objects.filter(kind=FindingKind.ROTATION_OVERDUE, identity=machine).count() == 1
    overdue_finding.refresh_from_db()
    assert overdue_finding.status == FindingStatus.ACCEPTED
    with pytest.raises(InvalidTransition):
        finding_accept_risk(finding_id=overdue_finding.pk, actor=admin_user, reason="again", until=until)

    # when the date passes, the scan reopens it (audited) and the exception has expired
    with time_machine.travel(until + timedelta(minutes=1), tick=False):
        summary = findings_scan(now=until + timedelta(minutes=1))
    assert summary["exceptions_expired"] == 1
    overdue_finding.refresh_from_db()
    exception.refresh_from_db()
    assert overdue_finding.status == FindingStatus.OPEN
    assert exception.status == FindingExceptionStatus.EXPIRED and exception.ended_at is not None
    assert AuditEvent.objects.filter(
        action=AuditAction.FINDING_EXCEPTION_EXPIRED, target_id=str(overdue_finding.pk)
    ).exists()


def test_an_accepted_risk_whose_problem_goes_away_closes(django_capture_on_commit_callbacks):
    machine = overdue()
    findings_scan()
    accepted = finding(FindingKind.ROTATION_OVERDUE, machine)
    exception = finding_accept_risk(
        finding_id=accepted.pk, actor=machine.owner.user, reason="later", until=timezone.now() + timedelta(days=5)
    )
    with django_capture_on_commit_callbacks(execute=True):
        identity_update(identity_id=machine.pk, actor=machine.owner.user, changes={"last_rotated_at": timezone.now()})
    accepted.refresh_from_db()
    exception.refresh_from_db()
    assert accepted.status == FindingStatus.RESOLVED
    assert exception.status == FindingExceptionStatus.CLOSED


@pytest.mark.parametrize(
    ("reason", "days", "field"),
    [("", 10, "reason"), ("ok", -1, "until"), ("ok", 400, "until")],
)
def test_an_accept_needs_a_reason_and_a_date_within_a_year(reason, days, field):
    machine = overdue()
    findings_scan()
    with pytest.raises(ValidationFailed) as refused:
        finding_accept_risk(
            finding_id=finding(FindingKind.ROTATION_OVERDUE, machine).pk,
            actor=machine.owner.user,
            reason=reason,
            until=timezone.now() + timedelta(days=days),
        )
    assert field in refused.value.field_errors
    assert not FindingException.objects.exists()


def test_the_trail_reads_the_fixes_as_sentences(django_capture_on_commit_callbacks):
    from django.utils.html import strip_tags

    from audit.sentences import describe

    # given an orphan fixed by its backup owner, and an overdue machine whose risk is accepted
    machine, backup = orphan()
    rotating = overdue()
    findings_scan()
    with django_capture_on_commit_callbacks(execute=True):
        finding_fix_assign_owner(finding_id=finding(FindingKind.ORPHANED, machine).pk, actor=backup.user, owner=backup)
    finding_accept_risk(
        finding_id=finding(FindingKind.ROTATION_OVERDUE, rotating).pk,
        actor=rotating.owner.user,
        reason="later",
        until=timezone.now() + timedelta(days=3),
    )

    # when the trail is read
    events = AuditEvent.objects.filter(
        action__in=[AuditAction.FINDING_FIXED, AuditAction.FINDING_RISK_ACCEPTED]
    ).order_by("seq")
    sentences = [strip_tags(d.sentence) for d in describe(list(events))]

    # then each names who did what to which finding
    assert "Bea Backup the owner to fix" in sentences[0] and "legacy" not in sentences[0]
    assert "accepted the risk of" in sentences[1] and "rotate-me" in sentences[1]
