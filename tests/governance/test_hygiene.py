"""Hygiene findings: each kind is detected, stored once, and resolved when fixed. Ref: #3 item 4."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent
from governance import hygiene
from governance.choices import (
    FindingKind,
    FindingStatus,
    GrantKind,
    GrantStatus,
    IdentityKind,
    IdentityStatus,
    RiskTier,
)
from governance.models import Finding, Identity
from governance.services.findings import findings_scan
from governance.tasks import hygiene_scan_task
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SodRuleFactory,
)

pytestmark = pytest.mark.django_db


def open_finding(key: str) -> Finding | None:
    return Finding.objects.filter(key=key, status=FindingStatus.OPEN).first()


def resolved(key: str) -> bool:
    return Finding.objects.filter(key=key, status=FindingStatus.RESOLVED).exists()


def set_status(identity: Identity, status: str) -> None:
    Identity.objects.filter(pk=identity.pk).update(status=status)


#
# Orphaned
#
def test_orphaned_identity_names_the_backup_owner_then_is_resolved_when_owner_changes():
    # given a service account whose owner left, with an active backup owner
    backup = PersonFactory()
    machine = MachineFactory(backup_owner=backup)
    set_status(machine.owner, IdentityStatus.OFFBOARDED)

    # when
    findings_scan()

    # then
    finding = open_finding(f"orphaned:{machine.pk}")
    assert finding is not None and finding.owner_to_act_id == backup.pk
    assert finding.identity_id == machine.pk and finding.severity == "high"
    assert machine.name in finding.details["subject"] and "offboarded" in finding.details["reason"]

    # when ownership moves to the backup owner and we scan again
    Identity.objects.filter(pk=machine.pk).update(owner=backup, backup_owner=None)
    findings_scan()

    # then
    assert open_finding(f"orphaned:{machine.pk}") is None
    assert resolved(f"orphaned:{machine.pk}")


def test_orphaned_identity_without_backup_names_the_former_owners_manager_or_nobody():
    manager = PersonFactory()
    owner = PersonFactory(manager=manager)
    with_manager = MachineFactory(owner=owner)
    nobody = MachineFactory()
    set_status(owner, IdentityStatus.SUSPENDED)
    set_status(nobody.owner, IdentityStatus.OFFBOARDED)

    findings_scan()

    assert open_finding(f"orphaned:{with_manager.pk}").owner_to_act_id == manager.pk
    assert open_finding(f"orphaned:{nobody.pk}").owner_to_act_id is None


#
# Stale
#
def test_stale_identity_is_detected_after_the_threshold_and_resolved_when_used(settings):
    # given
    settings.HYGIENE_STALE_AFTER_DAYS = 90
    manager = PersonFactory()
    person = PersonFactory(manager=manager)
    machine = MachineFactory(last_used_at=timezone.now())
    later = timezone.now() + timedelta(days=91)

    with time_machine.travel(later, tick=False):
        # when
        findings_scan()

        # then: a machine names its owner, a person their manager
        assert open_finding(f"stale:{machine.pk}").owner_to_act_id == machine.owner_id
        assert open_finding(f"stale:{person.pk}").owner_to_act_id == manager.pk
        assert "90 days" in open_finding(f"stale:{machine.pk}").details["reason"]

        # when it is used again
        Identity.objects.filter(pk=machine.pk).update(last_used_at=timezone.now())
        findings_scan()

    # then
    assert resolved(f"stale:{machine.pk}")
    assert open_finding(f"stale:{person.pk}") is not None


def test_recently_created_never_used_identity_is_not_stale():
    machine = MachineFactory(last_used_at=None)
    findings_scan()
    assert open_finding(f"stale:{machine.pk}") is None


#
# Rotation overdue
#
def test_rotation_overdue_when_period_passed_or_never_rotated_and_resolved_after_rotation():
    # given
    now = timezone.now()
    overdue = MachineFactory(last_rotated_at=now - timedelta(days=31), rotation_period_days=30)
    never = MachineFactory(last_rotated_at=None, rotation_period_days=30)
    fine = MachineFactory(last_rotated_at=now - timedelta(days=29), rotation_period_days=30)
    no_period = MachineFactory(last_rotated_at=None, rotation_period_days=None)

    # when
    findings_scan()

    # then
    assert open_finding(f"rotation_overdue:{overdue.pk}") is not None
    assert open_finding(f"rotation_overdue:{never.pk}") is not None
    assert open_finding(f"rotation_overdue:{fine.pk}") is None
    assert open_finding(f"rotation_overdue:{no_period.pk}") is None

    # when rotated
    Identity.objects.filter(pk=overdue.pk).update(last_rotated_at=timezone.now())
    findings_scan()

    # then
    assert resolved(f"rotation_overdue:{overdue.pk}")

    # and time passing makes the well-rotated one overdue
    with time_machine.travel(now + timedelta(days=2), tick=False):
        findings_scan()
    assert open_finding(f"rotation_overdue:{fine.pk}") is not None


#
# Secret outside a secrets manager
#
@pytest.mark.parametrize("location", ["embedded_in_code", "ci_cd", "unknown"])
def test_static_secret_outside_the_manager_is_flagged_and_resolved_once_moved(location):
    machine = MachineFactory(credential_type="static_secret", secret_location=location)
    safe = MachineFactory(credential_type="static_secret", secret_location="secrets_manager")
    token = MachineFactory(credential_type="short_lived_token", secret_location="ci_cd")

    findings_scan()

    finding = open_finding(f"secret_outside_manager:{machine.pk}")
    assert finding is not None and finding.owner_to_act_id == machine.owner_id
    assert finding.severity == ("high" if location == "embedded_in_code" else "medium")
    assert open_finding(f"secret_outside_manager:{safe.pk}") is None
    assert open_finding(f"secret_outside_manager:{token.pk}") is None

    Identity.objects.filter(pk=machine.pk).update(secret_location="secrets_manager")
    findings_scan()
    assert resolved(f"secret_outside_manager:{machine.pk}")


#
# Excessive privilege
#
def test_grant_unused_for_the_threshold_is_excessive_and_resolved_when_used(settings):
    # given
    settings.HYGIENE_UNUSED_GRANT_DAYS = 60
    now = timezone.now()
    unused = GrantFactory(granted_at=now - timedelta(days=61), last_used_at=None)
    used_long_ago = GrantFactory(granted_at=now - timedelta(days=200), last_used_at=now - timedelta(days=70))
    recent = GrantFactory(granted_at=now - timedelta(days=200), last_used_at=now - timedelta(days=5))

    # when
    findings_scan()

    # then
    finding = open_finding(f"excessive_privilege:{unused.pk}")
    assert finding is not None and finding.grant_id == unused.pk
    assert finding.owner_to_act_id == unused.identity.owner_id
    assert "60 days" in finding.details["reason"]
    assert open_finding(f"excessive_privilege:{used_long_ago.pk}") is not None
    assert open_finding(f"excessive_privilege:{recent.pk}") is None

    # when used
    unused.last_used_at = timezone.now()
    unused.save(update_fields=["last_used_at"])
    findings_scan()

    # then
    assert resolved(f"excessive_privilege:{unused.pk}")


def test_grant_above_the_risk_tier_a_kind_may_hold_is_excessive(settings):
    settings.MAX_RISK_TIER_BY_KIND = {**settings.MAX_RISK_TIER_BY_KIND, "api_key": "medium"}
    key = MachineFactory(kind=IdentityKind.API_KEY)
    too_risky = GrantFactory(identity=key, entitlement=EntitlementFactory(risk_tier=RiskTier.HIGH))
    fine = GrantFactory(identity=key, entitlement=EntitlementFactory(risk_tier=RiskTier.MEDIUM))

    findings_scan()

    finding = open_finding(f"excessive_privilege:{too_risky.pk}")
    assert finding is not None and "above the medium" in finding.details["reason"]
    assert open_finding(f"excessive_privilege:{fine.pk}") is None

    # an expired (or revoked) grant is no longer held
    too_risky.status = GrantStatus.REVOKED
    too_risky.save(update_fields=["status"])
    findings_scan()
    assert resolved(f"excessive_privilege:{too_risky.pk}")


#
# Standing access to high-risk entitlements
#
def test_standing_grant_on_high_or_critical_entitlement_names_the_entitlement_owner():
    critical = EntitlementFactory(risk_tier=RiskTier.CRITICAL)
    person = PersonFactory()
    standing = GrantFactory(identity=person, entitlement=critical)
    jit = GrantFactory(identity=PersonFactory(), entitlement=critical, kind=GrantKind.JIT)
    low = GrantFactory(identity=person, entitlement=EntitlementFactory(risk_tier=RiskTier.LOW))

    findings_scan()

    finding = open_finding(f"standing_high_risk:{standing.pk}")
    assert finding.owner_to_act_id == critical.owner_id and finding.severity == "critical"
    assert open_finding(f"standing_high_risk:{jit.pk}") is None
    assert open_finding(f"standing_high_risk:{low.pk}") is None

    standing.status = GrantStatus.REVOKED
    standing.save(update_fields=["status"])
    findings_scan()
    assert resolved(f"standing_high_risk:{standing.pk}")


#
# SoD conflicts
#
def test_identity_holding_every_entitlement_of_an_active_rule_is_a_conflict():
    # given a rule over three entitlements
    manager = PersonFactory()
    alice = PersonFactory(manager=manager)
    bob = PersonFactory()
    ents = [EntitlementFactory() for _ in range(3)]
    rule = SodRuleFactory(entitlements=ents, severity="critical")
    grants = [GrantFactory(identity=alice, entitlement=e) for e in ents]
    for e in ents[:2]:
        GrantFactory(identity=bob, entitlement=e)

    # when
    findings_scan()

    # then only alice holds all three
    finding = open_finding(f"sod_conflict:{alice.pk}:{rule.pk}")
    assert finding is not None and finding.owner_to_act_id == manager.pk and finding.severity == "critical"
    assert rule.name in finding.details["subject"]
    assert not Finding.objects.filter(kind=FindingKind.SOD_CONFLICT, identity=bob).exists()

    # when one of them is revoked
    grants[0].status = GrantStatus.REVOKED
    grants[0].save(update_fields=["status"])
    findings_scan()

    # then
    assert resolved(f"sod_conflict:{alice.pk}:{rule.pk}")


def test_inactive_rule_and_expired_grants_do_not_count():
    alice = PersonFactory()
    ents = [EntitlementFactory(), EntitlementFactory()]
    SodRuleFactory(entitlements=ents, is_active=False)
    GrantFactory(identity=alice, entitlement=ents[0])
    GrantFactory(identity=alice, entitlement=ents[1])
    active_rule = SodRuleFactory(entitlements=ents)
    # a JIT grant past its expiry (the sweep has not run yet) is no longer held
    grant = alice.grants.get(entitlement=ents[1])
    grant.kind, grant.expires_at = GrantKind.JIT, timezone.now() + timedelta(hours=1)
    grant.save(update_fields=["kind", "expires_at"])

    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        findings_scan()

    assert not Finding.objects.filter(kind=FindingKind.SOD_CONFLICT).exists()
    findings_scan()
    assert open_finding(f"sod_conflict:{alice.pk}:{active_rule.pk}") is not None


#
# Entitlement without an owner
#
def test_entitlement_whose_owner_left_names_the_system_owner_and_resolves_when_owner_set():
    entitlement = EntitlementFactory()
    set_status(entitlement.owner, IdentityStatus.OFFBOARDED)

    findings_scan()

    finding = open_finding(f"entitlement_without_owner:{entitlement.pk}")
    assert finding.owner_to_act_id == entitlement.system.owner_id and finding.entitlement_id == entitlement.pk

    entitlement.owner = PersonFactory()
    entitlement.save(update_fields=["owner"])
    findings_scan()
    assert resolved(f"entitlement_without_owner:{entitlement.pk}")


#
# JIT renewed into standing access
#
def test_jit_renewed_past_the_step_up_threshold_is_flagged_under_a_key_that_survives_renewal(settings):
    # given a chain of JIT grants, each renewing the previous one
    settings.JIT_RENEWAL_STEP_UP_AFTER = 3
    person = PersonFactory()
    entitlement = EntitlementFactory()
    now = timezone.now()

    def renew(previous, hours_ago):
        if previous is not None:
            previous.status = GrantStatus.EXPIRED
            previous.save(update_fields=["status"])
        return GrantFactory(
            identity=person,
            entitlement=entitlement,
            kind=GrantKind.JIT,
            renewal_of=previous,
            granted_at=now - timedelta(hours=hours_ago),
            expires_at=now + timedelta(hours=1),
        )

    chain = renew(None, 40)
    chain = renew(chain, 30)
    chain = renew(chain, 20)
    key = f"renewed_as_standing:{person.pk}:{entitlement.pk}"

    # when renewed twice: not yet
    findings_scan()
    assert open_finding(key) is None

    # when renewed a third time
    chain = renew(chain, 10)
    findings_scan()
    assert open_finding(key).grant_id == chain.pk

    # a fourth renewal keeps the same finding open (no resolve/reopen churn)
    first = open_finding(key)
    chain = renew(chain, 5)
    findings_scan()
    assert open_finding(key).pk == first.pk and open_finding(key).grant_id == first.grant_id

    # when it lapses
    chain.status = GrantStatus.EXPIRED
    chain.save(update_fields=["status"])
    findings_scan()
    assert resolved(key)


#
# The scan itself
#
def test_scan_is_idempotent_and_audits_each_opening_and_resolution_once():
    # given
    machine = MachineFactory(credential_type="static_secret", secret_location="embedded_in_code")
    key = f"secret_outside_manager:{machine.pk}"
    first = timezone.now()

    # when scanned twice
    summary = findings_scan(now=first)
    second = findings_scan(now=first + timedelta(minutes=15))

    # then
    assert summary["opened"] >= 1 and second["opened"] == 0 and second["resolved"] == 0
    assert Finding.objects.filter(key=key).count() == 1
    finding = open_finding(key)
    assert finding.first_seen_at == first and finding.last_seen_at == first + timedelta(minutes=15)
    opened = AuditEvent.objects.filter(action=AuditAction.FINDING_OPENED, target_id=str(finding.pk))
    assert opened.count() == 1

    # when fixed, it is resolved once, and a reappearance opens a new finding
    Identity.objects.filter(pk=machine.pk).update(secret_location="secrets_manager")
    findings_scan()
    findings_scan()
    assert AuditEvent.objects.filter(action=AuditAction.FINDING_RESOLVED, target_id=str(finding.pk)).count() == 1
    Identity.objects.filter(pk=machine.pk).update(secret_location="ci_cd")
    findings_scan()
    assert Finding.objects.filter(key=key).count() == 2 and open_finding(key).pk != finding.pk


def test_owner_to_act_is_refreshed_when_it_changes():
    backup = PersonFactory()
    machine = MachineFactory(backup_owner=backup)
    set_status(machine.owner, IdentityStatus.OFFBOARDED)
    findings_scan()
    set_status(backup, IdentityStatus.OFFBOARDED)

    summary = findings_scan()

    assert summary["updated"] >= 1
    assert open_finding(f"orphaned:{machine.pk}").owner_to_act_id is None


def test_detection_runs_one_query_per_kind_whatever_the_size():
    # given a few of everything
    for _ in range(3):
        MachineFactory(credential_type="static_secret", secret_location="ci_cd", last_rotated_at=None)
        GrantFactory(entitlement=EntitlementFactory(risk_tier=RiskTier.CRITICAL))

    # when
    with CaptureQueriesContext(connection) as ctx:
        found = hygiene.findings_detect()

    # then
    assert len(found) >= 9
    assert len(ctx.captured_queries) == len(hygiene.DETECTORS)


def test_task_runs_the_scan():
    machine = MachineFactory(credential_type="static_secret", secret_location="unknown")
    summary = hygiene_scan_task()
    assert summary["by_kind"][FindingKind.SECRET_OUTSIDE_MANAGER] == 1
    assert open_finding(f"secret_outside_manager:{machine.pk}") is not None


def test_a_grant_the_policy_stepped_up_is_flagged_even_with_a_short_chain(settings):
    from jit.models import AccessRequest

    # given a JIT grant issued by a renewal the policy stepped up for cumulative time held
    settings.JIT_RENEWAL_STEP_UP_AFTER = 3
    person = PersonFactory()
    entitlement = EntitlementFactory()
    grant = GrantFactory(
        identity=person, entitlement=entitlement, kind=GrantKind.JIT, expires_at=timezone.now() + timedelta(hours=1)
    )
    AccessRequest.objects.create(
        requester=person.user,
        beneficiary=person,
        entitlement=entitlement,
        duration=timedelta(hours=1),
        status="approved",
        policy={"step_up": True},
        grant=grant,
    )
    # when
    findings_scan()
    # then
    assert open_finding(f"renewed_as_standing:{person.pk}:{entitlement.pk}").grant_id == grant.pk
