"""Sets the audit context (channel, correlation id, client address) for one web request."""

import ipaddress
import re
import uuid

from django.conf import settings

from .context import AuditContext, _current

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def client_ip(request) -> str:
    """The client's address, as the audit trail, sign-in lock-outs and API throttles see it.

    Behind TRUSTED_PROXY_COUNT proxies, each appends the address it was reached from to
    X-Forwarded-For, so the client is the entry that many places from the right; anything left of it
    came from the client and is never believed. A header shorter than the chain of proxies (or not an
    address) did not come through them: the connection's own address counts then.
    """
    remote = request.META.get("REMOTE_ADDR", "")[:45]
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(hops) < proxies or not hops[-proxies]:
        return remote
    try:
        return str(ipaddress.ip_address(hops[-proxies]))
    except ValueError:
        return remote


def channel_for(path: str) -> str:
    if path.startswith("/api/"):
        return "api"
    if path.startswith("/admin/"):
        return "admin"
    return "web"


class AuditContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        correlation_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.correlation_id = correlation_id
        token = _current.set(
            AuditContext(
                channel=channel_for(request.path),
                correlation_id=correlation_id,
                client_ip=client_ip(request),
                user=getattr(request, "user", None),  # lazy: resolved only if a signal receiver asks
            )
        )
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response["X-Request-ID"] = correlation_id
        return response
