"""A grant in force is one rule: the queryset method and the loaded grant's method agree, by one clock."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from governance.choices import GrantKind, GrantStatus
from governance.models import Grant
from tests.factories.governance import GrantFactory

pytestmark = pytest.mark.django_db


def test_in_force_is_active_and_not_past_expiry_in_the_queryset_and_on_the_instance():
    # given grants of every shape around one instant
    now = timezone.now()
    in_force = {
        GrantFactory(kind=GrantKind.STANDING).pk,
        GrantFactory(kind=GrantKind.JIT, expires_at=now + timedelta(seconds=1)).pk,
    }
    GrantFactory(kind=GrantKind.JIT, expires_at=now)  # at its expiry: no longer in force
    GrantFactory(kind=GrantKind.JIT, expires_at=now - timedelta(minutes=1))  # past it, before the sweep
    GrantFactory(kind=GrantKind.JIT, status=GrantStatus.PENDING_PROVISION, granted_at=None, expires_at=None)
    GrantFactory(kind=GrantKind.JIT, status=GrantStatus.REVOKING, expires_at=now + timedelta(hours=1))
    GrantFactory(kind=GrantKind.STANDING, status=GrantStatus.REVOKED)
    # then the queryset, its complement and each instance say the same
    assert set(Grant.objects.in_force(now).values_list("pk", flat=True)) == in_force
    assert not set(Grant.objects.not_in_force(now).values_list("pk", flat=True)) & in_force
    assert Grant.objects.in_force(now).count() + Grant.objects.not_in_force(now).count() == Grant.objects.count()
    assert {grant.pk for grant in Grant.objects.all() if grant.is_in_force(now)} == in_force
    past = Grant.objects.filter(expires_at__lte=now, status=GrantStatus.ACTIVE)
    assert (
        {grant.pk for grant in Grant.objects.all() if grant.is_past_expiry(now)}
        == set(Grant.objects.due_for_expiry(now).values_list("pk", flat=True))
        == set(past.values_list("pk", flat=True))
    )


def test_without_now_both_read_the_clock_that_tests_move():
    grant = GrantFactory(kind=GrantKind.JIT, expires_at=timezone.now() + timedelta(hours=1))
    assert grant.is_in_force() and Grant.objects.in_force().filter(pk=grant.pk).exists()
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        assert not grant.is_in_force() and grant.is_past_expiry()
        assert not Grant.objects.in_force().filter(pk=grant.pk).exists()
        assert Grant.objects.not_in_force().filter(pk=grant.pk).exists()
