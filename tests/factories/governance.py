from datetime import timedelta

import factory
from django.utils import timezone

from governance.choices import GrantKind, GrantStatus, IdentityKind, RiskTier
from governance.models import Entitlement, Grant, Identity, SodRule, System

from .portal import PersonUserFactory


class PersonFactory(factory.django.DjangoModelFactory):
    """A human identity with a login holding the requester role, as every employee's does.

    `user__roles` names the login's roles exactly: `PersonFactory(user__roles=["auditor"])` is an
    auditor and nothing else, `user__roles=[]` a login with no role (who may not request access).
    """

    class Meta:
        model = Identity

    kind = IdentityKind.HUMAN
    name = factory.Sequence(lambda n: f"Person {n}")
    email = factory.Sequence(lambda n: f"person{n}@example.org")
    team = "Platform"
    user = factory.SubFactory(PersonUserFactory, email=factory.SelfAttribute("..email"))


class MachineFactory(factory.django.DjangoModelFactory):
    """A non-human identity (service account by default) with an owner."""

    class Meta:
        model = Identity

    kind = IdentityKind.SERVICE_ACCOUNT
    name = factory.Sequence(lambda n: f"svc-{n}")
    owner = factory.SubFactory(PersonFactory)
    credential_type = "static_secret"
    secret_location = "secrets_manager"
    last_rotated_at = factory.LazyFunction(timezone.now)
    rotation_period_days = 90
    last_used_at = factory.LazyFunction(timezone.now)


class SystemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = System

    name = factory.Sequence(lambda n: f"System {n}")
    owner = factory.SubFactory(PersonFactory)
    criticality = "medium"


class EntitlementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Entitlement

    system = factory.SubFactory(SystemFactory)
    name = factory.Sequence(lambda n: f"role-{n}")
    owner = factory.SubFactory(PersonFactory)
    business_purpose = "Operate the service"
    risk_tier = RiskTier.LOW
    approval_stages = factory.LazyFunction(lambda: [{"approver": "entitlement_owner", "quorum": 1}])


class GrantFactory(factory.django.DjangoModelFactory):
    """An active grant (standing unless kind says otherwise)."""

    class Meta:
        model = Grant

    identity = factory.SubFactory(MachineFactory)
    entitlement = factory.SubFactory(EntitlementFactory)
    kind = GrantKind.STANDING
    status = GrantStatus.ACTIVE
    granted_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))
    expires_at = factory.LazyAttribute(
        lambda g: None if g.kind == GrantKind.STANDING else timezone.now() + timedelta(hours=4)
    )


class SodRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SodRule
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"SoD rule {n}")
    action = "extra_stage"

    @factory.post_generation
    def entitlements(self, create, extracted, **kwargs):
        if create and extracted:
            self.entitlements.set(extracted)


def with_role(identity, role: str):
    """Give a person's login one of the portal's roles (a group); returns the identity."""
    from django.contrib.auth.models import Group

    identity.user.groups.add(Group.objects.get(name=role))
    return identity
