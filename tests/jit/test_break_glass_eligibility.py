"""Break-glass eligibility: kept by admins in advance, hard-capped, expiring, reviewed; who it is in force for."""

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import Group
from django.utils import timezone

from audit.models import AuditEvent
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from jit.models import BreakGlassEligibility
from jit.selectors_break_glass import eligible_entitlements
from jit.services.break_glass import eligibility_create, eligibility_renew, eligibility_revoke, eligibility_update
from tests.factories.break_glass import BreakGlassEntitlementFactory, EligibilityFactory
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def entitlement():
    return BreakGlassEntitlementFactory()


@pytest.fixture
def olga():
    return PersonFactory(name="Olga", user__username="olga")


def create(actor, entitlement, **kwargs):
    kwargs.setdefault("expires_at", timezone.now() + timedelta(days=90))
    return eligibility_create(actor=actor, entitlement=entitlement, **kwargs)


#
# Creating
#
def test_an_admin_names_a_person_with_the_default_duration_and_it_is_audited(admin_user, entitlement, olga):
    eligibility = create(admin_user, entitlement, identity=olga, reason="On-call DBA")
    assert eligibility.max_duration == settings.BREAK_GLASS_DEFAULT_DURATION == timedelta(hours=1)
    assert eligibility.created_by == admin_user and eligibility.reviewed_by == admin_user
    event = AuditEvent.objects.get(action="break_glass.eligibility_granted")
    assert event.data["identity"] == olga.pk and event.data["entitlement"] == entitlement.pk


def test_a_group_may_be_named_instead_of_a_person(admin_user, entitlement):
    Group.objects.create(name="oncall")
    assert create(admin_user, entitlement, group="oncall").group == "oncall"


@pytest.mark.parametrize("role", ["requester", "approver", "owner", "auditor"])
def test_only_admins_manage_eligibility(make_user, entitlement, olga, role):
    someone = make_user(f"not-admin-{role}", roles=(role,))
    with pytest.raises(PermissionRefused, match="Only an admin"):
        create(someone, entitlement, identity=olga)
    eligibility = EligibilityFactory()
    for call in (
        lambda: eligibility_update(eligibility_id=eligibility.pk, actor=someone, max_duration=timedelta(hours=2)),
        lambda: eligibility_renew(
            eligibility_id=eligibility.pk, actor=someone, expires_at=timezone.now() + timedelta(days=9)
        ),
        lambda: eligibility_revoke(eligibility_id=eligibility.pk, actor=someone, reason="no"),
    ):
        with pytest.raises(PermissionRefused):
            call()
    assert BreakGlassEligibility.objects.count() == 1
    assert not AuditEvent.objects.filter(action__startswith="break_glass.").exists()


def test_an_entitlement_not_marked_break_glass_eligible_is_refused(admin_user, olga):
    with pytest.raises(ValidationFailed, match="not marked break-glass eligible") as refused:
        create(admin_user, EntitlementFactory(), identity=olga)
    assert "entitlement" in refused.value.field_errors


def test_a_retired_entitlement_is_refused(admin_user, entitlement, olga):
    entitlement.status = "retired"
    entitlement.save()
    with pytest.raises(ValidationFailed, match="retired"):
        create(admin_user, entitlement, identity=olga)


@pytest.mark.parametrize(
    ("duration", "message"),
    [(timedelta(hours=4, seconds=1), "global cap"), (timedelta(days=1), "global cap"), (timedelta(0), "positive")],
)
def test_a_duration_above_the_global_cap_or_not_positive_is_refused(admin_user, entitlement, olga, duration, message):
    with pytest.raises(ValidationFailed, match=message) as refused:
        create(admin_user, entitlement, identity=olga, max_duration=duration)
    assert "max_duration" in refused.value.field_errors
    assert not BreakGlassEligibility.objects.exists()


def test_the_global_cap_itself_is_allowed(admin_user, entitlement, olga):
    assert create(admin_user, entitlement, identity=olga, max_duration=settings.BREAK_GLASS_MAX_DURATION)


@pytest.mark.parametrize("holder", ["both", "neither"])
def test_exactly_one_holder_is_named(admin_user, entitlement, olga, holder):
    Group.objects.create(name="oncall")
    kwargs = {"identity": olga, "group": "oncall"} if holder == "both" else {}
    with pytest.raises(ValidationFailed, match="either one identity or one group"):
        create(admin_user, entitlement, **kwargs)


def test_an_unknown_group_is_refused(admin_user, entitlement, olga):
    with pytest.raises(ValidationFailed, match="no group named"):
        create(admin_user, entitlement, group="nobody")
    with pytest.raises(ValidationFailed, match="no group named"):
        create(admin_user, entitlement, identity=olga, reviewer_group="nobody")


@pytest.mark.parametrize("days", [-1, 400])
def test_eligibility_must_end_in_the_future_and_within_a_year(admin_user, entitlement, olga, days):
    with pytest.raises(ValidationFailed) as refused:
        create(admin_user, entitlement, identity=olga, expires_at=timezone.now() + timedelta(days=days))
    assert "expires_at" in refused.value.field_errors


def test_a_kind_of_identity_the_entitlement_does_not_allow_is_refused(admin_user, olga):
    entitlement = BreakGlassEntitlementFactory(allowed_identity_kinds=["human"])
    with pytest.raises(ValidationFailed, match="may not be held"):
        create(admin_user, entitlement, identity=MachineFactory())


#
# Changing, renewing (the periodic review), revoking
#
def test_update_changes_the_cap_within_the_global_cap_and_is_audited(admin_user):
    eligibility = EligibilityFactory()
    eligibility_update(eligibility_id=eligibility.pk, actor=admin_user, max_duration=timedelta(hours=2))
    eligibility.refresh_from_db()
    assert eligibility.max_duration == timedelta(hours=2)
    event = AuditEvent.objects.get(action="break_glass.eligibility_updated")
    assert event.data["before"]["max_duration"] != event.data["after"]["max_duration"]
    with pytest.raises(ValidationFailed, match="global cap"):
        eligibility_update(eligibility_id=eligibility.pk, actor=admin_user, max_duration=timedelta(hours=5))


def test_renewal_records_the_review(admin_user):
    eligibility = EligibilityFactory()
    later = timezone.now() + timedelta(days=180)
    with time_machine.travel(timezone.now() + timedelta(days=10), tick=False):
        eligibility_renew(eligibility_id=eligibility.pk, actor=admin_user, expires_at=later)
    eligibility.refresh_from_db()
    assert eligibility.expires_at == later and eligibility.reviewed_by == admin_user
    assert eligibility.reviewed_at is not None
    assert AuditEvent.objects.filter(action="break_glass.eligibility_renewed").count() == 1


def test_a_lapsed_eligibility_can_be_renewed_late_a_revoked_one_cannot(admin_user):
    lapsed = EligibilityFactory(expires_at=timezone.now() - timedelta(days=1))
    eligibility_renew(eligibility_id=lapsed.pk, actor=admin_user, expires_at=timezone.now() + timedelta(days=30))
    revoked = EligibilityFactory(is_active=False)
    with pytest.raises(InvalidTransition, match="revoked"):
        eligibility_renew(eligibility_id=revoked.pk, actor=admin_user, expires_at=timezone.now() + timedelta(days=30))


def test_revoke_needs_a_reason_and_is_idempotent(admin_user):
    eligibility = EligibilityFactory()
    with pytest.raises(ValidationFailed):
        eligibility_revoke(eligibility_id=eligibility.pk, actor=admin_user, reason=" ")
    eligibility_revoke(eligibility_id=eligibility.pk, actor=admin_user, reason="Left the on-call rota")
    eligibility_revoke(eligibility_id=eligibility.pk, actor=admin_user, reason="again")
    eligibility.refresh_from_db()
    assert not eligibility.is_active
    assert AuditEvent.objects.filter(action="break_glass.eligibility_revoked").count() == 1


#
# Who it is in force for
#
def test_eligible_entitlements_by_name_by_group_and_for_a_machine():
    olga = PersonFactory(user__username="olga")
    oncall = Group.objects.create(name="oncall")
    olga.user.groups.add(oncall)
    mine = EligibilityFactory(identity=olga)
    by_group = EligibilityFactory(identity=None, group="oncall")
    bot = MachineFactory(owner=olga)
    machines = EligibilityFactory(identity=bot)
    EligibilityFactory()  # someone else's
    assert set(eligible_entitlements(olga.user)) == {mine, by_group}
    assert set(eligible_entitlements(olga)) == {mine, by_group}
    assert list(eligible_entitlements(bot)) == [machines]


@pytest.mark.parametrize(
    "change",
    [
        lambda e: setattr(e, "is_active", False),
        lambda e: setattr(e, "expires_at", timezone.now() - timedelta(seconds=1)),
        lambda e: (setattr(e.entitlement, "break_glass_eligible", False), e.entitlement.save()),
        lambda e: (setattr(e.entitlement.system, "status", "retired"), e.entitlement.system.save()),
    ],
    ids=["revoked", "lapsed", "entitlement-not-eligible", "system-retired"],
)
def test_eligibility_not_in_force_is_not_listed(change):
    eligibility = EligibilityFactory()
    change(eligibility)
    eligibility.save()
    assert not eligible_entitlements(eligibility.identity.user).exists()


def test_a_suspended_person_or_a_login_without_identity_is_eligible_for_nothing(make_user):
    eligibility = EligibilityFactory()
    eligibility.identity.status = "suspended"
    eligibility.identity.save()
    assert not eligible_entitlements(eligibility.identity.user).exists()
    assert not eligible_entitlements(make_user("no-identity")).exists()
