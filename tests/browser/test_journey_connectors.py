"""An admin configures a webhook system in the browser: picks the connector, sees a bad setting
refused beside its field, saves, and tests the connection against a small local HTTP server.
Ref: #15."""

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from audit.models import AuditEvent
from governance.connectors import CONNECTORS, Check
from governance.connectors.webhook import WebhookConnector
from governance.models import System
from tests.factories.governance import PersonFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SECRET = "journey-signing-secret-0123456789"


class ReachingWebhook(WebhookConnector):
    """Stands in for the webhook connector's own test: asks the target URL and says what it answered."""

    def test_connection(self):
        try:
            with urllib.request.urlopen(self.settings["url"], timeout=5) as answer:  # a local test server
                return [Check("Target answers", True, f"{answer.status} from {self.settings['url']}")]
        except OSError as exc:
            return [Check("Target answers", False, f"{self.settings['url']} did not answer: {exc}")]


class Target(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def target():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Target)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def estate(monkeypatch, settings):
    settings.CONNECTOR_WEBHOOK_ALLOW_HTTP = True  # the local target speaks plain http
    monkeypatch.setitem(CONNECTORS, "webhook", f"{__name__}.ReachingWebhook")
    PersonFactory(name="Ada Admin", user__username="ada", user__roles=["admin"])
    return PersonFactory(name="Sol Owner", user__username="sol", user__roles=["owner"])


def test_an_admin_configures_a_webhook_system_and_tests_its_connection(page, login, estate, target):
    login("ada")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Systems").click()
    page.get_by_role("button", name="New system").click()  # a link styled as a button

    # the webhook's settings appear when it is picked
    page.get_by_label("Name").fill("Payroll")
    page.get_by_role("combobox", name="Owner").fill("sol")
    expect(page.locator("#connector-settings")).to_contain_text("needs no settings")
    page.get_by_label("Connector").select_option("webhook")
    expect(page.get_by_label("Target URL")).to_be_visible()

    # a bad URL is refused beside its field, nothing saved, the secret not sent back
    page.get_by_label("Target URL").fill("ftp://127.0.0.1/hook")
    page.get_by_label("Signing secret").fill(SECRET)
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#id_settings-url_error")).to_contain_text("Must be an absolute https or http URL.")
    expect(page.get_by_label("Signing secret")).to_have_value("")
    assert not System.objects.filter(name="Payroll").exists()

    # corrected, it is saved; the page shows the URL, never the secret
    page.get_by_label("Target URL").fill(target)
    page.get_by_label("Signing secret").fill(SECRET)
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#messages")).to_contain_text("Payroll added")
    expect(page.locator("main")).to_contain_text(target)
    expect(page.locator("main")).to_contain_text("set (never shown)")
    assert SECRET not in page.content()

    # the connection test answers in place
    page.get_by_role("button", name="Test connection").click()
    results = page.locator("#connection-test")
    expect(results).to_contain_text("The connection to Payroll works: the check passed.")
    expect(results.locator("tbody tr")).to_contain_text(["Target answers ✓ Works 200 from"])
    event = AuditEvent.objects.get(action="system.connection_tested")
    assert event.data["checks"] == [{"name": "Target answers", "ok": True}]
