"""Break-glass test data: an eligible person, an eligibility, an activation made through the service."""

from datetime import timedelta

import factory
from django.contrib.auth.models import Group
from django.utils import timezone

from jit.models import BreakGlassEligibility

from .governance import EntitlementFactory, PersonFactory, SystemFactory

PASSWORD = "pw-for-tests"  # UserFactory's password


class BreakGlassEntitlementFactory(EntitlementFactory):
    name = factory.Sequence(lambda n: f"prod-root-{n}")
    break_glass_eligible = True
    risk_tier = "critical"
    system = factory.SubFactory(SystemFactory, name=factory.Sequence(lambda n: f"Prod {n}"))


class EligibilityFactory(factory.django.DjangoModelFactory):
    """A person eligible for a break-glass entitlement for an hour, for 90 days (no audit event: test data)."""

    class Meta:
        model = BreakGlassEligibility

    entitlement = factory.SubFactory(BreakGlassEntitlementFactory)
    identity = factory.SubFactory(PersonFactory)
    group = ""
    max_duration = timedelta(hours=1)
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=90))


def security_member(username: str = "sec1"):
    """A member of the security group (settings.BREAK_GLASS_SECURITY_GROUP), told of every activation."""
    from django.conf import settings

    person = PersonFactory(name=f"Security {username}", user__username=username)
    group, _ = Group.objects.get_or_create(name=settings.BREAK_GLASS_SECURITY_GROUP)
    person.user.groups.add(group)
    return person


def activate(eligibility, *, actor=None, **kwargs):
    """Break glass as the eligibility's person, with the right password unless told otherwise."""
    from jit.services.break_glass import break_glass_activate

    kwargs.setdefault("incident_reference", "INC-1234")
    kwargs.setdefault("reason", "Payments are down; need root to restart the ledger.")
    kwargs.setdefault("password", PASSWORD)
    kwargs.setdefault("eligibility_id", eligibility.pk)
    return break_glass_activate(actor=actor or eligibility.identity.user, **kwargs)
