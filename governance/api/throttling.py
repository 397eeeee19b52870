"""API rates per signed-in user, or per client address for callers who are not signed in.

DRF's own throttles read X-Forwarded-For themselves; these take the address the audit trail records
(audit.middleware.client_ip), so a client cannot dodge the limit by sending the header.
"""

from rest_framework import throttling
from rest_framework.settings import api_settings

from audit.middleware import client_ip


class _ClientAddressMixin:
    def get_ident(self, request) -> str:
        return client_ip(request)

    def get_rate(self) -> str | None:
        # DRF reads the rates once, at import; read them when asked, so that settings changed later count.
        self.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        return super().get_rate()


class AnonRateThrottle(_ClientAddressMixin, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_ClientAddressMixin, throttling.UserRateThrottle):
    pass
