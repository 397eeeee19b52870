"""Signed webhooks: how the portal tells another program something, so that it can prove the message
came from the portal and was not replayed.

The signature is HMAC-SHA256 over `"<timestamp>.<body>"` with a secret the receiver was given once:

    X-Portal-Timestamp: 1764739200
    X-Portal-Signature: v1=<hex digest>
    Idempotency-Key: <one per message: a repeat delivery carries the same key>

A receiver recomputes the digest, compares in constant time and refuses a timestamp more than a few
minutes old (README: "Signed callbacks"). Delivery goes through the outbox, so a receiver that is down
gets the message again later, with the same idempotency key.

A failure says whether trying again may help (`WebhookFailed.retriable`): nothing answered, a timeout,
a 5xx, 408, 425 or 429 may; any other answer (401, 403, 404, 400, 422, a redirect not followed, a
certificate that does not verify) will not until a person fixes something. Redirects are followed only
to the same scheme, host and port, and a POST only by 307/308 (which keep the method and the body):
a signed event never goes anywhere its URL does not name.
"""

import hashlib
import hmac
import http.client
import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

SIGNATURE_VERSION = "v1"
TIMEOUT_SECONDS = 5
MAX_ANSWER_BYTES = 64 * 1024  # what is read of an answer unless the caller needs more (a holdings list)


class WebhookFailed(Exception):
    """The receiver did not take the message (not 2xx, or unreachable).

    `status` is the HTTP status (None when nothing answered); `retriable` says whether a later try may
    work. Request callbacks retry every failure through the outbox; connectors give up on the rest.
    """

    def __init__(self, message: str, *, status: int | None = None, retriable: bool = True):
        super().__init__(message)
        self.status = status
        self.retriable = retriable


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def retriable_status(status: int) -> bool:
    """Worth another try later: the receiver is failing, overloaded, or asked us to slow down."""
    return status >= 500 or status in (408, 425, 429)


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
    return signatures_match(webhook_signature(secret, moment, body), signature)


def signatures_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison that takes any header text (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(expected.encode(), (given or "").encode("utf-8", "replace"))


def webhook_body(payload: dict[str, Any]) -> bytes:
    """The bytes that are signed and sent: compact JSON with sorted keys (times as ISO 8601 text)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def signed_headers(secret: str, body: bytes, *, event: str, idempotency_key: str = "") -> dict[str, str]:
    timestamp = int(time.time())
    headers = {
        "User-Agent": "access-portal-webhook/1",
        "X-Portal-Event": event,
        "X-Portal-Timestamp": str(timestamp),
        "X-Portal-Signature": webhook_signature(secret, timestamp, body),
    }
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL: what messages name, never its path (which may carry a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only within the URL's own scheme, host and port; a POST only by 307/308.

    Returning None leaves the 3xx as the answer (an HTTPError), which the caller reports as not followed.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not _same_origin(req.full_url, newurl):
            return None
        if req.get_method() == "GET":
            return super().redirect_request(req, fp, code, msg, headers, newurl)
        if code not in (307, 308):
            return None  # 301/302/303 would turn the signed POST into a GET without its body
        return urllib.request.Request(
            newurl, data=req.data, headers=dict(req.header_items()), method=req.get_method(), unverifiable=True
        )


_opener = urllib.request.build_opener(_SameOriginRedirects)


def _snippet(raw: bytes) -> str:
    """The start of a refusal's body, on one line, for the person who reads the error."""
    text = " ".join(raw[:200].decode("utf-8", "replace").split())
    return f": {text}" if text else ""


def webhook_send(
    url: str,
    *,
    secret: str,
    event: str,
    body: bytes = b"",
    method: str = "POST",
    idempotency_key: str = "",
    timeout: float = TIMEOUT_SECONDS,
    max_answer_bytes: int = MAX_ANSWER_BYTES,
) -> WebhookAnswer:
    """Send a signed request; a 2xx comes back as a WebhookAnswer, anything else raises WebhookFailed."""
    headers = signed_headers(secret, body, event=event, idempotency_key=idempotency_key)
    if method != "GET":
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body if method != "GET" else None, method=method, headers=headers)
    where = origin_of(url)
    try:
        with _opener.open(request, timeout=timeout) as response:
            raw = response.read(max_answer_bytes + 1)
            if len(raw) > max_answer_bytes:
                raise WebhookFailed(
                    f"{where} answered more than {max_answer_bytes} bytes", status=response.status, retriable=False
                )
            return WebhookAnswer(response.status, raw, dict(response.headers.items()))
    except urllib.error.HTTPError as error:
        status = error.code
        if 300 <= status < 400:
            target = error.headers.get("Location", "") if error.headers else ""
            raise WebhookFailed(
                f"{where} answered {status} (a redirect to {origin_of(target) if target else 'elsewhere'}, not"
                " followed: name the final address in the settings)",
                status=status,
                retriable=False,
            ) from None
        try:
            snippet = _snippet(error.read(200))
        except (OSError, http.client.HTTPException):
            snippet = ""
        raise WebhookFailed(
            f"{where} answered {status}{snippet}", status=status, retriable=retriable_status(status)
        ) from None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise WebhookFailed(
                f"{where}: its TLS certificate does not verify ({reason.verify_message})", retriable=False
            ) from None
        if isinstance(reason, TimeoutError):
            raise WebhookFailed(f"{where} did not answer within {timeout:g} s", retriable=True) from None
        raise WebhookFailed(f"{where} unreachable: {_describe(reason)}", retriable=True) from None
    except TimeoutError:
        raise WebhookFailed(f"{where} did not answer within {timeout:g} s", retriable=True) from None
    except (OSError, http.client.HTTPException) as error:
        raise WebhookFailed(f"{where} unreachable: {_describe(error)}", retriable=True) from None


def _describe(error: object) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, BaseException):
        detail = str(error)
        return f"{type(error).__name__}: {detail}" if detail else type(error).__name__
    return str(error)


def webhook_post(
    url: str,
    *,
    secret: str,
    payload: dict[str, Any],
    event: str,
    idempotency_key: str,
    timeout: float = TIMEOUT_SECONDS,
) -> int:
    """POST the payload as JSON, signed; any non-2xx answer or network error raises WebhookFailed."""
    answer = webhook_send(
        url, secret=secret, event=event, body=webhook_body(payload), idempotency_key=idempotency_key, timeout=timeout
    )
    return answer.status
