"""Workload federation: a workload trades a signed JWT from an issuer its identity trusts for a short-lived
portal token, so it never holds a long-lived secret.

Issuers are configured (settings.WORKLOAD_ISSUERS) with their audience and keys (a JWKS URL, fetched and
cached, or a JWKS file for offline use). An identity's owners say which subject of which issuer speaks for
it (`WorkloadTrust`). The JWT is verified (signature, `iss`, `aud`, `exp`, `nbf`/`iat`); its `jti` is
remembered until it expires, so a stolen JWT cannot be exchanged a second time. The JWT itself is never
stored or audited.
"""

import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from django.conf import settings
from django.db import IntegrityError, transaction

from audit.choices import AuditAction
from audit.kernel import clock
from audit.retention import delete_in_batches
from audit.services import Actor, ActorLike, acting_user, audit_event_record, state_change

from ..choices import IdentityKind, IdentityStatus
from ..errors import InvalidTransition, ValidationFailed
from ..locks import lock
from ..models import ApiToken, Identity, WorkloadExchange, WorkloadTrust
from ..token_scopes import MACHINE_SCOPES
from .credentials import IssuedToken, TokenRefused, _new_secret, _require_manager, token_digest

logger = logging.getLogger(__name__)

DEFAULT_ALGORITHMS = ("RS256", "ES256")
# Only signatures checked with a public key: a shared-secret (HS*) or unsigned JWT is never accepted.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES256K", "ES384", "ES512", "EdDSA"}
)
CLOCK_LEEWAY = timedelta(seconds=30)  # the issuer's clock and ours may differ a little


@dataclass(frozen=True)
class Issuer:
    issuer: str
    audience: str
    jwks_url: str = ""
    jwks_file: str = ""
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    max_token_minutes: int = 60


def issuers() -> dict[str, Issuer]:
    """The configured issuers by `iss`; a bad entry is a configuration error, said plainly."""
    found = {}
    for entry in settings.WORKLOAD_ISSUERS or []:
        try:
            issuer = Issuer(
                issuer=entry["issuer"],
                audience=entry["audience"],
                jwks_url=entry.get("jwks_url", ""),
                jwks_file=entry.get("jwks_file", ""),
                algorithms=tuple(entry.get("algorithms") or DEFAULT_ALGORITHMS),
                max_token_minutes=int(entry.get("max_token_minutes", 60)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"WORKLOAD_ISSUERS: bad entry {entry!r}: {error}") from None
        if bool(issuer.jwks_url) == bool(issuer.jwks_file):
            raise ValueError(f"WORKLOAD_ISSUERS: {issuer.issuer} needs one of jwks_url or jwks_file.")
        if not set(issuer.algorithms) <= ASYMMETRIC_ALGORITHMS:
            raise ValueError(f"WORKLOAD_ISSUERS: {issuer.issuer} may use only public-key algorithms.")
        found[issuer.issuer] = issuer
    return found


#
# Trusts
#
def _clean_trust(identity: Identity, issuer: str, subject: str, scopes, token_minutes: int | None):
    configured = issuers().get((issuer or "").strip())
    errors: dict[str, list[str]] = {}
    if configured is None:
        errors["issuer"] = ["Not a configured issuer."]
    subject = (subject or "").strip()
    if not subject or len(subject) > 500:
        errors["subject"] = ["Required, at most 500 characters (the JWT's sub, exactly)."]
    chosen = sorted(set(scopes or []))
    if not chosen:
        errors["scopes"] = ["Choose at least one."]
    elif not set(chosen) <= MACHINE_SCOPES:
        errors["scopes"] = ["Not for a machine: " + ", ".join(sorted(set(chosen) - MACHINE_SCOPES))]
    cap = configured.max_token_minutes if configured else 60
    minutes = min(60, cap) if token_minutes is None else token_minutes
    if not 1 <= minutes <= cap:
        errors["token_minutes"] = [f"Between 1 and {cap} minutes."]
    if errors:
        raise ValidationFailed("Check the trust's fields.", field_errors=errors)
    return configured.issuer, subject, chosen, minutes


def _trust_data(trust: WorkloadTrust, **extra) -> dict:
    return {
        "trust": trust.pk,
        "issuer": trust.issuer,
        "subject": trust.subject,
        "scopes": trust.scopes,
        "token_minutes": trust.token_minutes,
        **extra,
    }


@state_change
def workload_trust_create(
    *,
    actor: ActorLike,
    identity_id: int,
    issuer: str,
    subject: str,
    scopes: list[str],
    token_minutes: int | None = None,
) -> WorkloadTrust:
    """A machine accepts JWTs of one subject of one configured issuer; its owners (or an admin) decide."""
    identity = lock(Identity, identity_id)
    _require_manager(actor, identity)
    if identity.kind == IdentityKind.HUMAN:
        raise ValidationFailed("Only a service account, workload or agent trusts a workload issuer.")
    if identity.status != IdentityStatus.ACTIVE or identity.credentials_suspended_at is not None:
        raise InvalidTransition(f"{identity} is not active: it gets no new trusts.")
    issuer, subject, scopes, minutes = _clean_trust(identity, issuer, subject, scopes, token_minutes)
    taken = WorkloadTrust.objects.filter(issuer=issuer, subject=subject, revoked_at__isnull=True)
    if taken.exists():
        raise ValidationFailed(
            "Another live trust already takes this subject of this issuer: revoke it first.",
            field_errors={"subject": ["Already trusted (by this or another identity)."]},
        )
    user = acting_user(actor)
    try:
        with transaction.atomic():
            trust = WorkloadTrust.objects.create(
                identity=identity,
                issuer=issuer,
                subject=subject,
                scopes=scopes,
                token_minutes=minutes,
                created_by=user if getattr(user, "is_authenticated", False) else None,
                created_at=clock.database_now(),
            )
    except IntegrityError:  # a concurrent create of the same issuer and subject won
        raise InvalidTransition("Another live trust was just made for this subject of this issuer.") from None
    audit_event_record(actor=actor, action=AuditAction.WORKLOAD_TRUST_CREATED, target=identity, data=_trust_data(trust))
    return trust


@state_change
def workload_trust_revoke(*, actor: ActorLike, trust_id: int) -> WorkloadTrust:
    """The subject no longer speaks for the identity; the tokens it was given stop working too."""
    trust = lock(WorkloadTrust, trust_id)
    if trust.revoked_at is not None:
        raise InvalidTransition("This trust is already revoked.")
    identity = lock(Identity, trust.identity_id)
    _require_manager(actor, identity)
    now = clock.database_now()
    trust.revoked_at = now
    trust.save(update_fields=["revoked_at"])
    live = ApiToken.objects.filter(
        pk__in=WorkloadExchange.objects.filter(trust=trust).values("token_id"), revoked_at__isnull=True
    ).exclude(expires_at__lte=now)
    prefixes = sorted(live.values_list("prefix", flat=True))
    if prefixes:
        live.update(revoked_at=now, revoked_reason="workload trust revoked")
    audit_event_record(
        actor=actor,
        action=AuditAction.WORKLOAD_TRUST_REVOKED,
        target=identity,
        data=_trust_data(trust, revoked_tokens=prefixes),
    )
    return trust


def workload_trusts_end(identity: Identity, *, actor: ActorLike, reason: str) -> list[int]:
    """End every live trust of an identity at once (suspension, offboarding), like its tokens: inside the
    caller's transaction, with the identity locked. Reactivating restores none; its owners add them again."""
    live = WorkloadTrust.objects.filter(identity=identity, revoked_at__isnull=True)
    ids = sorted(live.values_list("pk", flat=True))
    if ids:
        live.update(revoked_at=clock.database_now())
        for trust in WorkloadTrust.objects.filter(pk__in=ids).order_by("pk"):
            audit_event_record(
                actor=actor,
                action=AuditAction.WORKLOAD_TRUST_REVOKED,
                target=identity,
                data=_trust_data(trust, reason=reason),
            )
    return ids


#
# Keys
#
_jwk_clients: dict[str, jwt.PyJWKClient] = {}
_jwk_clients_lock = threading.Lock()


def _jwk_client(url: str) -> jwt.PyJWKClient:
    """One client per URL, so its cached key set lives across requests (refetched after the lifespan,
    or at once when a JWT names a key id it does not hold: a rotated key)."""
    with _jwk_clients_lock:
        client = _jwk_clients.get(url)
        if client is None:
            client = _jwk_clients[url] = jwt.PyJWKClient(
                url, cache_jwk_set=True, lifespan=settings.WORKLOAD_JWKS_CACHE_SECONDS, timeout=5
            )
        return client


def _signing_key(issuer: Issuer, subject_token: str, kid: str | None):
    if issuer.jwks_url:
        return _jwk_client(issuer.jwks_url).get_signing_key_from_jwt(subject_token)
    with open(issuer.jwks_file, encoding="utf-8") as handle:
        keys = jwt.PyJWKSet.from_dict(json.load(handle)).keys
    if kid is not None:
        keys = [key for key in keys if key.key_id == kid]
    if len(keys) != 1:
        raise jwt.PyJWKClientError("No key of the issuer matches the JWT's key id.")
    return keys[0]


def _verified_claims(subject_token: str) -> tuple[Issuer, dict]:
    try:
        header = jwt.get_unverified_header(subject_token)
        unverified = jwt.decode(subject_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenRefused("invalid_token", "The subject token is not a JWT.") from None
    issuer = issuers().get(unverified.get("iss")) if isinstance(unverified.get("iss"), str) else None
    if issuer is None:
        raise TokenRefused("untrusted_issuer", "The JWT's issuer is not one the portal trusts.")
    try:
        key = _signing_key(issuer, subject_token, header.get("kid"))
        claims = jwt.decode(
            subject_token,
            key,
            algorithms=list(issuer.algorithms),
            audience=issuer.audience,
            issuer=issuer.issuer,
            leeway=CLOCK_LEEWAY,
            options={"require": ["exp", "iss", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRefused("expired", "The JWT has expired.") from None
    except jwt.InvalidAudienceError:
        raise TokenRefused("wrong_audience", "The JWT is not meant for this portal (audience).") from None
    except jwt.InvalidIssuerError:
        raise TokenRefused("untrusted_issuer", "The JWT's issuer is not one the portal trusts.") from None
    except jwt.ImmatureSignatureError:
        raise TokenRefused("invalid_token", "The JWT is not valid yet (nbf or iat in the future).") from None
    except jwt.MissingRequiredClaimError as error:
        raise TokenRefused("invalid_token", f"The JWT lacks the {error.claim!r} claim.") from None
    except (jwt.PyJWTError, OSError, ValueError) as error:  # bad signature, unknown key, unreadable key set
        logger.info("workload JWT refused for %s: %s", issuer.issuer, error.__class__.__name__)
        raise TokenRefused("invalid_token", "The JWT's signature could not be verified.") from None
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenRefused("invalid_token", "The JWT's subject is empty.")
    return issuer, claims


#
# Exchange
#
def api_token_exchange(*, subject_token: str, client_ip: str) -> IssuedToken:
    """A verified JWT of a trusted subject buys a short-lived token for the identity that trusts it.

    The token lives the least of: the trust's minutes, the issuer's cap, and the JWT's own expiry, so
    a token never outlives the proof it was bought with. TokenRefused (with a code) otherwise. The JWT
    is verified (keys fetched, maybe) before the transaction opens, so no transaction waits on the network."""
    issuer, claims = _verified_claims(subject_token)
    return _exchange(issuer=issuer, claims=claims, client_ip=client_ip)


@state_change
def _exchange(*, issuer: Issuer, claims: dict, client_ip: str) -> IssuedToken:
    subject, jti = claims["sub"], claims.get("jti")
    found = WorkloadTrust.objects.filter(issuer=issuer.issuer, subject=subject, revoked_at__isnull=True).first()
    if found is None:
        raise TokenRefused("no_trust", "No identity trusts this subject of this issuer.")
    trust = lock(WorkloadTrust, found.pk)  # two exchanges of one JWT take turns here
    if trust.revoked_at is not None:
        raise TokenRefused("no_trust", "No identity trusts this subject of this issuer.")
    identity = Identity.objects.get(pk=trust.identity_id)
    if (
        identity.kind == IdentityKind.HUMAN
        or identity.status != IdentityStatus.ACTIVE
        or identity.credentials_suspended_at is not None
    ):
        raise TokenRefused("identity_inactive", "The identity that trusts this subject is not active.")
    now = clock.database_now()
    jwt_expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
    if jti is not None:
        jti = str(jti)[:255]
        earlier = WorkloadExchange.objects.filter(issuer=issuer.issuer, jti=jti).first()
        if earlier is not None and earlier.jwt_expires_at > now:
            raise TokenRefused("replayed", "This JWT was already exchanged: ask the issuer for a new one.")
        if earlier is not None:  # the issuer reused an id after the first JWT expired
            earlier.jti = None
            earlier.save(update_fields=["jti"])
    expires_at = min(
        now + timedelta(minutes=trust.token_minutes),
        now + timedelta(minutes=issuer.max_token_minutes),
        jwt_expires_at,
    )
    if expires_at <= now:
        raise TokenRefused("expired", "The JWT has expired.")
    prefix, secret = _new_secret()
    token = ApiToken.objects.create(
        identity=identity,
        name=f"federated: {issuer.issuer}"[:100],
        prefix=prefix,
        digest=token_digest(secret),
        scopes=sorted(set(trust.scopes) & MACHINE_SCOPES),
        expires_at=expires_at,
    )
    try:
        with transaction.atomic():
            WorkloadExchange.objects.create(
                trust=trust, issuer=issuer.issuer, jti=jti, jwt_expires_at=jwt_expires_at, token=token, created_at=now
            )
    except IntegrityError:  # the same jti through another subject at the same moment
        raise TokenRefused("replayed", "This JWT was already exchanged: ask the issuer for a new one.") from None
    audit_event_record(
        actor=Actor(identity=identity),
        action=AuditAction.API_TOKEN_EXCHANGED,
        target=identity,
        data={
            "trust": trust.pk,
            "iss": issuer.issuer,
            "sub": subject,
            "jti": jti,
            "prefix": token.prefix,
            "scopes": token.scopes,
            "expires_at": token.expires_at,
            "address": client_ip[:45],
        },
    )
    return IssuedToken(token=token, secret=secret)


# An exchange row is kept while its JWT could still be replayed and a little after (its token dies first);
# the audit event of the exchange stays for good.
EXCHANGE_KEEP_AFTER_EXPIRY = timedelta(days=1)


def workload_exchanges_purge(*, batch_size: int | None = None) -> int:
    """Forget exchanges whose JWT (and so whose token) expired a day ago, in short batches."""
    due = WorkloadExchange.objects.filter(jwt_expires_at__lt=clock.database_now() - EXCHANGE_KEEP_AFTER_EXPIRY)
    return delete_in_batches(due, batch_size)
