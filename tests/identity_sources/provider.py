"""A real OpenID provider for the SSO tests: django-oauth-toolkit, with an RSA key made here.

`running_provider()` configures the provider (key, issuer, a confidential client with PKCE) and points
the portal's SSO settings at it; people at the provider are ordinary Django users made by `idp_person`
with the groups the provider will claim for them.
"""

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from oauth2_provider.models import Application
from oauth2_provider.oauth2_validators import OAuth2Validator

from identity_sources.sso import config

CLIENT_ID = "access-portal"
CLIENT_SECRET = "portal-client-secret-for-tests"
IDP_PASSWORD = "idp-password-for-tests"
PROVIDER_NAME = "Test IdP"

# username at the provider -> the groups it claims for them
IDP_GROUPS: dict[str, list[str]] = {}


class IdpValidator(OAuth2Validator):
    """Claims the e-mail (verified), the username and the person's groups (under the `profile` scope)."""

    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "profile", "email_verified": "email"}

    def get_additional_claims(self, request):
        user = request.user
        return {
            "email": user.email,
            "email_verified": True,
            "preferred_username": user.username,
            "groups": IDP_GROUPS.get(user.username, []),
        }


def rsa_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class Provider:
    url: str
    issuer: str
    key: rsa.RSAPrivateKey
    application: Application
    extra: dict[str, Any] = field(default_factory=dict)

    def kid(self) -> str:
        return config.signing_keys()["keys"][0]["kid"]

    def id_token(self, *, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        """An ID token as this provider would sign it (or with another `key`), with `claims` over the defaults."""
        now = int(time.time())
        body = {"iss": self.issuer, "aud": CLIENT_ID, "sub": "42", "iat": now, "exp": now + 300, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": self.kid()})


def idp_person(username: str, email: str, groups: list[str] | None = None):
    """An account at the provider (a Django user of the provider's side), with the groups it claims."""
    IDP_GROUPS[username] = list(groups or [])
    return get_user_model().objects.create_user(username=username, email=email, password=IDP_PASSWORD)


@contextlib.contextmanager
def running_provider(
    *, provider_url: str, portal_url: str, role_map: dict[str, str] | None = None, **portal_settings: Any
) -> Iterator[Provider]:
    """The provider at `provider_url`, its client the portal at `portal_url`, the portal's SSO pointed at it."""
    provider_url = provider_url.rstrip("/")
    portal_url = portal_url.rstrip("/")
    issuer = f"{provider_url}/o"
    key = rsa_private_key()
    application = Application(
        name="Access portal",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=f"{portal_url}/oidc/callback/",
        post_logout_redirect_uris=f"{portal_url}/login/",
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )
    application.save()
    overrides = {
        "ROOT_URLCONF": "tests.identity_sources.urls",
        "OAUTH2_PROVIDER": {
            "OIDC_ENABLED": True,
            "OIDC_RSA_PRIVATE_KEY": pem(key),
            "OIDC_ISS_ENDPOINT": issuer,
            "PKCE_REQUIRED": True,
            "OAUTH2_VALIDATOR_CLASS": "tests.identity_sources.provider.IdpValidator",
            "SCOPES": {"openid": "OpenID Connect", "email": "E-mail", "profile": "Profile"},
            "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
            "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": False,
        },
        # as portal/settings/base.py does for OIDC_ISSUER: sign-out's redirect to the provider is allowed
        "CONTENT_SECURITY_POLICY": {
            "DIRECTIVES": {
                **settings.CONTENT_SECURITY_POLICY["DIRECTIVES"],
                "form-action": [*settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["form-action"], provider_url],
            }
        },
        "OIDC_ISSUER": issuer,
        "OIDC_RP_CLIENT_ID": CLIENT_ID,
        "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_PROVIDER_NAME": PROVIDER_NAME,
        "OIDC_ROLE_MAP": role_map or {},
        "OIDC_LINK_EMAIL_DOMAINS": ["example.org"],
        **portal_settings,
    }
    config.forget()
    try:
        with override_settings(**overrides):
            yield Provider(url=provider_url, issuer=issuer, key=key, application=application)
    finally:
        config.forget()
        IDP_GROUPS.clear()
