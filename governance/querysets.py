"""Reusable filters only; business rules live in services and policies."""

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .choices import GrantStatus, IdentityStatus


class IdentityQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status=IdentityStatus.ACTIVE)

    def owned_by(self, identity) -> "IdentityQuerySet":
        return self.filter(Q(owner=identity) | Q(backup_owner=identity))


class GrantQuerySet(models.QuerySet):
    def live(self):
        """Grants whose access exists or may exist on the target (includes ones being removed)."""
        return self.filter(status__in=GrantStatus.live())

    def active(self, now: datetime | None = None):
        """Grants in force now: confirmed active and not past expiry, even before the sweep runs."""
        now = now or timezone.now()
        return self.filter(status=GrantStatus.ACTIVE).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))

    def due_for_expiry(self, now: datetime | None = None):
        return self.filter(status=GrantStatus.ACTIVE, expires_at__lte=now or timezone.now())
