"""Signed webhooks: how the portal tells another program something, so that it can prove the message
came from the portal and was not replayed.

The signature is HMAC-SHA256 over `"<timestamp>.<body>"` with a secret the receiver was given once:

    X-Portal-Timestamp: 1764739200
    X-Portal-Signature: v1=<hex digest>
    Idempotency-Key: <one per message: a repeat delivery carries the same key>

A receiver recomputes the digest, compares in constant time and refuses a timestamp more than a few
minutes old (README: "Signed callbacks"). Delivery goes through the outbox, so a receiver that is down
gets the message again later, with the same idempotency key.
"""

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

SIGNATURE_VERSION = "v1"
TIMEOUT_SECONDS = 5


class WebhookFailed(Exception):
    """The receiver did not take the message (not 2xx, or unreachable): the outbox retries it."""


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def webhook_verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: int = 300) -> bool:
    """The receiver's side, kept here so the README snippet and the tests check one definition."""
    try:
        moment = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(time.time() - moment) > tolerance:
        return False
    return hmac.compare_digest(webhook_signature(secret, moment, body), signature)


def webhook_post(url: str, *, secret: str, payload: dict[str, Any], event: str, idempotency_key: str) -> int:
    """POST the payload as JSON, signed; any non-2xx answer or network error raises WebhookFailed."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    timestamp = int(time.time())
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "access-portal-webhook/1",
            "X-Portal-Event": event,
            "X-Portal-Timestamp": str(timestamp),
            "X-Portal-Signature": webhook_signature(secret, timestamp, body),
            "Idempotency-Key": idempotency_key,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status
    except urllib.error.HTTPError as error:
        raise WebhookFailed(f"{url} answered {error.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise WebhookFailed(f"{url} unreachable: {error.__class__.__name__}") from None
