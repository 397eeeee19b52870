"""Connector secrets are encrypted at rest with keys from the environment, and rotate to a new key."""

import io
import json

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from audit.models import AuditEvent
from governance.connectors.secrets import secrets_decrypt, secrets_encrypt, settings_with_secrets
from governance.models import System
from governance.services.catalogue import system_create
from tests.factories.governance import PersonFactory

pytestmark = pytest.mark.django_db
SECRET = "s3cr3t-signing-key-0123456789"


@pytest.fixture
def webhook_system(admin_user):
    return system_create(
        actor=admin_user,
        name="Payroll",
        owner=PersonFactory(),
        connector="webhook",
        connector_settings={"url": "https://payroll.example/hook", "signing_secret": SECRET},
    )


def test_a_secret_is_stored_encrypted_and_decrypted_only_for_the_connector(webhook_system):
    stored = System.objects.filter(pk=webhook_system.pk).values("connector_settings", "connector_secrets").get()
    assert SECRET not in json.dumps(stored["connector_settings"]) and SECRET not in stored["connector_secrets"]
    assert settings_with_secrets(webhook_system)["signing_secret"] == SECRET


def test_rotation_encrypts_again_with_the_new_key_and_the_old_key_can_go(webhook_system, settings):
    old_keys = list(settings.CONNECTOR_SECRET_KEYS)
    new_key = Fernet.generate_key().decode()
    settings.CONNECTOR_SECRET_KEYS = [new_key, *old_keys]  # the new key first, the old one still readable
    call_command("connector_secrets_rotate", stdout=io.StringIO())
    token = System.objects.get(pk=webhook_system.pk).connector_secrets
    settings.CONNECTOR_SECRET_KEYS = [new_key]  # the old key removed
    assert secrets_decrypt(token) == {"signing_secret": SECRET}
    event = AuditEvent.objects.for_target(webhook_system).get(action="system.secrets_rotated")
    assert SECRET not in json.dumps(event.data)


def test_a_token_from_an_unknown_key_is_a_configuration_error_not_garbage(settings):
    token = secrets_encrypt({"password": "x"})
    settings.CONNECTOR_SECRET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(Exception, match="cannot be decrypted"):
        secrets_decrypt(token)
