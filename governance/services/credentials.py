"""API tokens: issue (shown once), rotate with an overlap, revoke, kill on suspension, and check on use.

A token reads `gp_<prefix>_<secret>`. Only an HMAC-SHA256 of the whole token under a server key is
stored, so the table alone (a backup, a read replica) gives nothing to replay or to guess offline;
the prefix is public and finds the row, the comparison is constant-time.
"""

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Now

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import ActorLike, acting_user, audit_event_record, state_change

from .. import policies
from ..choices import GrantStatus, IdentityKind, IdentityStatus
from ..errors import InvalidTransition, PermissionRefused, ValidationFailed
from ..locks import lock
from ..models import ApiToken, Grant, Identity
from .common import is_system

TOKEN_PREFIX = "gp"
TIER_ORDER = ["low", "medium", "high", "critical"]


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the whole token, to show once; never stored


class TokenRefused(Exception):
    """A presented token cannot be used; `code` is machine-readable, the message says why."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _hash_key() -> bytes:
    configured = settings.API_TOKEN_HASH_KEY
    if configured:
        return configured.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"api-token-hash-key", hashlib.sha256).digest()


def token_digest(raw: str) -> str:
    return hmac.new(_hash_key(), raw.encode(), hashlib.sha256).hexdigest()


def _new_secret() -> tuple[str, str]:
    prefix = secrets.token_hex(6)  # 12 hex characters: public, unique
    return prefix, f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def identity_risk(identity: Identity) -> str:
    """The riskiest tier among the entitlements the identity holds (low when it holds none)."""
    tiers = set(
        Grant.objects.filter(identity=identity, status__in=GrantStatus.live()).values_list(
            "entitlement__risk_tier", flat=True
        )
    )
    return max(tiers, key=TIER_ORDER.index, default="low")


def max_lifetime(identity: Identity) -> timedelta:
    return timedelta(days=settings.API_TOKEN_MAX_DAYS_BY_RISK[identity_risk(identity)])


def _require_manager(actor: ActorLike, identity: Identity) -> None:
    """A person makes tokens for their own scripts; a machine's owners (or an admin) make its tokens."""
    if is_system(actor):
        return
    user = acting_user(actor)
    if user is None or not getattr(user, "is_authenticated", False) or policies.is_read_only(user):
        raise PermissionRefused("You may not manage this identity's tokens.")
    if identity.kind == IdentityKind.HUMAN:
        allowed = identity.user_id == user.pk
    else:
        allowed = policies.can_manage_identity(user, identity)
    if not allowed:
        raise PermissionRefused("Only the person themself, or a machine's owners or an admin, manage its tokens.")


def _clean_networks(networks) -> list[str]:
    cleaned = []
    for value in networks or []:
        text = str(value).strip()
        if not text:
            continue
        try:
            cleaned.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ValidationFailed(
                f"{text!r} is not a network (write 10.0.0.0/8 or 192.0.2.7).",
                field_errors={"allowed_networks": [f"Not a network: {text}"]},
            ) from None
    return cleaned


def _clean_scopes(identity: Identity, scopes) -> list[str]:
    from ..token_scopes import MACHINE_SCOPES, SCOPES

    chosen = sorted(set(scopes or []))
    if not chosen:
        raise ValidationFailed("Choose at least one scope.", field_errors={"scopes": ["Choose at least one."]})
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise ValidationFailed(f"Unknown scopes: {', '.join(unknown)}.", field_errors={"scopes": ["Unknown scope."]})
    if identity.kind != IdentityKind.HUMAN and not set(chosen) <= MACHINE_SCOPES:
        raise ValidationFailed(
            "A machine's token reaches its own requests, grants and break-glass only.",
            field_errors={"scopes": ["Not for a machine: " + ", ".join(sorted(set(chosen) - MACHINE_SCOPES))]},
        )
    return chosen


def _usable_identity(identity: Identity) -> None:
    if identity.status != IdentityStatus.ACTIVE or identity.credentials_suspended_at is not None:
        raise InvalidTransition(f"{identity} is not active: it gets no new tokens.")


def _expiry(identity: Identity, now: datetime, days: int | None) -> datetime:
    cap = max_lifetime(identity)
    lifetime = timedelta(days=days if days is not None else settings.API_TOKEN_DEFAULT_DAYS)
    if lifetime <= timedelta(0):
        raise ValidationFailed("A token lives at least a day.", field_errors={"expires_in_days": ["At least 1."]})
    if lifetime > cap:
        raise ValidationFailed(
            f"{identity} holds {identity_risk(identity)}-risk access: its tokens live at most {cap.days} days.",
            field_errors={"expires_in_days": [f"At most {cap.days} days."]},
        )
    return now + lifetime


def _token_data(token: ApiToken, **extra) -> dict:
    return {
        "identity": token.identity_id,
        "name": token.name,
        "prefix": token.prefix,
        "scopes": token.scopes,
        "allowed_networks": token.allowed_networks,
        "expires_at": token.expires_at,
        **extra,
    }


@state_change
def api_token_create(
    *,
    actor: ActorLike,
    identity_id: int,
    name: str,
    scopes: list[str],
    expires_in_days: int | None = None,
    allowed_networks: list[str] | None = None,
) -> IssuedToken:
    """A new token for an identity; the secret is in the result and nowhere else."""
    identity = lock(Identity, identity_id)
    _require_manager(actor, identity)
    _usable_identity(identity)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationFailed(
            "Name the token (what uses it), at most 100 characters.", field_errors={"name": ["Required."]}
        )
    now = clock.database_now()
    prefix, secret = _new_secret()
    user = acting_user(actor)
    token = ApiToken.objects.create(
        identity=identity,
        name=name,
        prefix=prefix,
        digest=token_digest(secret),
        scopes=_clean_scopes(identity, scopes),
        allowed_networks=_clean_networks(allowed_networks),
        expires_at=_expiry(identity, now, expires_in_days),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    audit_event_record(actor=actor, action=AuditAction.API_TOKEN_CREATED, target=identity, data=_token_data(token))
    return IssuedToken(token=token, secret=secret)


def _lock_live(token_id: int) -> ApiToken:
    token = lock(ApiToken, token_id)
    if token.revoked_at is not None:
        raise InvalidTransition(f"Token {token.prefix} is already revoked.")
    return token


@state_change
def api_token_rotate(*, actor: ActorLike, token_id: int, overlap: timedelta | None = None) -> IssuedToken:
    """A successor with the same name, scopes and networks; the old token keeps working for the overlap."""
    token = _lock_live(token_id)
    identity = lock(Identity, token.identity_id)
    _require_manager(actor, identity)
    _usable_identity(identity)
    now = clock.database_now()
    if token.expires_at <= now:
        raise InvalidTransition(f"Token {token.prefix} has expired: make a new one.")
    overlap = settings.API_TOKEN_ROTATION_OVERLAP if overlap is None else overlap
    lifetime = min(token.expires_at - token.created_at, max_lifetime(identity))
    prefix, secret = _new_secret()
    user = acting_user(actor)
    successor = ApiToken.objects.create(
        identity=identity,
        name=token.name,
        prefix=prefix,
        digest=token_digest(secret),
        scopes=_clean_scopes(identity, token.scopes),
        allowed_networks=token.allowed_networks,
        expires_at=now + max(lifetime, timedelta(days=1)),
        created_by=user if getattr(user, "is_authenticated", False) else None,
        rotated_from=token,
    )
    token.expires_at = min(token.expires_at, now + overlap)
    token.save(update_fields=["expires_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.API_TOKEN_ROTATED,
        target=identity,
        data=_token_data(successor, replaces=token.prefix, old_expires_at=token.expires_at),
    )
    return IssuedToken(token=successor, secret=secret)


@state_change
def api_token_revoke(*, actor: ActorLike, token_id: int, reason: str = "") -> ApiToken:
    token = _lock_live(token_id)
    identity = lock(Identity, token.identity_id)
    _require_manager(actor, identity)
    token.revoked_at, token.revoked_reason = clock.database_now(), (reason or "revoked").strip()[:200]
    token.save(update_fields=["revoked_at", "revoked_reason"])
    audit_event_record(
        actor=actor, action=AuditAction.API_TOKEN_REVOKED, target=identity, data=_token_data(token, reason=reason)
    )
    return token


def api_tokens_kill(identity: Identity, *, actor: ActorLike, reason: str) -> list[str]:
    """Revoke every live token of an identity at once (suspension, offboarding); inside the caller's
    transaction, with the identity locked. Returns the prefixes it revoked."""
    live = ApiToken.objects.filter(identity=identity, revoked_at__isnull=True)
    prefixes = sorted(live.values_list("prefix", flat=True))
    if prefixes:
        live.update(revoked_at=clock.database_now(), revoked_reason=reason[:200])
        audit_event_record(
            actor=actor,
            action=AuditAction.API_TOKENS_KILLED,
            target=identity,
            data={"prefixes": prefixes, "reason": reason},
        )
    return prefixes


#
# Use
#
LAST_USED_GRANULARITY = timedelta(minutes=1)


def _parse(raw: str) -> str | None:
    parts = raw.split("_", 2)  # the secret itself may hold underscores
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 12:
        return None
    return parts[1]


def _in_networks(address: str, networks: list[str]) -> bool:
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net) for net in networks)


def api_token_authenticate(raw: str, *, client_ip: str = "") -> ApiToken:
    """The token a caller presents, if it may be used now from there; TokenRefused otherwise.

    Not a state change: a read, plus the last-used time and place (written at most once a minute so
    a busy agent does not write a row per call)."""
    prefix = _parse(raw)
    token = None
    if prefix is not None:
        token = ApiToken.objects.select_related("identity", "identity__user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.digest, token_digest(raw)):
        raise TokenRefused("token_invalid", "The token is not valid.")
    now = clock.now()
    if token.revoked_at is not None:
        raise TokenRefused("token_revoked", "The token was revoked.")
    if token.expires_at <= now:
        raise TokenRefused("token_expired", "The token has expired.")
    identity = token.identity
    if identity.status != IdentityStatus.ACTIVE or identity.credentials_suspended_at is not None:
        raise TokenRefused("identity_inactive", "The token's identity is not active.")
    if identity.kind == IdentityKind.HUMAN and (identity.user is None or not identity.user.is_active):
        raise TokenRefused("identity_inactive", "The token's person has no active login.")
    if not _in_networks(client_ip, token.allowed_networks):
        raise TokenRefused("network_not_allowed", "The token may not be used from this address.")
    if (
        token.last_used_at is None
        or token.last_used_at < now - LAST_USED_GRANULARITY
        or token.last_used_from != client_ip
    ):
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True)
            | Q(last_used_at__lt=now - LAST_USED_GRANULARITY)
            | ~Q(last_used_from=client_ip)
        ).update(last_used_at=Now(), last_used_from=client_ip[:45])  # recorded by the database's clock
    return token
