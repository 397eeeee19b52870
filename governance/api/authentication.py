"""Bearer tokens on the API (`Authorization: Bearer gp_...`), beside the browser's session.

A person's token acts as their login, held to the token's scopes. A machine's token (service
account, workload, agent) acts as the machine itself: `request.user` is a `MachinePrincipal`, which
holds no roles and reaches only the endpoints built for machines (`governance.api.permissions`).
"""

from django.contrib.auth.models import Group, Permission
from django.db.models.manager import EmptyManager
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from audit.context import set_context
from audit.middleware import client_ip
from audit.services import Actor
from governance.choices import IdentityKind
from governance.services.credentials import TokenRefused, api_token_authenticate


class MachinePrincipal:
    """A machine identity signed in by its token: authenticated, but with no login and no roles."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, identity):
        self.identity = identity
        self.pk = self.id = f"identity:{identity.pk}"  # throttles and caches key on it; never a user id
        self.username = identity.name
        self._groups = EmptyManager(Group)
        self._user_permissions = EmptyManager(Permission)

    groups = property(lambda self: self._groups)
    user_permissions = property(lambda self: self._user_permissions)

    def has_perm(self, perm, obj=None) -> bool:
        return False

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.identity.name


class TokenAuthenticationFailed(exceptions.AuthenticationFailed):
    def __init__(self, refusal: TokenRefused):
        super().__init__(detail=str(refusal), code=refusal.code)


class ApiTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send one token: Authorization: Bearer <token>.")
        try:
            token = api_token_authenticate(header[1].decode("latin-1"), client_ip=client_ip(request))
        except TokenRefused as refusal:
            raise TokenAuthenticationFailed(refusal) from None
        identity = token.identity
        principal = identity.user if identity.kind == IdentityKind.HUMAN else MachinePrincipal(identity)
        set_context(user=principal if identity.kind == IdentityKind.HUMAN else None)
        return principal, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


def api_actor(request):
    """Who acts, for a service: a machine's own identity, or the signed-in person."""
    if isinstance(request.user, MachinePrincipal):
        return Actor(identity=request.user.identity)
    return request.user


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The schema names the bearer token, so generated clients and the docs page send it."""

    target_class = "governance.api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        scheme = build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Bearer")
        scheme["description"] = TOKEN_AUTH_DESCRIPTION
        return scheme


TOKEN_AUTH_DESCRIPTION = """\
Send `Authorization: Bearer gp_<prefix>_<secret>` on every call: `gp_`, a public 12-hex-character prefix that \
names the token (in the audit trail and on the identity's page), and the secret. The portal keeps only a keyed \
hash: the token is shown once, when it is made.

How to get one:

- **Made on the identity's page** (`/inventory/identities/<id>/`, *API tokens*): a person for their own scripts, \
or a machine's owner for a service account, workload or AI agent. It expires (at most as long as the riskiest \
access its identity holds allows), may be bound to networks, and is rotated with an overlap.
- **Exchanged for a workload's JWT**: `POST /api/v1/token/exchange/` with `{"subject_token": "<JWT>"}` signed \
by a configured issuer (a Kubernetes service-account token, a CI system's OIDC token) for an identity that \
trusts its issuer and subject. The answer is a short-lived token (`access_token`, `expires_at`, `scopes`); no \
secret is stored on the workload.

Scopes name what a token reaches: `requests:read|write`, `grants:read|write`, `break_glass:read|write` \
(machines: their own requests, grants and break-glass only), `inventory:read|write` (people only). A refused \
token answers 401 with a `code` (`token_invalid`, `token_expired`, `token_revoked`, `identity_inactive`, \
`network_not_allowed`); a missing scope 403 with `code: insufficient_scope`. Each token, and each identity \
(all its tokens together), has a rate: over it, 429 with `Retry-After` and `code: throttled`.
"""
