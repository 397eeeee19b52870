"""Break-glass activation: eligibility and step-up checked, the grant at once, hard-capped, loud, refusals kept."""

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import Group
from django.core import mail
from django.test import override_settings
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from audit.outbox import outbox_dispatch
from audit.services import Actor
from audit.verify import verify_chain
from governance.choices import GrantKind, GrantStatus
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import Grant, Notification
from governance.services.grants import grant_confirm_provisioned, grant_confirm_revoked
from jit.choices import DrillStatus
from jit.models import BreakGlassActivation, BreakGlassDrill
from jit.services.break_glass import break_glass_activate
from jit.services.expiry import grants_expire_due
from tests.factories.break_glass import EligibilityFactory, activate, security_member
from tests.factories.governance import GrantFactory, MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def eligibility():
    return EligibilityFactory(identity=PersonFactory(name="Olga", user__username="olga"))


def refusals():
    return AuditEvent.objects.filter(action="break_glass.refused")


def totp_code(device: TOTPDevice) -> str:
    """The code the person's authenticator app shows now (from the device's key, as the app computes it)."""
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


#
# Success
#
def test_activation_issues_a_break_glass_grant_at_once_with_its_end_fixed_and_a_review_due():
    # given
    eligibility = EligibilityFactory(max_duration=timedelta(minutes=30))
    # when
    activation = activate(eligibility)
    # then: no approval, a pending break-glass grant whose end is already fixed
    grant = Grant.objects.get(pk=activation.grant_id)
    assert grant.kind == GrantKind.BREAK_GLASS and grant.status == GrantStatus.PENDING_PROVISION
    assert activation.ends_at - activation.activated_at == timedelta(minutes=30)
    assert grant.expires_at == activation.ends_at
    assert activation.review_due_at == activation.activated_at + settings.BREAK_GLASS_REVIEW_WITHIN
    assert activation.step_up == "password" and activation.is_drill is False
    assert activation.identity == eligibility.identity and activation.activated_by == eligibility.identity.user
    # the entitlement's owner reviews when the eligibility names no group
    assert activation.reviewer == eligibility.entitlement.owner.user and activation.reviewer_group == ""
    event = AuditEvent.objects.get(action="break_glass.activated")
    assert event.data["incident_reference"] == "INC-1234" and event.data["grant"] == grant.pk
    assert AuditEvent.objects.filter(action="grant.created", target_id=str(grant.pk)).exists()
    assert verify_chain().ok


def test_everyone_who_must_know_is_told_at_once_in_app_and_by_email():
    # given
    eligibility = EligibilityFactory(reviewer_group="bg-reviewers")
    reviewers = Group.objects.create(name="bg-reviewers")
    reviewer = PersonFactory(user__username="rev1")
    reviewer.user.groups.add(reviewers)
    sec = security_member()
    # when
    activation = activate(eligibility)
    outbox_dispatch()
    # then
    told = set(Notification.objects.filter(kind="break_glass.activated").values_list("recipient__username", flat=True))
    entitlement = eligibility.entitlement
    assert told == {
        "rev1",
        sec.user.username,
        entitlement.owner.user.username,
        entitlement.system.owner.user.username,
    }
    assert activation.reviewer_group == "bg-reviewers" and activation.reviewer is None
    assert {tuple(m.to) for m in mail.outbox} >= {(reviewer.user.email,), (sec.user.email,)}
    assert all("Break-glass" in m.subject for m in mail.outbox if "Break-glass" in m.subject)


def test_the_holder_who_owns_the_entitlement_never_reviews_it_the_security_group_does():
    # given
    eligibility = EligibilityFactory()
    entitlement = eligibility.entitlement
    entitlement.owner = eligibility.identity
    entitlement.save()
    # when
    activation = activate(eligibility)
    # then
    assert activation.reviewer is None and activation.reviewer_group == settings.BREAK_GLASS_SECURITY_GROUP


def test_a_group_eligibility_lets_each_member_break_glass():
    # given
    oncall = Group.objects.create(name="oncall")
    member = PersonFactory(user__username="oncall1")
    member.user.groups.add(oncall)
    eligibility = EligibilityFactory(identity=None, group="oncall")
    # when
    activation = activate(eligibility, actor=member.user)
    # then
    assert activation.identity == member


def test_a_machine_identity_breaks_glass_when_its_credential_vouches_for_it():
    bot = MachineFactory(name="incident-bot")
    eligibility = EligibilityFactory(identity=bot)
    activation = break_glass_activate(
        actor=Actor(identity=bot),
        eligibility_id=eligibility.pk,
        incident_reference="INC-9",
        reason="Automated failover",
        step_up_verified_by="api_credential",
    )
    assert activation.identity == bot and activation.step_up == "api_credential" and activation.activated_by is None


def test_a_machine_without_a_vouching_credential_is_refused():
    bot = MachineFactory(name="incident-bot")
    eligibility = EligibilityFactory(identity=bot)
    with pytest.raises(PermissionRefused, match="own credential"):
        break_glass_activate(
            actor=Actor(identity=bot), eligibility_id=eligibility.pk, incident_reference="INC-9", reason="Failover"
        )
    assert refusals().count() == 1


#
# Refusals, each audited
#
def test_an_ineligible_person_is_refused_and_the_attempt_is_audited(eligibility):
    # given: someone else
    mallory = PersonFactory(user__username="mallory")
    # when
    with pytest.raises(PermissionRefused, match="not eligible"):
        activate(eligibility, actor=mallory.user)
    # then: nothing granted, the refusal kept in the trail
    assert not Grant.objects.exists() and not BreakGlassActivation.objects.exists()
    event = refusals().get()
    assert event.actor_user_id == mallory.user.pk
    assert event.data["eligibility"] == eligibility.pk and "not eligible" in event.data["refusal"]
    assert "password" not in str(event.data).lower().replace("fields", "")
    assert verify_chain().ok


def test_an_unknown_eligibility_gets_the_same_refusal_as_someone_elses(eligibility):
    with pytest.raises(PermissionRefused) as unknown:
        activate(eligibility, actor=PersonFactory().user, eligibility_id=eligibility.pk + 1000)
    with pytest.raises(PermissionRefused) as others:
        activate(eligibility, actor=PersonFactory().user)
    assert unknown.value.message == others.value.message
    assert refusals().count() == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expires_at": timezone.now() - timedelta(minutes=1)}, "ended"),
        ({"is_active": False}, "revoked"),
    ],
)
def test_an_expired_or_revoked_eligibility_refuses(eligibility, change, message):
    for name, value in change.items():
        setattr(eligibility, name, value)
    eligibility.save()
    with pytest.raises(PermissionRefused, match=message):
        activate(eligibility)
    assert not Grant.objects.exists()
    assert refusals().count() == 1


def test_an_entitlement_no_longer_break_glass_eligible_refuses(eligibility):
    eligibility.entitlement.break_glass_eligible = False
    eligibility.entitlement.save()
    with pytest.raises(PermissionRefused, match="no longer break-glass eligible"):
        activate(eligibility)
    assert refusals().count() == 1


def test_eligibility_lapses_by_time_without_anyone_acting(eligibility):
    with (
        time_machine.travel(eligibility.expires_at + timedelta(seconds=1), tick=False),
        pytest.raises(PermissionRefused, match="ended"),
    ):
        activate(eligibility)


def test_a_wrong_password_is_refused_beside_the_field_and_audited(eligibility):
    with pytest.raises(ValidationFailed) as refused:
        activate(eligibility, password="not-it")
    assert "password" in refused.value.field_errors
    assert not Grant.objects.exists()
    assert refusals().get().data["fields"] == ["password"]


@pytest.mark.parametrize(
    ("field", "kwargs"), [("incident_reference", {"incident_reference": " "}), ("reason", {"reason": ""})]
)
def test_a_missing_incident_reference_or_reason_is_refused(eligibility, field, kwargs):
    with pytest.raises(ValidationFailed) as refused:
        activate(eligibility, **kwargs)
    assert field in refused.value.field_errors
    assert refusals().count() == 1 and not Grant.objects.exists()


def test_holding_the_access_already_is_refused_clearly(eligibility):
    GrantFactory(identity=eligibility.identity, entitlement=eligibility.entitlement, kind="jit")
    with pytest.raises(InvalidTransition, match="already hold"):
        activate(eligibility)
    assert refusals().count() == 1
    assert not BreakGlassActivation.objects.exists()


def test_a_suspended_person_cannot_break_glass(eligibility):
    eligibility.identity.status = "suspended"
    eligibility.identity.save()
    with pytest.raises(PermissionRefused, match="suspended"):
        activate(eligibility)


#
# Second factor
#
def test_with_a_confirmed_device_the_code_is_required_and_the_right_one_works(eligibility):
    # given
    device = TOTPDevice.objects.create(user=eligibility.identity.user, name="phone", confirmed=True)
    # when: no code
    with pytest.raises(ValidationFailed) as missing:
        activate(eligibility)
    assert "otp_token" in missing.value.field_errors
    # when: a wrong code
    with pytest.raises(ValidationFailed, match="not right"):
        activate(eligibility, otp_token="000000" if totp_code(device) != "000000" else "111111")
    assert refusals().count() == 2
    # when: a code at once after a wrong one: held back by django-otp's throttle
    with pytest.raises(ValidationFailed, match="Too many wrong codes"):
        activate(eligibility, otp_token=totp_code(device))
    # when: the right code, a little later
    with time_machine.travel(timezone.now() + timedelta(seconds=5)):
        activation = activate(eligibility, otp_token=totp_code(device))
    # then
    assert activation.step_up == "password+totp"


def test_a_used_code_cannot_be_used_twice(eligibility):
    device = TOTPDevice.objects.create(user=eligibility.identity.user, name="phone", confirmed=True)
    code = totp_code(device)
    activation = activate(eligibility, otp_token=code)
    activation.grant.status = GrantStatus.REVOKED
    activation.grant.save()
    with pytest.raises(ValidationFailed, match="used already"):
        activate(eligibility, otp_token=code)


def test_an_unconfirmed_device_asks_for_no_code(eligibility):
    TOTPDevice.objects.create(user=eligibility.identity.user, name="phone", confirmed=False)
    assert activate(eligibility).step_up == "password"


#
# The cap
#
@override_settings(BREAK_GLASS_MAX_DURATION=timedelta(hours=2))
def test_an_eligibility_above_a_lowered_global_cap_is_capped_at_activation():
    eligibility = EligibilityFactory(max_duration=timedelta(hours=4))
    activation = activate(eligibility)
    assert activation.ends_at - activation.activated_at == timedelta(hours=2)


def test_a_late_confirmation_never_moves_the_grants_end_past_the_activations():
    # given: activated, the connector confirms 20 minutes later
    eligibility = EligibilityFactory(max_duration=timedelta(hours=1))
    activation = activate(eligibility)
    with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False):
        grant = grant_confirm_provisioned(grant_id=activation.grant_id, actor=Actor.system())
    # then: active, ending at the activation's hard end, not an hour after the confirmation
    assert grant.status == GrantStatus.ACTIVE
    assert grant.expires_at == activation.ends_at


def test_a_confirmation_after_the_hard_end_removes_the_access_at_once():
    eligibility = EligibilityFactory(max_duration=timedelta(hours=1))
    activation = activate(eligibility)
    with time_machine.travel(activation.ends_at + timedelta(minutes=1), tick=False):
        grant = grant_confirm_provisioned(grant_id=activation.grant_id, actor=Actor.system())
    assert grant.status == GrantStatus.REVOKING and grant.end_reason == "expired"
    assert not grant.is_in_force()


#
# Expiry: read-time end with no worker, then the sweep
#
def test_the_grant_ends_at_the_cap_by_the_read_time_check_and_the_sweep_revokes_it():
    # given: active break-glass access
    eligibility = EligibilityFactory(max_duration=timedelta(hours=1))
    activation = activate(eligibility)
    grant_confirm_provisioned(grant_id=activation.grant_id, actor=Actor.system())
    # when: the cap passes and no worker ran
    with time_machine.travel(activation.ends_at + timedelta(seconds=1), tick=False):
        grant = Grant.objects.get(pk=activation.grant_id)
        # then: already not in force, everywhere
        assert grant.status == GrantStatus.ACTIVE and not grant.is_in_force()
        assert not Grant.objects.in_force().filter(pk=grant.pk).exists()
        # and the sweep revokes it
        assert grants_expire_due() == 1
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING and grant.end_reason == "expired"


def test_a_grant_never_provisioned_by_its_hard_end_is_removed_by_the_sweep():
    # given: the system never confirmed the break-glass grant
    eligibility = EligibilityFactory(max_duration=timedelta(hours=1))
    activation = activate(eligibility)
    with time_machine.travel(activation.ends_at + timedelta(minutes=1), tick=False):
        # when: the sweep runs past the hard end
        grants_expire_due()
        grant = Grant.objects.get(pk=activation.grant_id)
        # then: the connector is asked to undo it; until the system confirms, breaking glass again waits
        assert grant.status == GrantStatus.REVOKING and grant.end_reason == "expired"
        with pytest.raises(InvalidTransition, match="still being removed"):
            activate(eligibility, incident_reference="INC-2")
        grant_confirm_revoked(grant_id=grant.pk, actor=Actor.system())
        again = activate(eligibility, incident_reference="INC-2")
    assert again.grant_id != grant.pk
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.EXPIRED


#
# Drills
#
def test_a_drill_marks_the_activation_and_closes_the_drill(eligibility):
    drill = BreakGlassDrill.objects.create(eligibility=eligibility, scheduled_for=timezone.now())
    activation = activate(eligibility, drill_id=drill.pk)
    drill.refresh_from_db()
    assert activation.is_drill and drill.status == DrillStatus.DONE and drill.activation == activation
    assert Notification.objects.filter(kind="break_glass.activated", subject__startswith="[Drill]").exists()


def test_a_drill_of_another_eligibility_is_refused(eligibility):
    other = EligibilityFactory()
    drill = BreakGlassDrill.objects.create(eligibility=other, scheduled_for=timezone.now())
    with pytest.raises(ValidationFailed, match="not scheduled"):
        activate(eligibility, drill_id=drill.pk)
    assert not BreakGlassActivation.objects.exists() and refusals().count() == 1
