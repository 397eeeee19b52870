"""Authentication backends: passwords (switchable off) and OpenID Connect."""

from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.contrib.postgres.expressions import ArraySubquery
from django.core.exceptions import SuspiciousOperation
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import OuterRef
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from audit.kernel.prepared import PreparedQuery
from governance.models import Identity
from governance.roles import remember_group_names

from . import config
from .services import SsoRefused, break_glass_sign_in_record, sso_refusal_record, sso_sign_in


def session_user(backend: ModelBackend, user_id):
    """ModelBackend.get_user, with the person's identity and groups read in the same query: nearly every
    page asks for them (the menu, the break-glass banner, what they answer for), one query more each.
    The query's SQL is built once per process (audit.kernel.prepared): Django took longer to build it
    than PostgreSQL to run it."""
    rows = _SESSION_USER.rows(user_id)
    if not rows:
        return None
    user = _session_user_from(rows[0])
    return user if ModelBackend.user_can_authenticate(backend, user) else None


def _user_fields() -> list[str]:
    return [field.attname for field in get_user_model()._meta.concrete_fields]


def _identity_fields() -> list[str]:
    return [field.attname for field in Identity._meta.concrete_fields]


def _session_user_query(user_id):
    users = get_user_model()._default_manager.filter(pk=user_id)
    columns = [*_user_fields(), *(f"identity__{name}" for name in _identity_fields())]
    if connection.vendor != "postgresql":
        return users.values_list(*columns)  # groups: asked for when a page needs them
    groups = ArraySubquery(Group.objects.filter(user=OuterRef("pk")).order_by().values("name"))
    return users.values_list(*columns, groups)


_SESSION_USER = PreparedQuery(_session_user_query)


def _session_user_from(row: tuple):
    """The user (and their identity, or the knowledge they have none) as select_related would give them."""
    user_fields, identity_fields = _user_fields(), _identity_fields()
    user_values, rest = row[: len(user_fields)], row[len(user_fields) :]
    user = get_user_model().from_db(DEFAULT_DB_ALIAS, user_fields, user_values)
    identity_values = rest[: len(identity_fields)]
    identity = (
        None if identity_values[0] is None else Identity.from_db(DEFAULT_DB_ALIAS, identity_fields, identity_values)
    )
    link = Identity._meta.get_field("user")
    link.remote_field.set_cached_value(user, identity)  # user.identity, without a query
    if identity is not None:
        link.set_cached_value(identity, user)
    if len(rest) > len(identity_fields):
        remember_group_names(user, rest[-1])
    return user


class LocalPasswordBackend(ModelBackend):
    """Django's password check, refused for everyone but the break-glass login when LOCAL_PASSWORDS is off.

    With passwords off the provider is the only way in; one named login keeps a password for the day the
    provider is down, and each use of it is audited.
    """

    get_user = session_user

    def authenticate(self, request, username=None, password=None, **kwargs):
        if settings.LOCAL_PASSWORDS:
            return super().authenticate(request, username=username, password=password, **kwargs)
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if not settings.BREAK_GLASS_USERNAME or username != settings.BREAK_GLASS_USERNAME:
            return None
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            break_glass_sign_in_record(user)
        return user


class SsoBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's code flow, with endpoints from discovery and a stricter ID token check.

    The library checks the signature and nonce but not the audience or issuer; here the token must be
    for this client, from the configured issuer, unexpired, and signed with the provider's published key.
    """

    def __init__(self, *args, **kwargs):
        # Nothing is read here: Django builds this backend for every sign-in (and session load), SSO or not.
        self.UserModel = get_user_model()

    get_settings = staticmethod(config.setting)

    # The library reads these as attributes; they come from settings or discovery when first used.
    OIDC_OP_TOKEN_ENDPOINT = property(lambda self: config.setting("OIDC_OP_TOKEN_ENDPOINT"))
    OIDC_OP_USER_ENDPOINT = property(lambda self: config.setting("OIDC_OP_USER_ENDPOINT", None))
    OIDC_OP_JWKS_ENDPOINT = property(lambda self: config.setting("OIDC_OP_JWKS_ENDPOINT"))
    OIDC_RP_CLIENT_ID = property(lambda self: settings.OIDC_RP_CLIENT_ID)
    OIDC_RP_CLIENT_SECRET = property(lambda self: settings.OIDC_RP_CLIENT_SECRET)
    OIDC_RP_SIGN_ALGO = property(lambda self: settings.OIDC_RP_SIGN_ALGO)
    OIDC_RP_IDP_SIGN_KEY = None

    # Django's check, not the library's: a login switched off (or offboarded) ends its sessions at once.
    get_user = session_user

    def authenticate(self, request, **kwargs):
        if request is None or not config.sso_enabled() or "code" not in request.GET:
            return None
        return super().authenticate(request, **kwargs)

    def _key_for(self, header: dict[str, Any]) -> Any:
        alg = header.get("alg")
        if alg != self.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation(f"ID token signed with {alg!r}, not {self.OIDC_RP_SIGN_ALGO!r}.")
        if alg.startswith("HS"):
            return self.OIDC_RP_CLIENT_SECRET
        for refresh in (False, True):  # a kid not seen yet: the provider may have rotated its keys
            for jwk in config.signing_keys(refresh=refresh).get("keys", []):
                if header.get("kid") not in (None, jwk.get("kid")) or jwk.get("alg", alg) != alg:
                    continue
                if jwk.get("use", "sig") != "sig":
                    continue
                return jwt.PyJWK(jwk).key
        raise SuspiciousOperation("ID token signed with a key the provider does not publish.")

    def verify_token(self, token, **kwargs):
        """Signature, issuer, audience, expiry (with OIDC_CLOCK_SKEW_SECONDS) and nonce, or SuspiciousOperation."""
        if not token:
            raise SuspiciousOperation("The provider returned no ID token.")
        try:
            header = jwt.get_unverified_header(token)
            payload = jwt.decode(
                token,
                self._key_for(header),
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=config.issuer(),
                leeway=settings.OIDC_CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise SuspiciousOperation(f"ID token refused: {exc}") from exc
        audiences = payload["aud"] if isinstance(payload["aud"], list) else [payload["aud"]]
        if len(audiences) > 1 and payload.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise SuspiciousOperation("ID token for several audiences without this client as its azp.")
        nonce_expected = settings.OIDC_USE_NONCE and ("nonce" in kwargs or "nonce" in payload)
        if nonce_expected and (not kwargs.get("nonce") or payload.get("nonce") != kwargs.get("nonce")):
            raise SuspiciousOperation("ID token nonce does not match this sign-in.")
        return payload

    def get_or_create_user(self, access_token, id_token, payload):
        """Who the verified token is: by `(issuer, sub)`, linked on first sign-in (services.sso_sign_in)."""
        claims = dict(payload)
        if access_token and self.OIDC_OP_USER_ENDPOINT:
            userinfo = self.get_userinfo(access_token, id_token, payload)
            if str(userinfo.get("sub")) != str(payload.get("sub")):
                raise SuspiciousOperation("The userinfo endpoint answered for another account.")
            claims = {**userinfo, **payload}  # the signed ID token wins where both speak
        try:
            return sso_sign_in(issuer=config.issuer(), claims=claims)
        except SsoRefused as refusal:
            sso_refusal_record(issuer=config.issuer(), refusal=refusal)
            self.request.sso_refusal = refusal
            return None
