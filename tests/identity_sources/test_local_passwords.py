"""Local passwords an admin can switch off, keeping one break-glass login whose every use is audited;
and the login page's single sign-on button."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent, OutboxMessage
from tests.factories.governance import PersonFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    PersonFactory(user__username="alice", user__roles=["requester"])
    PersonFactory(user__username="root-breakglass", user__roles=["admin"])


def post_login(client, username):
    return client.post(reverse("login"), {"username": username, "password": "pw-for-tests"})


def test_passwords_on_by_default(client, people):
    assert post_login(client, "alice").status_code == 302


def test_passwords_off_refuse_everyone_but_the_break_glass_login(client, people, settings):
    settings.LOCAL_PASSWORDS = False
    settings.BREAK_GLASS_USERNAME = "root-breakglass"

    refused = post_login(client, "alice")
    assert refused.status_code == 200 and "_auth_user_id" not in client.session
    assert not AuditEvent.objects.filter(action="user.break_glass_password").exists()

    assert post_login(client, "root-breakglass").status_code == 302
    used = AuditEvent.objects.get(action="user.break_glass_password")
    assert used.actor_label == "root-breakglass"


def test_passwords_off_send_a_reset_link_only_to_the_break_glass_login(client, settings):
    PersonFactory(user__username="alice", user__email="alice@example.org")
    PersonFactory(user__username="root-breakglass", user__email="root@example.org")
    settings.LOCAL_PASSWORDS = False
    settings.BREAK_GLASS_USERNAME = "root-breakglass"

    for email in ("alice@example.org", "root@example.org"):
        # The same answer for both: the page tells nobody who holds a login.
        assert client.post(reverse("password_reset"), {"email": email}).status_code == 302

    mailed = OutboxMessage.objects.filter(kind="email.send")
    assert [message.payload["to"] for message in mailed] == [["root@example.org"]]


def test_passwords_off_without_a_break_glass_login_refuse_everyone(client, people, settings):
    settings.LOCAL_PASSWORDS = False
    settings.BREAK_GLASS_USERNAME = ""
    assert post_login(client, "root-breakglass").status_code == 200


def test_the_login_page_offers_the_provider_when_configured(client, settings):
    assert "Sign in with" not in client.get(reverse("login")).content.decode()
    settings.OIDC_ISSUER = "https://idp.example.org"
    settings.OIDC_RP_CLIENT_ID = "portal"
    settings.OIDC_PROVIDER_NAME = "Example IdP"
    page = client.get(reverse("login"), {"next": "/access/"}).content.decode()
    assert "Sign in with Example IdP" in page
    assert f"{reverse('oidc_authentication_init')}?next=/access/" in page
    assert "Forgot your password?" in page


def test_with_passwords_off_the_form_is_only_for_break_glass(client, settings):
    settings.LOCAL_PASSWORDS = False
    page = client.get(reverse("login")).content.decode()
    assert "Break-glass sign-in" in page and "Forgot your password?" not in page


def test_sso_views_are_not_found_when_not_configured(client):
    assert client.get(reverse("oidc_authentication_init")).status_code == 404
    assert client.get(reverse("oidc_authentication_callback"), {"code": "x", "state": "y"}).status_code == 404


def test_settings_checks_catch_a_role_map_typo_and_no_way_in(settings):
    from identity_sources.sso.checks import sso_settings_check

    assert sso_settings_check() == []
    settings.OIDC_ROLE_MAP = {"idp-admins": "admins"}
    settings.LOCAL_PASSWORDS = False
    settings.BREAK_GLASS_USERNAME = ""
    assert {problem.id for problem in sso_settings_check()} == {"sso.E002", "sso.W002"}
