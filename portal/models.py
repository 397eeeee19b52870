"""The portal wires the apps together; its one table holds each person's own settings (their time zone).

Roles are auth groups (governance/roles.py).
"""

from django.conf import settings
from django.db import models


class Profile(models.Model):
    """A signed-in person's own settings. No row: every setting is its default (the browser's time zone)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="portal_profile")
    # An IANA name ("Europe/Berlin"); empty: the browser's zone (static/js/browser-time-zone.js), else the portal's.
    time_zone = models.CharField(max_length=64, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Profile of {self.user}"
