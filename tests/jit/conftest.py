from datetime import timedelta

import pytest

from governance.choices import RiskTier
from tests.factories.governance import EntitlementFactory, MachineFactory, PersonFactory, SystemFactory

TWO_STAGES = [{"approver": "entitlement_owner", "quorum": 1}, {"approver": "system_owner", "quorum": 1}]


@pytest.fixture
def alice(db):
    """A requester: a person with a login, owning one service account."""
    return PersonFactory(name="Alice", user__username="alice")


@pytest.fixture
def alice_bot(alice):
    return MachineFactory(name="alice-bot", owner=alice)


@pytest.fixture
def entitlement(db):
    """Medium risk, two stages: the entitlement owner, then the system owner."""
    return EntitlementFactory(
        name="db-write",
        risk_tier=RiskTier.MEDIUM,
        approval_stages=TWO_STAGES,
        system=SystemFactory(name="Payments DB", owner=PersonFactory(name="Sysowner", user__username="sysowner")),
        owner=PersonFactory(name="Entowner", user__username="entowner"),
    )


@pytest.fixture
def ent_owner(entitlement):
    return entitlement.owner.user


@pytest.fixture
def sys_owner(entitlement):
    return entitlement.system.owner.user


@pytest.fixture
def submit(alice):
    from jit.services.requests import access_request_submit

    def do(
        entitlement, *, actor=None, beneficiary=None, duration=timedelta(hours=2), justification="Fix incident 42", **kw
    ):
        return access_request_submit(
            actor=actor or alice.user,
            beneficiary_id=(beneficiary or alice).pk,
            entitlement_id=entitlement.pk,
            duration=duration,
            justification=justification,
            **kw,
        )

    return do
