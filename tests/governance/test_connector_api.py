"""Connectors through the API: settings written by admins only and validated by the connector's schema,
secrets never read back, a test-connection action for the owner and admins, and the entitlement's
name on the target. Ref: #15."""

import json

import pytest

from audit.models import AuditEvent
from governance.connectors import CONNECTORS, Check
from governance.connectors.secrets import secrets_encrypt, settings_with_secrets
from governance.connectors.webhook import WebhookConnector
from governance.models import System
from tests.api import API, api
from tests.factories.governance import EntitlementFactory, PersonFactory, SystemFactory, with_role

pytestmark = pytest.mark.django_db

SECRET = "api-secret-0123456789"


class StandInWebhook(WebhookConnector):
    def test_connection(self):
        return [
            Check("Target answers", True, f"200 from {self.settings['url']} (signed {self.settings['signing_secret']})")
        ]


@pytest.fixture(autouse=True)
def stand_in(monkeypatch, settings):
    settings.CONNECTOR_WEBHOOK_ALLOW_HTTP = False
    monkeypatch.setitem(CONNECTORS, "webhook", f"{__name__}.StandInWebhook")


@pytest.fixture
def admin():
    return with_role(PersonFactory(name="Ada Admin"), "admin")


@pytest.fixture
def owner():
    return with_role(PersonFactory(name="Sol Owner"), "owner")


@pytest.fixture
def system(owner):
    return SystemFactory(
        name="Ledger",
        owner=owner,
        connector="webhook",
        connector_settings={"url": "https://ledger.example/hook", "account_attribute": "external_id"},
        connector_secrets=secrets_encrypt({"signing_secret": SECRET}),
    )


def test_an_admin_creates_a_webhook_system_and_no_read_returns_its_secret(admin, owner):
    client = api(admin.user)
    response = client.post(
        f"{API}/systems/",
        {
            "name": "Payroll",
            "owner": owner.pk,
            "connector": "webhook",
            "connector_settings": {"url": "https://payroll.example/hook", "signing_secret": SECRET},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["connector_settings"]["url"] == "https://payroll.example/hook"
    assert "signing_secret" not in body["connector_settings"]
    system = System.objects.get(name="Payroll")
    assert settings_with_secrets(system)["signing_secret"] == SECRET
    for url in (f"{API}/systems/", f"{API}/systems/{system.pk}/"):
        assert SECRET not in client.get(url).content.decode()


def test_a_bad_setting_is_refused_by_field_and_nothing_is_written(admin, system):
    response = api(admin.user).patch(
        f"{API}/systems/{system.pk}/",
        {"connector_settings": {"url": "ftp://ledger.example/", "signing_secret": "short"}},
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["connector_settings.url"] == ["Must be an absolute https URL."]
    assert "connector_settings.signing_secret" in errors and SECRET not in response.content.decode()
    system.refresh_from_db()
    assert system.connector_settings["url"] == "https://ledger.example/hook"
    assert settings_with_secrets(system)["signing_secret"] == SECRET
    assert not AuditEvent.objects.filter(action="system.updated").exists()


def test_settings_must_be_an_object(admin, system):
    response = api(admin.user).patch(f"{API}/systems/{system.pk}/", {"connector_settings": ["x"]}, format="json")
    assert response.status_code == 400 and "connector_settings" in response.json()["errors"]


def test_an_admin_changes_a_setting_and_an_omitted_secret_is_kept(admin, system):
    client = api(admin.user)
    read = client.get(f"{API}/systems/{system.pk}/").json()
    settings = {**read["connector_settings"], "url": "https://ledger.example/v2"}
    response = client.patch(f"{API}/systems/{system.pk}/", {"connector_settings": settings}, format="json")
    assert response.status_code == 200 and response.json()["connector_settings"]["url"] == "https://ledger.example/v2"
    assert settings_with_secrets(System.objects.get(pk=system.pk))["signing_secret"] == SECRET


def test_the_owner_may_not_write_settings_but_may_send_back_what_they_read(owner, system):
    client = api(owner.user)
    attempt = client.patch(
        f"{API}/systems/{system.pk}/",
        {"connector_settings": {"url": "https://evil.example/", "signing_secret": "stolen-stolen-stolen"}},
        format="json",
    )
    assert attempt.status_code == 403
    read = client.get(f"{API}/systems/{system.pk}/").json()
    again = client.patch(
        f"{API}/systems/{system.pk}/",
        {key: read[key] for key in ("name", "owner", "criticality", "connector", "connector_settings")},
        format="json",
    )
    assert again.status_code == 200, again.content
    system.refresh_from_db()
    assert system.connector_settings["url"] == "https://ledger.example/hook"
    assert settings_with_secrets(system)["signing_secret"] == SECRET


def test_the_owner_tests_the_connection_and_the_answer_carries_no_secret(owner, system):
    response = api(owner.user).post(f"{API}/systems/{system.pk}/test-connection/")
    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "checks": [
            {"name": "Target answers", "ok": True, "detail": "200 from https://ledger.example/hook (signed •••)"}
        ],
    }
    event = AuditEvent.objects.get(action="system.connection_tested")
    assert event.channel == "api" and SECRET not in json.dumps(event.data)


def test_nobody_else_tests_the_connection(system, make_user):
    other_owner = with_role(PersonFactory(), "owner")
    requester = PersonFactory()
    auditor = make_user("aud", roles=("auditor",))
    for user, expected in ((other_owner.user, 403), (requester.user, 404), (auditor, 403)):
        response = api(user).post(f"{API}/systems/{system.pk}/test-connection/")
        assert response.status_code == expected, (user, response.content)
    assert not AuditEvent.objects.filter(action="system.connection_tested").exists()


def test_the_entitlement_carries_its_name_on_the_target(owner, system):
    entitlement = EntitlementFactory(system=system, owner=owner, name="ledger-read")
    client = api(owner.user)
    assert client.get(f"{API}/entitlements/{entitlement.pk}/").json()["target_name"] == ""
    response = client.patch(f"{API}/entitlements/{entitlement.pk}/", {"target_name": "ledger_ro"}, format="json")
    assert response.status_code == 200 and response.json()["target_name"] == "ledger_ro"
    event = AuditEvent.objects.get(action="entitlement.updated")
    assert event.data["after"] == {"target_name": "ledger_ro"}


def test_the_system_list_runs_the_same_queries_for_one_system_as_for_many(admin, count_queries):
    client = api(admin.user)
    SystemFactory(connector="webhook", connector_settings={"url": "https://a.example/"}, connector_secrets="")
    client.get(f"{API}/systems/")  # warm: the roles and content types are cached after the first call
    one = count_queries(lambda: client.get(f"{API}/systems/"))
    for n in range(14):
        SystemFactory(
            connector="webhook",
            connector_settings={"url": f"https://{n}.example/"},
            connector_secrets=secrets_encrypt({"signing_secret": f"{SECRET}-{n}"}),
        )
    many = count_queries(lambda: client.get(f"{API}/systems/"))
    assert one == many, f"{one} queries for one system, {many} for 15"
    print(f"\nGET /api/v1/systems/: {many} queries for 1 or 15 systems")
