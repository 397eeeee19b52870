"""Signed callbacks: an agent that asked for access hears the outcome (approved with its grant, denied,
cancelled, timed out, failed) at the URL it gave, instead of polling.

Registered in the submission's transaction; each outcome enqueues one outbox message in the transaction
that decides it (its idempotency key is the request and its status, so a repeat never sends twice),
and the dispatcher delivers it after commit, retrying with backoff while the receiver is down.
"""

import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from audit.outbox import outbox_enqueue, outbox_handler
from audit.webhooks import webhook_post
from governance.errors import ValidationFailed

from ..models import AccessRequest, RequestCallback

CALLBACK = "jit.request_callback"


def callback_url_clean(url: str) -> str:
    """https only (http when settings allow it, for local development), and a host on the allowlist if one is set."""
    url = (url or "").strip()
    parts = urlsplit(url)
    schemes = ("https", "http") if settings.REQUEST_CALLBACK_ALLOW_HTTP else ("https",)
    allowed = settings.REQUEST_CALLBACK_HOSTS
    problem = ""
    if parts.scheme not in schemes or not parts.hostname:
        problem = f"A callback URL must be an absolute {' or '.join(schemes)} URL."
    elif parts.username or parts.password:
        problem = "A callback URL may not carry credentials."
    elif allowed and parts.hostname.lower() not in allowed:
        problem = "This host is not on the portal's callback allowlist (REQUEST_CALLBACK_HOSTS)."
    if problem:
        raise ValidationFailed(problem, field_errors={"callback_url": [problem]}, code="bad_callback_url")
    return url


def request_callback_register(request: AccessRequest, url: str) -> str:
    """Remember where to call back; the signing secret is returned once, to whoever submitted."""
    secret = secrets.token_hex(32)
    RequestCallback.objects.create(request=request, url=callback_url_clean(url), secret=secret)
    return secret


def callback_payload(request: AccessRequest) -> dict[str, Any]:
    grant = request.grant
    return {
        "event": f"request.{request.status}",
        "request": {
            "id": request.pk,
            "status": request.status,
            "beneficiary": request.beneficiary_id,
            "entitlement": request.entitlement_id,
            "decided_at": request.decided_at,
            "decision_note": request.decision_note,
            "activation_deadline": request.activation_deadline,
        },
        "grant": None if grant is None else {"id": grant.pk, "status": grant.status, "expires_at": grant.expires_at},
    }


def request_outcome_callback(request: AccessRequest) -> None:
    """Enqueue the outcome for the request's callback, if it has one (in the deciding transaction)."""
    if not RequestCallback.objects.filter(request_id=request.pk).exists():
        return
    outbox_enqueue(
        kind=CALLBACK,
        # As JSON text would say it (times in ISO 8601): the outbox keeps payloads as JSON.
        payload={
            "request": request.pk,
            "body": json.loads(json.dumps(callback_payload(request), cls=DjangoJSONEncoder)),
        },
        idempotency_key=f"request:{request.pk}:callback:{request.status}",
    )


@outbox_handler(CALLBACK)
def deliver_request_callback(payload: dict[str, Any], idempotency_key: str) -> None:
    callback = RequestCallback.objects.filter(request_id=payload["request"]).first()
    if callback is None:  # the request is gone: nobody to tell
        return
    body = payload["body"]
    webhook_post(
        callback.url, secret=callback.secret, payload=body, event=body["event"], idempotency_key=idempotency_key
    )
