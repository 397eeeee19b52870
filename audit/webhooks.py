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

Connections are kept open and used again (HTTP keep-alive), a few per origin, in each process: a bulk
revocation of thousands of grants to one system does not open thousands of TCP and TLS connections.
The pool is made on first use in each process (a forked worker never shares its parent's sockets) and
never retries: a kept connection that the receiver has closed is replaced before anything is sent on
it, but one that dies while a request is on it fails the call (retriable, "unreachable") rather than
send the request again. The outbox tries again later with the same Idempotency-Key, so a receiver
that did get the first one does the work once. A proxy named by HTTP_PROXY / HTTPS_PROXY is used
unless NO_PROXY names the host, as urllib's opener did.
"""

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import ssl
import string
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlparse, urlsplit, urlunparse

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import LocationValueError, NewConnectionError, ProtocolError, ProxyError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

SIGNATURE_VERSION = "v1"
TIMEOUT_SECONDS = 5
MAX_ANSWER_BYTES = 64 * 1024  # what is read of an answer unless the caller needs more (a holdings list)
CONNECTIONS_PER_ORIGIN = 4  # kept open per origin: as many as a dispatch batch sends side by side
ORIGINS_KEPT = 16  # origins whose connections are kept; the least recently used one's are closed
MAX_REDIRECTS, MAX_REPEATS = 10, 4  # as urllib's (hops; visits of one URL): then the 3xx is not followed
_REDIRECT_BODY_BYTES = 4096  # read of a redirect's own body so that its connection can be used again


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


_pools_lock = threading.Lock()
_pools_of_process: tuple[int, dict[str, urllib3.PoolManager]] | None = None  # by proxy URL ("" for none)


def _pool(proxy: str = "") -> urllib3.PoolManager:
    """This process's connections, made on first use: a pool made before a fork stays the parent's."""
    global _pools_of_process
    pid, made = os.getpid(), _pools_of_process
    if made is not None and made[0] == pid and proxy in made[1]:
        return made[1][proxy]
    with _pools_lock:
        if _pools_of_process is None or _pools_of_process[0] != pid:
            _pools_of_process = (pid, {})
        pools = _pools_of_process[1]
        if proxy not in pools:
            pools[proxy] = _new_pool(proxy)
        return pools[proxy]


def _new_pool(proxy: str) -> urllib3.PoolManager:
    options: dict[str, Any] = {
        "num_pools": ORIGINS_KEPT,
        "maxsize": CONNECTIONS_PER_ORIGIN,
        "block": False,  # a call beyond the few kept opens a connection of its own, closed after
        "retries": False,  # never a second send: trying again is the outbox's work
        "ssl_context": ssl.create_default_context(),  # urllib's: the system's CAs, host names checked
    }
    if not proxy:
        return urllib3.PoolManager(**options)
    auth = urlsplit(proxy).netloc.rpartition("@")[0]
    headers = urllib3.make_headers(proxy_basic_auth=unquote(auth)) if auth else None
    return urllib3.ProxyManager(proxy, proxy_headers=headers, **options)


_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "REQUEST_METHOD")
_proxies_read: tuple[tuple[str | None, ...], dict[str, str]] = ((), {})


def _proxy_for(url: str) -> str:
    """The proxy urllib's opener would have used for this URL ("" for none); the environment is read
    again only when one of the variables changed (reading it all takes longer than a kept-alive call)."""
    global _proxies_read
    variables = tuple(map(os.environ.get, _PROXY_VARIABLES))
    if variables != _proxies_read[0]:
        _proxies_read = (variables, urllib.request.getproxies())
    parts = urlsplit(url)
    proxy = _proxies_read[1].get(parts.scheme, "")
    if not proxy or urllib.request.proxy_bypass(parts.netloc.rpartition("@")[2]):
        return ""
    return proxy if "://" in proxy else f"http://{proxy}"


def _after_fork_in_child() -> None:
    """Forget the parent's pools (their sockets are the parent's) and their lock (a thread may have held it)."""
    global _pools_lock, _pools_of_process
    _pools_lock = threading.Lock()
    _pools_of_process = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _let_go(response: urllib3.BaseHTTPResponse) -> None:
    """Hand the connection back for the next call if its answer was read to the end; close it otherwise
    (the unread rest would be taken for the start of the next answer)."""
    if not response.isclosed():
        with contextlib.suppress(OSError):
            response.close()
    response.release_conn()


def _redirect_target(url: str, method: str, status: int, headers: Mapping[str, str]) -> str | None:
    """Where a redirect may be followed, as urllib's handler resolves it; None when it must not be:
    another scheme, host or port, or a POST moved by anything but 307/308 (a 301/302/303 would turn the
    signed POST into a GET without its body)."""
    location = headers.get("Location")
    if location is None:
        location = headers.get("URI")
    if location is None:
        return None
    parts = urlparse(location)
    if not parts.path and parts.netloc:
        location = urlunparse(parts._replace(path="/"))
    target = urljoin(url, quote(location, encoding="iso-8859-1", safe=string.punctuation))
    if not _same_origin(url, target):
        return None
    if method != "GET" and status not in (307, 308):
        return None
    return target


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
    data = body if method != "GET" else None
    where = origin_of(url)
    visited: dict[str, int] = {}
    try:
        while True:
            response = _pool(_proxy_for(url)).urlopen(
                method,
                url,
                body=data,
                headers=headers,
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),  # each as urllib's socket timeout
                preload_content=False,
                decode_content=False,  # the bytes as sent, as urllib gave them
            )
            try:
                status = response.status
                if 200 <= status < 300:
                    raw = response.read(max_answer_bytes + 1)
                    if len(raw) > max_answer_bytes:
                        raise WebhookFailed(
                            f"{where} answered more than {max_answer_bytes} bytes", status=status, retriable=False
                        )
                    return WebhookAnswer(status, raw, dict(response.headers.items()))
                if status in (301, 302, 303, 307, 308):
                    target = _redirect_target(url, method, status, response.headers)
                    if target is not None and visited.get(target, 0) < MAX_REPEATS and len(visited) < MAX_REDIRECTS:
                        visited[target] = visited.get(target, 0) + 1
                        response.read(_REDIRECT_BODY_BYTES)  # an error here is the call's, as urllib's was
                        url = target
                        continue
                if 300 <= status < 400:
                    location = response.headers.get("Location", "")
                    raise WebhookFailed(
                        f"{where} answered {status} (a redirect to {origin_of(location) if location else 'elsewhere'},"
                        " not followed: name the final address in the settings)",
                        status=status,
                        retriable=False,
                    )
                try:
                    snippet = _snippet(response.read(200))
                except (Urllib3Error, OSError, http.client.HTTPException):
                    snippet = ""
                raise WebhookFailed(
                    f"{where} answered {status}{snippet}", status=status, retriable=retriable_status(status)
                )
            finally:
                _let_go(response)
    except LocationValueError:
        raise  # not a URL it can send to: the caller's mistake, a ValueError as urllib's was
    except (Urllib3Error, OSError, http.client.HTTPException) as error:
        raise _failure(where, error, timeout) from None


def _failure(where: str, error: BaseException, timeout: float) -> WebhookFailed:
    reason = _cause(error)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return WebhookFailed(f"{where}: its TLS certificate does not verify ({reason.verify_message})", retriable=False)
    if isinstance(reason, (TimeoutError, Urllib3Timeout)) and not isinstance(reason, NewConnectionError):
        return WebhookFailed(f"{where} did not answer within {timeout:g} s", retriable=True)
    return WebhookFailed(f"{where} unreachable: {_describe(reason)}", retriable=True)


def _cause(error: BaseException) -> BaseException:
    """The error under urllib3's wrappers: the refused connection, the certificate, the reset, the timeout."""
    while True:
        if isinstance(error, NewConnectionError) and error.__cause__ is not None:
            error = error.__cause__  # refused, no such host
        elif (
            isinstance(error, (ProtocolError, Urllib3SSLError, ProxyError))
            and error.args
            and isinstance(error.args[-1], BaseException)
        ):
            error = error.args[-1]
        else:
            return error


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
