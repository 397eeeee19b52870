"""Break-glass on real concurrent connections (PostgreSQL): one outcome per race, and a refusal that
survives the rolled-back activation in a committed transaction of its own."""

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from audit.verify import verify_chain
from governance.errors import InvalidTransition, PermissionRefused
from governance.models import Grant
from jit.models import BreakGlassActivation, BreakGlassDrill
from jit.services.break_glass import eligibility_revoke
from tests.concurrency import race
from tests.factories.break_glass import EligibilityFactory, activate

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROUNDS = 4


def test_a_double_activation_gives_one_grant_and_one_clear_refusal():
    for _ in range(ROUNDS):
        eligibility = EligibilityFactory()
        results = race(lambda e=eligibility: activate(e), lambda e=eligibility: activate(e))
        winners = [r for r in results if isinstance(r, BreakGlassActivation)]
        losers = [r for r in results if isinstance(r, Exception)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert isinstance(losers[0], InvalidTransition) and "already" in losers[0].message
        assert Grant.objects.filter(identity=eligibility.identity).count() == 1
    assert AuditEvent.objects.filter(action="break_glass.refused").count() == ROUNDS
    assert verify_chain().ok


def test_revoking_an_eligibility_while_it_is_used_ends_in_one_consistent_state(admin_user):
    for _ in range(ROUNDS):
        eligibility = EligibilityFactory()
        results = race(
            lambda e=eligibility: activate(e),
            lambda e=eligibility: eligibility_revoke(eligibility_id=e.pk, actor=admin_user, reason="rota"),
        )
        activated = isinstance(results[0], BreakGlassActivation)
        if not activated:
            assert isinstance(results[0], PermissionRefused) and "revoked" in results[0].message
        # Either it was used before the revocation (and runs to its hard end), or refused after it.
        assert BreakGlassActivation.objects.filter(eligibility=eligibility).count() == int(activated)
    assert verify_chain().ok


def test_a_refusal_inside_the_activation_is_committed_after_it_rolled_back():
    eligibility = EligibilityFactory()
    other = EligibilityFactory()
    drill = BreakGlassDrill.objects.create(eligibility=other, scheduled_for=timezone.now())
    with pytest.raises(Exception, match="not scheduled"):
        activate(eligibility, drill_id=drill.pk)
    # The activation's transaction rolled back (no grant), the refusal was committed on its own.
    assert not Grant.objects.exists()
    event = AuditEvent.objects.get(action="break_glass.refused")
    assert event.data["drill"] == drill.pk and "not scheduled" in event.data["refusal"]
    assert verify_chain().ok
