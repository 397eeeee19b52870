"""The fixes of the findings that offered only "accept the risk": an unused identity is suspended, a
secret outside the manager is recorded moved, an ownerless entitlement gets an owner. Each closes its
finding when the change commits, is refused to anyone who does not answer for it, and writes nothing
when refused."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent
from governance.choices import (
    CredentialType,
    FindingKind,
    FindingStatus,
    GrantStatus,
    IdentityStatus,
    SecretLocation,
)
from governance.errors import PermissionRefused, ValidationFailed
from governance.models import Entitlement, Finding, Grant, Identity
from governance.services.finding_fixes import (
    finding_fix_assign_entitlement_owner,
    finding_fix_revoke_one,
    finding_fix_secret_moved,
    finding_fix_suspend,
)
from governance.services.findings import findings_scan
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SodRuleFactory,
    with_role,
)

pytestmark = pytest.mark.django_db


def open_finding(kind: str, **where) -> Finding:
    findings_scan()
    return Finding.objects.get(kind=kind, status=FindingStatus.OPEN, **where)


def unused_machine() -> Identity:
    long_ago = timezone.now() - timedelta(days=400)
    machine = MachineFactory(name="idle-bot", last_used_at=long_ago)
    Identity.objects.filter(pk=machine.pk).update(created_at=long_ago)
    GrantFactory(identity=machine)
    return machine


def leaky_machine() -> Identity:
    return MachineFactory(
        name="leaky-bot", credential_type=CredentialType.STATIC_SECRET, secret_location=SecretLocation.CI_CD
    )


def ownerless_entitlement() -> Entitlement:
    entitlement = EntitlementFactory(name="ledger-write")
    Identity.objects.filter(pk=entitlement.owner_id).update(status=IdentityStatus.OFFBOARDED)
    return entitlement


def test_suspending_an_unused_identity_ends_its_access_and_closes_the_finding(django_capture_on_commit_callbacks):
    machine = unused_machine()
    stale = open_finding(FindingKind.STALE, identity=machine)

    with pytest.raises(ValidationFailed) as refused:
        finding_fix_suspend(finding_id=stale.pk, actor=machine.owner.user, reason=" ")
    assert "reason" in refused.value.field_errors
    with django_capture_on_commit_callbacks(execute=True):
        finding_fix_suspend(finding_id=stale.pk, actor=machine.owner.user, reason="nobody runs it since Q2")

    machine.refresh_from_db()
    assert machine.status == IdentityStatus.SUSPENDED
    assert not machine.grants.filter(status=GrantStatus.ACTIVE).exists()
    stale.refresh_from_db()
    assert stale.status == FindingStatus.RESOLVED
    fixed = AuditEvent.objects.get(action=AuditAction.FINDING_FIXED, target_id=str(stale.pk))
    assert fixed.data["fix"] == "suspend" and fixed.data["reason"] == "nobody runs it since Q2"


def test_recording_the_secret_moved_needs_evidence_and_closes_the_finding(django_capture_on_commit_callbacks):
    machine = leaky_machine()
    leak = open_finding(FindingKind.SECRET_OUTSIDE_MANAGER, identity=machine)

    with pytest.raises(ValidationFailed) as refused:
        finding_fix_secret_moved(finding_id=leak.pk, actor=machine.owner.user, evidence="")
    assert "evidence" in refused.value.field_errors
    with django_capture_on_commit_callbacks(execute=True):
        finding_fix_secret_moved(finding_id=leak.pk, actor=machine.owner.user, evidence="vault:kv/ci/leaky-bot")

    machine.refresh_from_db()
    assert machine.secret_location == SecretLocation.SECRETS_MANAGER
    leak.refresh_from_db()
    assert leak.status == FindingStatus.RESOLVED
    assert AuditEvent.objects.get(action=AuditAction.FINDING_FIXED).data["evidence"] == "vault:kv/ci/leaky-bot"


def test_the_system_owner_names_a_new_owner_of_an_ownerless_entitlement(django_capture_on_commit_callbacks):
    entitlement = ownerless_entitlement()
    ownerless = open_finding(FindingKind.ENTITLEMENT_WITHOUT_OWNER, entitlement=entitlement)
    successor = PersonFactory(name="Sam Successor")

    with django_capture_on_commit_callbacks(execute=True):
        finding_fix_assign_entitlement_owner(
            finding_id=ownerless.pk, actor=entitlement.system.owner.user, owner=successor
        )

    entitlement.refresh_from_db()
    assert entitlement.owner_id == successor.pk
    ownerless.refresh_from_db()
    assert ownerless.status == FindingStatus.RESOLVED
    assert AuditEvent.objects.filter(action=AuditAction.ENTITLEMENT_UPDATED, target_id=str(entitlement.pk)).exists()


def test_an_inactive_person_cannot_be_named_the_new_owner():
    entitlement = ownerless_entitlement()
    ownerless = open_finding(FindingKind.ENTITLEMENT_WITHOUT_OWNER, entitlement=entitlement)
    gone = PersonFactory(status=IdentityStatus.SUSPENDED)

    with pytest.raises(ValidationFailed):
        finding_fix_assign_entitlement_owner(finding_id=ownerless.pk, actor=entitlement.system.owner.user, owner=gone)
    assert Entitlement.objects.get(pk=entitlement.pk).owner_id != gone.pk
    assert not AuditEvent.objects.filter(action=AuditAction.FINDING_FIXED).exists()


@pytest.mark.parametrize("who", ["stranger", "auditor"])
def test_people_who_do_not_answer_for_it_are_refused_and_nothing_changes(who):
    machine, leaky, entitlement = unused_machine(), leaky_machine(), ownerless_entitlement()
    findings_scan()
    actor = {"stranger": PersonFactory().user, "auditor": PersonFactory(user__roles=["auditor"]).user}[who]
    attempts = [
        (finding_fix_suspend, Finding.objects.get(kind=FindingKind.STALE, identity=machine), {"reason": "x"}),
        (
            finding_fix_secret_moved,
            Finding.objects.get(kind=FindingKind.SECRET_OUTSIDE_MANAGER, identity=leaky),
            {"evidence": "x"},
        ),
        (
            finding_fix_assign_entitlement_owner,
            Finding.objects.get(kind=FindingKind.ENTITLEMENT_WITHOUT_OWNER, entitlement=entitlement),
            {"owner": PersonFactory()},
        ),
    ]
    for fix, target, kwargs in attempts:
        with pytest.raises(PermissionRefused):
            fix(finding_id=target.pk, actor=actor, **kwargs)
    assert Identity.objects.get(pk=machine.pk).status == IdentityStatus.ACTIVE
    assert Identity.objects.get(pk=leaky.pk).secret_location == SecretLocation.CI_CD
    assert not AuditEvent.objects.filter(action=AuditAction.FINDING_FIXED).exists()


def test_the_findings_page_offers_the_fixes_and_the_fix_page_applies_one(client, django_capture_on_commit_callbacks):
    entitlement = ownerless_entitlement()
    system_owner = with_role(entitlement.system.owner, "owner")
    successor = PersonFactory(name="Sam Successor", user__username="sam")
    ownerless = open_finding(FindingKind.ENTITLEMENT_WITHOUT_OWNER, entitlement=entitlement)
    client.force_login(system_owner.user)

    listed = client.get(reverse("governance:finding_list")).content.decode()
    fix_url = reverse("governance:finding_fix", args=[ownerless.pk, "assign-entitlement-owner"])
    assert fix_url in listed
    page = client.get(fix_url).content.decode()
    assert "Name a new owner" in page and "ledger-write" in page

    assert client.post(fix_url, {"owner": ""}).status_code == 400  # the error beside the field, nothing written
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(fix_url, {"owner": "sam"}, follow=True)
    assert "has an owner again" in answer.content.decode()
    assert Entitlement.objects.get(pk=entitlement.pk).owner_id == successor.pk


def sod_conflict():
    """A person holding both sides of a rule (pay and approve payments), and the rule."""
    pay, approve = EntitlementFactory(name="payments-pay"), EntitlementFactory(name="payments-approve")
    rule = SodRuleFactory(name="pay-vs-approve", entitlements=[pay, approve])
    person = PersonFactory(name="Pat Payer")
    return (
        person,
        GrantFactory(identity=person, entitlement=pay),
        GrantFactory(identity=person, entitlement=approve),
        rule,
    )


def test_revoking_one_side_of_a_conflict_closes_it(django_capture_on_commit_callbacks):
    person, pay, approve, _ = sod_conflict()
    conflict = open_finding(FindingKind.SOD_CONFLICT, identity=person)
    admin = PersonFactory(user__roles=["admin"]).user
    unrelated = GrantFactory(identity=person)

    with pytest.raises(ValidationFailed) as refused:  # only a grant that makes the conflict
        finding_fix_revoke_one(finding_id=conflict.pk, actor=admin, grant_id=unrelated.pk)
    assert "grant" in refused.value.field_errors
    with django_capture_on_commit_callbacks(execute=True):
        finding_fix_revoke_one(finding_id=conflict.pk, actor=admin, grant_id=approve.pk, reason="pays only")

    approve.refresh_from_db()
    pay.refresh_from_db()
    unrelated.refresh_from_db()
    assert approve.status in (GrantStatus.REVOKING, GrantStatus.REVOKED)
    assert pay.status == unrelated.status == GrantStatus.ACTIVE
    conflict.refresh_from_db()
    assert conflict.status == FindingStatus.RESOLVED


def test_the_revoke_one_page_lists_the_conflicting_grants_only(admin_client):
    person, pay, approve, _ = sod_conflict()
    other = GrantFactory(identity=person)
    conflict = open_finding(FindingKind.SOD_CONFLICT, identity=person)
    url = reverse("governance:finding_fix", args=[conflict.pk, "revoke-one"])

    page = admin_client.get(url).content.decode()
    assert f'value="{pay.pk}"' in page and f'value="{approve.pk}"' in page and f'value="{other.pk}"' not in page
    refused = admin_client.post(url, {"grant": other.pk})
    assert refused.status_code == 400 and "id_grant_error" in refused.content.decode()
    assert Grant.objects.get(pk=other.pk).status == GrantStatus.ACTIVE
    admin_client.post(url, {"grant": pay.pk})
    assert Grant.objects.get(pk=pay.pk).status in (GrantStatus.REVOKING, GrantStatus.REVOKED)
