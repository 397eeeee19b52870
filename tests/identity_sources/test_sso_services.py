"""Who a verified ID token signs in as (identity_sources.sso.services.sso_sign_in), without a provider."""

import pytest
from django.contrib.auth import get_user_model

from audit.models import AuditEvent
from identity_sources.models import SsoLink
from identity_sources.sso.services import SsoRefused, sso_sign_in
from tests.factories.governance import PersonFactory

pytestmark = pytest.mark.django_db

ISSUER = "https://idp.example.org"


@pytest.fixture(autouse=True)
def sso_settings(settings):
    settings.OIDC_ISSUER = ISSUER
    settings.OIDC_RP_CLIENT_ID = "portal"
    settings.OIDC_PROVIDER_NAME = "Example IdP"
    settings.OIDC_LINK_EMAIL_DOMAINS = ["example.org"]
    settings.OIDC_ROLE_MAP = {"idp-approvers": "approver", "idp-admins": "admin", "idp-odd": "not-a-role"}
    return settings


def claims(sub="s-1", email="alice@example.org", verified=True, **more):
    return {"sub": sub, "email": email, "email_verified": verified, **more}


def roles(user):
    return set(user.groups.values_list("name", flat=True))


def refused(reason, **kwargs):
    with pytest.raises(SsoRefused) as caught:
        sso_sign_in(issuer=ISSUER, **kwargs)
    assert caught.value.reason == reason
    return caught.value


def test_a_person_without_a_login_gets_one_without_a_password_and_no_roles_but_the_mapped():
    alice = PersonFactory(name="Alice", email="Alice@Example.org", user=None)

    user = sso_sign_in(issuer=ISSUER, claims=claims(preferred_username="alice", groups=["idp-approvers"]))

    alice.refresh_from_db()
    assert alice.user == user and user.username == "alice" and not user.has_usable_password()
    assert roles(user) == {"approver"}
    created = AuditEvent.objects.get(action="user.created")
    assert created.data["source"] == "sso" and created.actor_type == "system"


def test_the_username_made_never_collides():
    PersonFactory(user__username="alice")
    PersonFactory(name="Alice Two", email="alice2@example.org", user=None)
    user = sso_sign_in(issuer=ISSUER, claims=claims(email="alice2@example.org", preferred_username="alice"))
    assert user.username == "alice-2"


def test_an_unverified_email_links_nobody():
    PersonFactory(email="alice@example.org")
    refused("email_unverified", claims=claims(verified=None))
    assert not SsoLink.objects.exists()


def test_an_email_outside_the_allowed_domains_links_nobody():
    PersonFactory(email="alice@partner.example")
    refused("domain_not_allowed", claims=claims(email="alice@partner.example"))


def test_two_people_with_one_email_link_nobody():
    PersonFactory(email="alice@example.org")
    PersonFactory(email="ALICE@example.org")
    refused("ambiguous_identity", claims=claims())


def test_a_machine_identity_is_never_signed_in_as():
    from tests.factories.governance import MachineFactory

    MachineFactory(email="bot@example.org")
    refused("no_identity", claims=claims(email="bot@example.org"))


def test_a_suspended_person_with_a_link_is_refused():
    alice = PersonFactory(email="alice@example.org")
    sso_sign_in(issuer=ISSUER, claims=claims())
    alice.status = "suspended"
    alice.save(update_fields=["status"])
    refused("identity_inactive", claims=claims())


def test_a_switched_off_login_is_refused():
    alice = PersonFactory(email="alice@example.org")
    sso_sign_in(issuer=ISSUER, claims=claims())
    get_user_model().objects.filter(pk=alice.user_id).update(is_active=False)
    refused("login_off", claims=claims())


def test_the_same_sub_at_another_issuer_is_another_account():
    alice = PersonFactory(email="alice@example.org")
    sso_sign_in(issuer=ISSUER, claims=claims())
    user = sso_sign_in(issuer="https://other-idp.example.org", claims=claims(sub="s-1", email="alice@example.org"))
    assert user == alice.user and SsoLink.objects.count() == 2


def test_roles_outside_the_map_stay_with_the_portal(settings):
    alice = PersonFactory(email="alice@example.org", user__roles=["requester", "auditor", "approver"])
    sso_sign_in(issuer=ISSUER, claims=claims(groups=["idp-admins"]))
    assert roles(alice.user) == {"requester", "auditor", "admin"}  # approver taken: the provider keeps it
    settings.OIDC_ROLE_MAP = {}
    sso_sign_in(issuer=ISSUER, claims=claims(groups=[]))
    assert roles(alice.user) == {"requester", "auditor", "admin"}  # no map: nothing changes


def test_a_refusal_writes_nothing():
    PersonFactory(email="alice@example.org", user=None)
    logins = get_user_model().objects.count()
    refused("no_subject", claims=claims(sub=""))
    assert get_user_model().objects.count() == logins and not SsoLink.objects.exists()
    assert not AuditEvent.objects.filter(action__in=["user.created", "user.sso_linked"]).exists()


def test_an_admin_links_and_unlinks_by_hand_from_the_command_line():
    from django.core.management import CommandError, call_command

    alice = PersonFactory(email="alice@partner.example", user__username="alice")
    bob = PersonFactory(user__username="bob")
    call_command("sso_link", "link", "alice", "partner-7")
    # now the e-mail's domain does not matter: the sub does
    assert sso_sign_in(issuer=ISSUER, claims=claims(sub="partner-7", email="alice@partner.example")) == alice.user
    with pytest.raises(CommandError, match="linked to another login"):
        call_command("sso_link", "link", "bob", "partner-7")
    call_command("sso_link", "unlink", "alice")
    assert not SsoLink.objects.exists() and bob.user
    assert list(
        AuditEvent.objects.filter(action__startswith="user.sso_")
        .order_by("seq")
        .values_list("action", "data__matched_by")
    ) == [
        ("user.sso_linked", "admin"),
        ("user.sso_unlinked", None),
    ]


@pytest.mark.parametrize("role", ["requester", "approver", "owner", "auditor"])
def test_linking_by_hand_refuses_a_non_admin_and_writes_nothing(make_user, role):
    """The command acts as the system; any other caller must be an admin, checked by the service itself."""
    from governance.errors import PermissionRefused
    from identity_sources.sso.services import sso_link_remove, sso_link_set

    alice = PersonFactory(user__username="alice")
    sso_link_set(actor=None, user_id=alice.user.pk, subject="partner-7", issuer=ISSUER)
    someone = make_user(f"{role}9", roles=(role,))
    before = set(AuditEvent.objects.values_list("pk", flat=True))

    with pytest.raises(PermissionRefused, match="Only admins"):
        sso_link_set(actor=someone, user_id=alice.user.pk, subject="partner-8", issuer=ISSUER)
    with pytest.raises(PermissionRefused, match="Only admins"):
        sso_link_set(actor=someone, user_id=someone.pk, subject="mine", issuer=ISSUER)
    with pytest.raises(PermissionRefused, match="Only admins"):
        sso_link_remove(actor=someone, user_id=alice.user.pk)

    assert list(SsoLink.objects.values_list("user", "issuer", "subject")) == [(alice.user.pk, ISSUER, "partner-7")]
    assert set(AuditEvent.objects.values_list("pk", flat=True)) == before


def test_an_admin_links_and_unlinks_by_hand_through_the_services(admin_user):
    from identity_sources.sso.services import sso_link_remove, sso_link_set

    alice = PersonFactory(user__username="alice")
    sso_link_set(actor=admin_user, user_id=alice.user.pk, subject="partner-7", issuer=ISSUER)
    assert sso_link_remove(actor=admin_user, user_id=alice.user.pk) == 1
    assert list(
        AuditEvent.objects.filter(action__startswith="user.sso_").order_by("seq").values_list("action", "actor_label")
    ) == [("user.sso_linked", "admin1"), ("user.sso_unlinked", "admin1")]
