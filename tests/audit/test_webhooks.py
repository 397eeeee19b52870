"""Signed webhooks keep their connections: many messages to one system go over a few kept TCP
connections instead of one each, a connection the receiver closed is replaced before anything is sent
on it, one that dies under a request is never sent on again by the library (the outbox tries later,
same Idempotency-Key), and a forked worker never uses its parent's sockets. What urllib did for free
still holds: a proxy from the environment, and a certificate that does not verify failing at once.

The receiver is the webhook connector tests' real HTTP server on loopback (it checks every signature),
made to speak HTTP/1.1 so that it keeps connections open as real servers do.
"""

import json
import os
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from audit.webhooks import CONNECTIONS_PER_ORIGIN, WebhookAnswer, WebhookFailed, webhook_body, webhook_send
from tests.governance.test_connector_webhook import SECRET, Target


@pytest.fixture
def target():
    target = Target()
    yield target
    target.close()


def keep_alive(target: Target) -> list[int]:
    """Make the target keep connections open (HTTP/1.1); the list it returns gets the client port of
    every connection the target accepts."""
    handler = target.server.RequestHandlerClass
    handler.protocol_version = "HTTP/1.1"
    ports: list[int] = []
    setup = handler.setup

    def counting_setup(self):
        ports.append(self.client_address[1])
        setup(self)

    handler.setup = counting_setup
    return ports


def send(target: Target, n: int, **extra) -> WebhookAnswer:
    return webhook_send(
        target.url,
        secret=SECRET,
        event="grant.revoke",
        body=webhook_body({"event": "grant.revoke", "n": n}),
        idempotency_key=f"grant:{n}:connector.revoke:1",
        timeout=5,
        **extra,
    )


def read_holdings(target: Target) -> WebhookAnswer:
    return webhook_send(target.url, secret=SECRET, event="holdings.list", method="GET", timeout=5)


def test_webhooks_to_one_system_go_over_one_kept_connection(target):
    connections = keep_alive(target)
    answers = [send(target, n) for n in range(1, 6)]
    holdings = read_holdings(target)

    assert [json.loads(a.body)["reference"] for a in answers] == [f"job-{n}" for n in range(1, 6)]
    assert json.loads(holdings.body)["holdings"] == target.holdings
    assert len(target.deliveries) == 6 and all(d["ok"] for d in target.deliveries)
    assert len(target.done) == 5
    assert len(connections) == 1, "one TCP connection carried the five events and the holdings read"


def test_calls_side_by_side_share_a_few_connections(target):
    connections = keep_alive(target)
    failures: list[Exception] = []

    def sender(first: int) -> None:
        for n in range(first, first + 10):
            try:
                send(target, n)
            except Exception as exc:  # collected: an assertion in a thread would go unseen
                failures.append(exc)

    threads = [threading.Thread(target=sender, args=(first,)) for first in range(0, 40, 10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert failures == []
    assert len(target.done) == 40 and all(d["ok"] for d in target.deliveries)
    assert len(connections) <= CONNECTIONS_PER_ORIGIN


def test_a_kept_connection_the_receiver_closed_is_replaced_before_anything_is_sent_on_it(target):
    connections = keep_alive(target)
    handler = target.server.RequestHandlerClass
    handler.handle = lambda self: self.handle_one_request()  # one answer, then gone, without saying so
    closed = threading.Semaphore(0)
    shutdown = target.server.shutdown_request

    def shutdown_and_tell(request):
        shutdown(request)
        closed.release()

    target.server.shutdown_request = shutdown_and_tell

    for n in range(1, 4):
        assert send(target, n).status == 200
        assert closed.acquire(timeout=5), "the receiver closed the connection it answered on"

    assert len(connections) == 3
    assert [json.loads(d["body"])["n"] for d in target.deliveries] == [1, 2, 3], "each sent once"


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_request_whose_connection_dies_under_it_fails_retriably_and_is_not_sent_again(target, method):
    keep_alive(target)
    assert send(target, 1).status == 200  # the connection is now kept
    handler = target.server.RequestHandlerClass

    def take_it_and_hang_up(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target.deliveries.append({"method": self.command, "headers": self.headers, "body": body, "ok": True})
        self.close_connection = True  # no answer: a receiver that crashed or closed at that very moment

    setattr(handler, f"do_{method}", take_it_and_hang_up)

    with pytest.raises(WebhookFailed, match="unreachable") as failed:
        send(target, 2) if method == "POST" else read_holdings(target)

    assert failed.value.retriable and failed.value.status is None
    assert [d["method"] for d in target.deliveries] == ["POST", method], "the library never sends it again"


def test_an_answer_too_big_is_refused_and_its_connection_not_used_again(target):
    connections = keep_alive(target)
    with pytest.raises(WebhookFailed, match="answered more than 5 bytes") as failed:
        send(target, 1, max_answer_bytes=5)
    assert (failed.value.status, failed.value.retriable) == (200, False)

    answer = send(target, 2)  # on a new connection: the rest of the refused answer is not read as this one
    assert json.loads(answer.body) == {"reference": "job-2"}
    assert len(connections) == 2


def test_a_forked_worker_never_uses_its_parents_connections(target):
    connections = keep_alive(target)
    assert send(target, 1).status == 200  # the parent's pool keeps a connection

    child = os.fork()
    if child == 0:  # the child: one webhook, then out without running any of the parent's clean-up
        code = 1
        try:
            code = 0 if send(target, 2).status == 200 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    assert send(target, 3).status == 200  # the parent's kept connection still serves the parent
    assert [json.loads(d["body"])["n"] for d in target.deliveries] == [1, 2, 3]
    assert len(connections) == 2, "the child opened its own; the parent kept using its one"


def test_a_proxy_named_in_the_environment_carries_webhooks_unless_no_proxy_names_the_host(target, monkeypatch):
    proxy = Target()  # stands in for the proxy: it is asked for the absolute URL, and answers itself
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server.server_port}")
        monkeypatch.setenv("NO_PROXY", "localhost")
        origin = f"127.0.0.1:{target.server.server_port}"

        assert send(target, 1).status == 200
        assert [d["headers"]["Host"] for d in proxy.deliveries] == [origin] and target.deliveries == []

        direct = webhook_send(
            target.url.replace("127.0.0.1", "localhost"), secret=SECRET, event="grant.revoke", body=b"{}", timeout=5
        )
        assert direct.status == 200 and len(target.deliveries) == 1 and len(proxy.deliveries) == 1
    finally:
        proxy.close()


def _self_signed(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")


def test_a_certificate_that_does_not_verify_fails_at_once_and_says_why(tmp_path):
    reached: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            reached.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*_self_signed(tmp_path))
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://localhost:{server.server_port}/portal/events"
        with pytest.raises(
            WebhookFailed, match=r"its TLS certificate does not verify \(self-signed certificate\)"
        ) as e:
            webhook_send(url, secret=SECRET, event="grant.revoke", body=b"{}", timeout=5)
        assert e.value.retriable is False and e.value.status is None
        assert reached == [], "nothing was sent to a receiver that could not prove who it is"
    finally:
        server.shutdown()
        server.server_close()
