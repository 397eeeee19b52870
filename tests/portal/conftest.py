"""Fixtures the portal's fault tests share."""

from datetime import timedelta

import pytest

from governance.choices import RiskTier
from tests.factories.governance import EntitlementFactory, PersonFactory


@pytest.fixture
def pending_request(db):
    """A request waiting for its one approver, the entitlement's owner."""
    from jit.services.requests import access_request_submit

    owner = PersonFactory(name="Entowner", user__username="entowner")
    entitlement = EntitlementFactory(name="db-write", risk_tier=RiskTier.MEDIUM, owner=owner)
    alice = PersonFactory(name="Alice", user__username="alice")
    access_request = access_request_submit(
        actor=alice.user,
        beneficiary_id=alice.pk,
        entitlement_id=entitlement.pk,
        duration=timedelta(hours=2),
        justification="Fix incident 42",
    )
    return access_request, owner.user
