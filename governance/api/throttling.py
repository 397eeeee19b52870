"""API rates per API token, per signed-in caller, or per client address for callers who are not signed in.

A caller is a person (`request.user.pk`, their user id) or a machine identity signed in by a token
(`MachinePrincipal.pk` is "identity:<id>"): so a machine's tokens share one rate, its identity's, and
each token has a rate of its own beside it (`TokenRateThrottle`), so one runaway token does not use
up the rate of the others. DRF's own throttles read X-Forwarded-For themselves; these take the address
the audit trail records (audit.middleware.client_ip), so a client cannot dodge the limit by sending the header.
"""

from rest_framework import throttling
from rest_framework.settings import api_settings

from audit.middleware import client_ip
from governance.models import ApiToken


class _RatesWhenAsked:
    def get_rate(self) -> str | None:
        # DRF reads the rates once, at import; read them when asked, so that settings changed later count.
        self.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        return super().get_rate()


class _ClientAddressMixin(_RatesWhenAsked):
    def get_ident(self, request) -> str:
        return client_ip(request)


class AnonRateThrottle(_ClientAddressMixin, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_ClientAddressMixin, throttling.UserRateThrottle):
    pass


class TokenRateThrottle(_RatesWhenAsked, throttling.SimpleRateThrottle):
    """The rate of one API token (`token`, API_THROTTLE_TOKEN_RATE), keyed on its public prefix; a session
    is not counted here."""

    scope = "token"

    def get_cache_key(self, request, view) -> str | None:
        token = request.auth
        if not isinstance(token, ApiToken):
            return None
        return self.cache_format % {"scope": self.scope, "ident": token.prefix}
