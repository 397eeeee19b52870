"""The SCIM source's bearer credential and the actor it acts as.

A SCIM token reads `scim_<prefix>_<secret>`; only an HMAC of it under the API tokens' server key is
kept (`governance.services.credentials.token_digest`), so the table gives nothing to replay. It is a
different credential from an API token on purpose: the API's authentication refuses it (wrong
prefix) and the SCIM endpoint refuses API tokens, so neither reaches the other's surface.
"""

import hmac
import secrets
from dataclasses import dataclass

from audit.services import Actor
from governance.services.credentials import token_digest

from ..models_scim import ScimSource

SCIM_TOKEN_PREFIX = "scim"


@dataclass(frozen=True)
class SourceActor(Actor):
    """A SCIM source acting: the system (no login, no identity) under the source's name in the trail.

    It passes the inventory services' permission checks as the system does; what keeps a source from
    granting access is that the SCIM layer calls only the identity services (create, update,
    offboard), never a grant or request service.
    """

    source: str = ""

    @property
    def label(self) -> str:
        return f"SCIM source {self.source}"[:200]


def source_actor(source: ScimSource) -> SourceActor:
    return SourceActor(source=source.name)


def new_secret() -> tuple[str, str]:
    """A fresh (prefix, whole token); the token is shown once and never stored."""
    prefix = secrets.token_hex(6)
    return prefix, f"{SCIM_TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def source_for_token(raw: str) -> ScimSource | None:
    """The live source a presented token belongs to, or None (unknown, wrong, or revoked)."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != SCIM_TOKEN_PREFIX or len(parts[1]) != 12:
        return None
    source = ScimSource.objects.filter(prefix=parts[1]).first()
    if source is None or not hmac.compare_digest(source.digest, token_digest(raw)):
        return None
    if source.revoked_at is not None:
        return None
    return source
