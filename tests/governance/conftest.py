import pytest

from tests.factories.governance import MachineFactory, PersonFactory, with_role


@pytest.fixture
def owner():
    """A person with the owner role."""
    return with_role(PersonFactory(name="Olu Owner"), "owner")


@pytest.fixture
def bot(owner):
    """A service account that `owner` owns."""
    return MachineFactory(name="billing-bot", owner=owner)
