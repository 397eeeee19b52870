"""Bearer-token authentication for `/scim/v2/`: a SCIM source's own token, and nothing else.

Configured as django-scim2's AUTH_CHECK_MIDDLEWARE, so it runs around every SCIM view. A session
(a signed-in admin's browser) or an API token (`gp_...`) gets 401: SCIM is for sources only. On
success the request carries `scim_source`, and every audit event of this request is recorded with
the channel `scim`.
"""

import json
from datetime import timedelta

from django.db.models import DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now
from django.http import HttpResponse
from django_scim import constants
from django_scim.middleware import SCIMAuthCheckMiddleware

from audit.choices import Channel
from audit.context import set_context

from ..models_scim import ScimSource
from .credentials import source_for_token

LAST_USED_GRANULARITY_SECONDS = 60


def _unauthorized(detail: str) -> HttpResponse:
    body = {"schemas": [constants.SchemaURI.ERROR], "detail": detail, "status": "401"}
    response = HttpResponse(json.dumps(body), status=401, content_type=constants.SCIM_CONTENT_TYPE)
    response["WWW-Authenticate"] = 'Bearer realm="scim", error="invalid_token"'
    return response


class ScimBearerAuth(SCIMAuthCheckMiddleware):
    def process_request(self, request):
        header = request.headers.get("Authorization", "")
        scheme, _, raw = header.partition(" ")
        source = source_for_token(raw.strip()) if scheme.lower() == "bearer" else None
        if source is None:
            return _unauthorized("A SCIM source's bearer token is required.")
        request.scim_source = source
        set_context(channel=Channel.SCIM)
        # At most one write a minute, so a busy provider does not write a row per call; stamped and
        # compared by the database's clock, as every recorded time is.
        a_while_ago = ExpressionWrapper(
            Now() - timedelta(seconds=LAST_USED_GRANULARITY_SECONDS), output_field=DateTimeField()
        )
        ScimSource.objects.filter(pk=source.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=a_while_ago)
        ).update(last_used_at=Now())
        return None
