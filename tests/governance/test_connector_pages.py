"""Connectors in the browser: admins pick a system's connector and its settings (errors beside the
setting, secrets never shown back), the owner and admins test the connection, and the failures page
lists the grants a connector gave up on, with a retry. Ref: #15."""

import json

import pytest
from django.urls import reverse

from audit.models import AuditEvent, OutboxMessage
from governance.choices import GrantStatus
from governance.connectors import CONNECTORS, Check
from governance.connectors.secrets import secrets_encrypt, settings_with_secrets
from governance.connectors.webhook import WebhookConnector
from governance.models import Grant, System
from tests.factories.governance import (
    EntitlementFactory,
    GrantFactory,
    MachineFactory,
    PersonFactory,
    SystemFactory,
    with_role,
)

pytestmark = pytest.mark.django_db

SECRET = "hush-hush-0123456789"
NEW_SECRET = "brand-new-secret-9876543210"


class StandInWebhook(WebhookConnector):
    """The webhook connector's settings, with a test that reaches nothing and echoes its secret (to be redacted)."""

    def test_connection(self):
        return [
            Check("Settings", True, f"URL {self.settings['url']}"),
            Check("Target answers", False, f"401 from the target when signed with {self.settings['signing_secret']}"),
        ]


class BrokenWebhook(WebhookConnector):
    def test_connection(self):
        raise RuntimeError("the connector fell over")


@pytest.fixture
def stand_in(monkeypatch, settings):
    settings.CONNECTOR_WEBHOOK_ALLOW_HTTP = False

    def use(cls=StandInWebhook):
        monkeypatch.setitem(CONNECTORS, "webhook", f"{__name__}.{cls.__name__}")

    use()
    return use


@pytest.fixture
def admin():
    return with_role(PersonFactory(name="Ada Admin"), "admin")


@pytest.fixture
def system_owner():
    return with_role(PersonFactory(name="Sol Owner"), "owner")


@pytest.fixture
def other_owner():
    return with_role(PersonFactory(name="Oz Other"), "owner")


def webhook_system(owner, name="Ledger", **kw):
    return SystemFactory(
        name=name,
        owner=owner,
        connector="webhook",
        connector_settings={
            "url": "https://ledger.example/hook",
            "holdings_url": "",
            "asynchronous": False,
            "account_attribute": "external_id",
        },
        connector_secrets=secrets_encrypt({"signing_secret": SECRET}),
        **kw,
    )


@pytest.fixture
def system(system_owner, stand_in):
    return webhook_system(system_owner)


def system_post(owner, **overrides):
    data = {
        "name": "Payroll",
        "description": "Pays people",
        "owner": owner.user.username,
        "criticality": "high",
        "connector": "webhook",
        "settings-url": "https://payroll.example/hook",
        "settings-signing_secret": SECRET,
        "settings-holdings_url": "",
        "settings-account_attribute": "email",
    }
    data.update(overrides)
    return data


def login(client, person):
    client.force_login(person.user)
    return client


#
# Creating and editing a system's connector
#
def test_the_connector_select_swaps_in_the_settings_of_the_chosen_connector(client, admin, stand_in):
    login(client, admin)
    page = client.get(reverse("governance:system_create")).content.decode()
    assert 'name="connector"' in page and 'hx-get="/inventory/systems/connector-settings/' in page
    assert "needs no settings" in page  # manual, the default

    partial = client.get(
        reverse("governance:system_connector_settings"), {"connector": "webhook"}, HTTP_HX_REQUEST="true"
    )
    html = partial.content.decode()
    assert partial.status_code == 200 and 'name="settings-url"' in html
    assert 'type="password" name="settings-signing_secret"' in html and 'autocomplete="new-password"' in html
    assert "needs no settings" in client.get(reverse("governance:system_connector_settings")).content.decode()
    bad = client.get(reverse("governance:system_connector_settings"), {"connector": "ftp"})
    assert bad.status_code == 400 and "There is no connector named" in bad.content.decode()


def test_an_admin_adds_a_webhook_system_and_its_secret_is_kept_encrypted_and_never_shown(
    client, admin, system_owner, stand_in
):
    # when the admin adds it with its settings
    login(client, admin)
    response = client.post(reverse("governance:system_create"), system_post(system_owner), follow=True)

    # then it is saved, the secret encrypted, and no page shows it back
    assert response.status_code == 200
    system = System.objects.get(name="Payroll")
    assert system.connector == "webhook" and system.connector_settings["account_attribute"] == "email"
    assert settings_with_secrets(system)["signing_secret"] == SECRET and SECRET not in system.connector_secrets
    html = response.content.decode()
    assert "https://payroll.example/hook" in html and "Signing secret" in html and "never shown" in html
    for url in (
        reverse("governance:system_detail", args=[system.pk]),
        reverse("governance:system_edit", args=[system.pk]),
    ):
        page = client.get(url).content.decode()
        assert SECRET not in page
    event = AuditEvent.objects.get(action="system.created")
    assert SECRET not in json.dumps(event.data)


def test_a_bad_setting_is_said_beside_its_field_and_nothing_is_saved(client, admin, system_owner, stand_in):
    login(client, admin)
    response = client.post(
        reverse("governance:system_create"), system_post(system_owner, **{"settings-url": "ftp://payroll.example/"})
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert 'id="id_settings-url_error"' in html and "Must be an absolute https URL." in html
    assert SECRET not in html  # the secret typed is not sent back either
    assert 'value="ftp://payroll.example/"' in html  # the rest is kept for correcting
    assert not System.objects.filter(name="Payroll").exists()
    assert not AuditEvent.objects.filter(action="system.created").exists()


def test_a_service_error_on_a_setting_lands_beside_that_setting(client, admin, system_owner, stand_in, monkeypatch):
    # the page's own check passes, the service (the connector's schema, changed meanwhile) refuses
    from governance.errors import ValidationFailed
    from governance.services import catalogue

    def refuse(**kwargs):
        raise ValidationFailed(
            "Connector setting “Target URL”: Not reachable.",
            field_errors={"connector_settings.url": ["Not reachable."]},
        )

    monkeypatch.setattr(catalogue, "system_create", refuse)
    login(client, admin)
    html = client.post(reverse("governance:system_create"), system_post(system_owner)).content.decode()
    assert 'id="id_settings-url_error"' in html and "Not reachable." in html


def test_an_admin_edits_settings_and_a_blank_secret_keeps_the_stored_one(client, admin, system):
    login(client, admin)
    url = reverse("governance:system_edit", args=[system.pk])
    page = client.get(url).content.decode()
    assert "Set — leave blank to keep it." in page and SECRET not in page
    assert 'value="https://ledger.example/hook"' in page

    data = {
        "name": "Ledger",
        "owner": system.owner.user.username,
        "criticality": "medium",
        "connector": "webhook",
        "settings-url": "https://ledger.example/v2",
        "settings-signing_secret": "",
        "settings-account_attribute": "external_id",
    }
    assert client.post(url, data).status_code == 302
    system.refresh_from_db()
    assert system.connector_settings["url"] == "https://ledger.example/v2"
    assert settings_with_secrets(system)["signing_secret"] == SECRET

    client.post(url, {**data, "settings-signing_secret": NEW_SECRET})
    system.refresh_from_db()
    assert settings_with_secrets(system)["signing_secret"] == NEW_SECRET
    event = AuditEvent.objects.filter(action="system.updated").order_by("-seq").first()
    assert event.data["connector_settings_changed"] == ["signing_secret"] and NEW_SECRET not in json.dumps(event.data)


def test_the_owner_edits_the_system_without_seeing_or_changing_its_connector(client, system_owner, system):
    login(client, system_owner)
    url = reverse("governance:system_edit", args=[system.pk])
    page = client.get(url).content.decode()
    assert 'name="connector"' not in page and "settings-" not in page and SECRET not in page

    # a crafted post with connector fields changes nothing of the connector
    response = client.post(
        url,
        {
            "name": "Ledger",
            "description": "Books",
            "owner": system_owner.user.username,
            "criticality": "medium",
            "connector": "manual",
            "settings-url": "https://evil.example/",
            "settings-signing_secret": "stolen-stolen-stolen",
        },
    )
    assert response.status_code == 302
    system.refresh_from_db()
    assert system.description == "Books" and system.connector == "webhook"
    assert system.connector_settings["url"] == "https://ledger.example/hook"
    assert settings_with_secrets(system)["signing_secret"] == SECRET
    assert client.get(reverse("governance:system_connector_settings"), {"connector": "webhook"}).status_code == 403


def test_the_system_page_shows_the_connector_and_plain_settings_but_no_secret(client, other_owner, system):
    login(client, other_owner)  # reads the inventory, may not edit this system
    html = client.get(reverse("governance:system_detail", args=[system.pk])).content.decode()
    assert "https://ledger.example/hook" in html and "Last reconciled" in html and "not yet" in html
    assert SECRET not in html and "Test connection" not in html


#
# Testing the connection
#
def test_the_owner_tests_the_connection_and_sees_each_check_in_plain_words(client, system_owner, system):
    login(client, system_owner)
    assert "Test connection" in client.get(reverse("governance:system_detail", args=[system.pk])).content.decode()

    response = client.post(reverse("governance:system_test_connection", args=[system.pk]), HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert response.status_code == 200 and 'id="connection-test"' in html and "<html" not in html
    assert "✓" in html and "✗" in html and "1 of 2 checks failed" in html
    assert "401 from the target when signed with •••" in html and SECRET not in html
    event = AuditEvent.objects.get(action="system.connection_tested")
    assert event.data == {
        "connector": "webhook",
        "ok": False,
        "checks": [{"name": "Settings", "ok": True}, {"name": "Target answers", "ok": False}],
    }
    assert event.actor_user_id == system_owner.user.pk


def test_without_htmx_the_results_come_on_the_system_page_with_a_message(client, admin, system):
    login(client, admin)
    response = client.post(reverse("governance:system_test_connection", args=[system.pk]))
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html
    assert "does not work yet" in html and "Target answers" in html and SECRET not in html


def test_a_connector_that_raises_is_one_failed_check_not_a_server_error(client, admin, system, stand_in):
    stand_in(BrokenWebhook)
    login(client, admin)
    response = client.post(reverse("governance:system_test_connection", args=[system.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "RuntimeError: the connector fell over" in response.content.decode()
    assert AuditEvent.objects.get(action="system.connection_tested").data["ok"] is False


@pytest.mark.parametrize("who", ["other_owner", "auditor"])
def test_nobody_else_tests_a_systems_connection(client, system, who, request, make_user):
    person = request.getfixturevalue("other_owner") if who == "other_owner" else None
    user = person.user if person else make_user("ada-auditor", roles=("auditor",))
    client.force_login(user)
    response = client.post(reverse("governance:system_test_connection", args=[system.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code in (403, 404)
    assert not AuditEvent.objects.filter(action="system.connection_tested").exists()


def test_an_admin_tries_unsaved_settings_from_the_edit_form(client, admin, system):
    login(client, admin)
    response = client.post(
        reverse("governance:system_test_connection", args=[system.pk]),
        {
            "unsaved": "1",
            "connector": "webhook",
            "settings-url": "https://ledger.example/next",
            "settings-signing_secret": "",
            "settings-account_attribute": "external_id",
        },
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert "URL https://ledger.example/next" in html and "These settings do not work yet" in html
    assert SECRET not in html  # the kept secret was used, and not shown
    system.refresh_from_db()
    assert system.connector_settings["url"] == "https://ledger.example/hook"  # nothing saved
    assert AuditEvent.objects.get(action="system.connection_tested").data["unsaved_settings"] is True

    bad = client.post(
        reverse("governance:system_test_connection", args=[system.pk]),
        {"unsaved": "1", "connector": "webhook", "settings-url": "nope", "settings-account_attribute": "external_id"},
        HTTP_HX_REQUEST="true",
    )
    assert bad.status_code == 400 and "Fix the settings first" in bad.content.decode()


def test_the_owner_may_not_try_unsaved_settings(client, system_owner, system):
    login(client, system_owner)
    response = client.post(
        reverse("governance:system_test_connection", args=[system.pk]),
        {"unsaved": "1", "connector": "webhook", "settings-url": "https://evil.example/"},
    )
    assert response.status_code == 403


#
# Entitlements: the name on the target
#
def test_the_entitlement_owner_sets_its_name_on_the_target_and_the_page_shows_it(client, system_owner, system):
    entitlement = EntitlementFactory(system=system, owner=system_owner, name="ledger-read")
    login(client, system_owner)
    page = client.get(reverse("governance:entitlement_edit", args=[entitlement.pk])).content.decode()
    assert 'name="target_name"' in page
    detail = reverse("governance:entitlement_detail", args=[entitlement.pk])
    assert "(its name: no other set)" in client.get(detail).content.decode()

    from governance.services.catalogue import entitlement_update

    entitlement_update(entitlement_id=entitlement.pk, actor=system_owner.user, changes={"target_name": "ledger_ro"})
    assert "<code>ledger_ro</code>" in client.get(detail).content.decode()


#
# Failures
#
def failed(system, status=GrantStatus.PROVISION_FAILED, error="401 Unauthorized from the target"):
    extra = {"granted_at": None} if status == GrantStatus.PROVISION_FAILED else {}
    return GrantFactory(
        entitlement=EntitlementFactory(system=system),
        identity=MachineFactory(),
        status=status,
        last_error=error,
        **extra,
    )


@pytest.fixture
def failures(system, other_owner):
    elsewhere = webhook_system(other_owner, name="Warehouse")
    return {
        "provision": failed(system),
        "revoke": failed(system, GrantStatus.REVOKE_FAILED, "connection refused"),
        "elsewhere": failed(elsewhere, GrantStatus.REVOKE_FAILED),
        "fine": GrantFactory(entitlement=EntitlementFactory(system=system)),
    }


def shown_ids(response) -> set[int]:
    return {grant.pk for grant in response.context["page_obj"].object_list}


def test_admins_see_every_failure_and_owners_those_of_their_systems(client, admin, system_owner, failures, make_user):
    url = reverse("governance:grant_failures")
    everyone = {failures["provision"].pk, failures["revoke"].pk, failures["elsewhere"].pk}
    assert shown_ids(login(client, admin).get(url)) == everyone
    response = login(client, system_owner).get(url)
    assert shown_ids(response) == {failures["provision"].pk, failures["revoke"].pk}
    html = response.content.decode()
    assert "Revocation failed — access may still exist" in html and "The webhook connector: connection refused" in html
    assert "Retry all" not in html  # admins only
    client.force_login(make_user("aud", roles=("auditor",)))
    assert shown_ids(client.get(url)) == set()
    assert "No failed grants" in client.get(url).content.decode()


def test_the_failures_page_filters_by_system_and_kind_and_sorts(client, admin, system, failures):
    login(client, admin)
    url = reverse("governance:grant_failures")
    assert shown_ids(client.get(url, {"system": system.pk})) == {failures["provision"].pk, failures["revoke"].pk}
    assert shown_ids(client.get(url, {"kind": "revoke_failed"})) == {failures["revoke"].pk, failures["elsewhere"].pk}
    rows = client.get(url, {"sort": "-system"}).context["page_obj"].object_list
    assert rows[0].pk == failures["elsewhere"].pk  # Warehouse before Ledger
    empty = client.get(url, {"kind": "revoke_failed", "system": system.pk, "sort": "since"}, HTTP_HX_REQUEST="true")
    assert "<html" not in empty.content.decode()  # htmx gets the results only


def test_the_owner_retries_one_failure_and_is_told(client, system_owner, failures):
    login(client, system_owner)
    grant = failures["revoke"]
    response = client.post(
        reverse("governance:grant_failures_retry"), {"grant": grant.pk, "query": "kind=revoke_failed&x=1"}
    )
    assert response.status_code == 302 and response.url == "/inventory/grants/failures/?kind=revoke_failed"
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING
    assert OutboxMessage.objects.filter(kind="connector.revoke").count() == 1
    page = client.get(response.url).content.decode()
    assert f"Asked the connector again for grant #{grant.pk}" in page


def test_another_systems_owner_cannot_retry_its_failures(client, other_owner, failures):
    login(client, other_owner)
    grant = failures["provision"]
    response = client.post(reverse("governance:grant_failures_retry"), {"grant": grant.pk}, follow=True)
    assert "Nothing to retry" in response.content.decode()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PROVISION_FAILED
    assert client.post(reverse("governance:grant_failures_retry"), {"all": "1", "shown": [grant.pk]}).status_code == 403


def test_an_admin_retries_all_shown(client, admin, failures):
    login(client, admin)
    ids = [failures["provision"].pk, failures["revoke"].pk, failures["elsewhere"].pk, failures["fine"].pk]
    response = client.post(reverse("governance:grant_failures_retry"), {"all": "1", "shown": ids}, follow=True)
    assert "Asked the connector again for 3 grants" in response.content.decode()
    statuses = dict(Grant.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert statuses == {
        failures["provision"].pk: GrantStatus.PENDING_PROVISION,
        failures["revoke"].pk: GrantStatus.REVOKING,
        failures["elsewhere"].pk: GrantStatus.REVOKING,
        failures["fine"].pk: GrantStatus.ACTIVE,  # never failed: untouched
    }


def test_admins_see_the_failures_link_and_its_count(client, admin, failures):
    login(client, admin)
    html = client.get(reverse("governance:system_list")).content.decode()
    assert 'href="/inventory/grants/failures/"' in html and "Failed grants" in html
    assert ">3<" in client.get(reverse("governance:grant_failures_count")).content.decode()


def test_a_failed_revocation_is_never_shown_as_revoked(client, system_owner, failures):
    login(client, system_owner)
    grant = failures["revoke"]
    html = client.get(reverse("governance:grant_detail", args=[grant.pk])).content.decode()
    assert "Revocation failed — access may still exist" in html and ">Revoked<" not in html
    identity_page = client.get(reverse("governance:identity_detail", args=[grant.identity_id])).content.decode()
    assert "access may still exist" in identity_page


def test_the_failures_page_runs_the_same_queries_for_one_row_as_for_many(client, admin, system, count_queries):
    login(client, admin)
    url = reverse("governance:grant_failures")
    failed(system)
    one = count_queries(lambda: client.get(url))
    for n in range(14):
        owner = PersonFactory()
        failed(
            webhook_system(owner, name=f"System {n}"),
            GrantStatus.REVOKE_FAILED if n % 2 else GrantStatus.PROVISION_FAILED,
        )
    many = count_queries(lambda: client.get(url))
    assert one == many, f"{one} queries for one row, {many} for 15"
    print(f"\nfailures page: {many} queries for 1 or 15 rows")
    assert len(client.get(url).context["page_obj"].object_list) == 15
