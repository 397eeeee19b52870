"""Signing in through the identity provider: find the login by `(issuer, sub)`, link it on first sign-in
by a configured claim rule, and keep the provider-managed roles in step. One audited state change.

A source never grants access: this only links a login, makes one for a person already in the
inventory, and gives or takes the portal roles that OIDC_ROLE_MAP hands to the provider.
"""

import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model

from audit.choices import AuditAction
from audit.kernel.clock import database_now
from audit.services import Actor, ActorLike, audit_event_record, state_change
from governance import policies
from governance.choices import IdentityKind, IdentityStatus
from governance.errors import ValidationFailed
from governance.locks import lock
from governance.models import Identity
from governance.roles import Role
from governance.services.common import check
from governance.services.logins import login_make, roles_set

from ..models import SsoLink

User = get_user_model()


class SsoRefused(Exception):
    """A sign-in the portal will not accept; `reason` is a code, the message is for the person."""

    def __init__(self, reason: str, message: str, *, subject: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.subject = subject


def _provider() -> str:
    return settings.OIDC_PROVIDER_NAME


def _refuse(reason: str, message: str, claims: Mapping[str, Any]) -> SsoRefused:
    return SsoRefused(reason, message, subject=str(claims.get("sub") or "")[:255])


def _email(claims: Mapping[str, Any]) -> str:
    return str(claims.get("email") or "").strip().lower()


def _identity_for_first_sign_in(claims: Mapping[str, Any]) -> Identity:
    """The one active person this provider account is, by a verified e-mail in an allowed domain.

    The e-mail decides only once, and only for a domain the deployment trusts the provider for; from
    then on the `(issuer, sub)` link does, so a reused or changed address cannot move the login.
    """
    email = _email(claims)
    domains = settings.OIDC_LINK_EMAIL_DOMAINS
    if not domains:
        raise _refuse(
            "not_linked",
            f"Your {_provider()} account is not linked to anyone in the portal yet. Ask a portal admin to link it.",
            claims,
        )
    if not email or email.rpartition("@")[2] not in domains:
        raise _refuse(
            "domain_not_allowed",
            f"Your {_provider()} account's e-mail address is not in a domain the portal links by itself. "
            "Ask a portal admin to link your account.",
            claims,
        )
    if settings.OIDC_REQUIRE_EMAIL_VERIFIED and claims.get("email_verified") is not True:
        raise _refuse(
            "email_unverified",
            f"{_provider()} does not vouch for your e-mail address (it is not verified), so the portal cannot "
            "tell who you are. Ask a portal admin to link your account.",
            claims,
        )
    people = list(
        Identity.objects.filter(kind=IdentityKind.HUMAN, status=IdentityStatus.ACTIVE, email__iexact=email).values_list(
            "pk", flat=True
        )[:2]
    )
    if len(people) != 1:
        raise _refuse(
            "no_identity" if not people else "ambiguous_identity",
            "There is no person in the portal with your e-mail address, so you cannot sign in yet. "
            "Ask a portal admin to add you."
            if not people
            else "More than one person in the portal has your e-mail address. Ask a portal admin to link your account.",
            claims,
        )
    identity = lock(Identity, people[0])
    if identity.status != IdentityStatus.ACTIVE or (identity.email or "").lower() != email:
        raise _refuse("no_identity", "Your person in the portal changed while you signed in. Try again.", claims)
    return identity


def _free_username(claims: Mapping[str, Any]) -> str:
    wanted = str(claims.get("preferred_username") or _email(claims).partition("@")[0] or "sso-user")
    base = re.sub(r"[^\w.@+-]", "", wanted)[:140] or "sso-user"
    candidate, n = base, 1
    while User.objects.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _login_for(identity: Identity, issuer: str, claims: Mapping[str, Any]):
    """The person's login, made now (no password) if they have none."""
    if identity.user_id is not None:
        user = User.objects.select_for_update().get(pk=identity.user_id)
        if SsoLink.objects.filter(user=user, issuer=issuer).exists():
            raise _refuse(
                "linked_elsewhere",
                f"{identity.name}'s login is already linked to another {_provider()} account. Ask a portal admin.",
                claims,
            )
        return user
    return login_make(identity, _free_username(claims), actor=Actor.system(), source="sso", issuer=issuer)


def _sync_roles(user, claims: Mapping[str, Any]) -> None:
    """Give and take the roles the provider keeps (the values of OIDC_ROLE_MAP); leave the others alone."""
    role_map: Mapping[str, str] = settings.OIDC_ROLE_MAP
    managed = set(role_map.values()) & set(Role.values)
    if not managed:
        return
    groups = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(groups, str):
        groups = [groups]
    wanted = {role_map[g] for g in groups if isinstance(g, str) and g in role_map} & managed
    roles_set(user, wanted, within=managed)  # each audited with this request's channel (sso)


@state_change
def sso_sign_in(*, issuer: str, claims: Mapping[str, Any]):
    """The login that verified ID token `claims` from `issuer` signs in as, or SsoRefused.

    The caller has checked the token (signature, issuer, audience, expiry, nonce); this decides who it is.
    """
    subject = str(claims.get("sub") or "")
    if not subject or len(subject) > 255:
        raise _refuse("no_subject", f"{_provider()} sent no usable account id (sub).", claims)
    link = SsoLink.objects.select_for_update().filter(issuer=issuer, subject=subject).first()
    if link is None:
        identity = _identity_for_first_sign_in(claims)
        user = _login_for(identity, issuer, claims)
        link = SsoLink.objects.create(user=user, issuer=issuer, subject=subject)
        audit_event_record(
            actor=user,
            action=AuditAction.SSO_LINKED,
            target=user,
            data={"issuer": issuer, "subject": subject, "identity": identity.pk, "matched_by": "email"},
        )
    user = User.objects.get(pk=link.user_id)
    identity = Identity.objects.filter(user=user).only("kind", "status", "name").first()
    if identity is None or identity.kind != IdentityKind.HUMAN or identity.status != IdentityStatus.ACTIVE:
        raise _refuse(
            "identity_inactive",
            "Your person in the portal is not active (suspended or offboarded). Ask a portal admin.",
            claims,
        )
    if not user.is_active:
        raise _refuse("login_off", "Your portal login is switched off. Ask a portal admin.", claims)
    link.last_login_at = database_now()
    link.save(update_fields=["last_login_at"])
    _sync_roles(user, claims)
    return user


def sso_refusal_record(*, issuer: str, refusal: SsoRefused) -> None:
    """Audit a refused sign-in (outside the rolled-back sign-in: the refusal itself must stay on record)."""
    audit_event_record(
        actor=None,
        action=AuditAction.SSO_SIGN_IN_REFUSED,
        data={"issuer": issuer, "subject": refusal.subject, "reason": refusal.reason},
    )


def break_glass_sign_in_record(user) -> None:
    """Audit a password sign-in while local passwords are off: only the break-glass login gets here."""
    audit_event_record(
        actor=user,
        action=AuditAction.BREAK_GLASS_PASSWORD_SIGN_IN,
        target=user,
        data={"user": user.get_username()},
    )


def _require_admin(actor: ActorLike) -> None:
    """A link decides who a provider account signs in as, so only an admin or the system
    (`manage.py sso_link` acts as the system) may set or remove one by hand."""
    check(actor, lambda user, _obj: policies.is_admin(user), None, "Only admins link logins to the identity provider.")


@state_change
def sso_link_set(*, actor: ActorLike, user_id: int, subject: str, issuer: str = "") -> SsoLink:
    """Link a login to a provider account by hand (`manage.py sso_link`): for the people the e-mail rule
    cannot match. Replaces the login's earlier link at that issuer; refuses a subject linked to another login."""
    _require_admin(actor)
    issuer = (issuer or settings.OIDC_ISSUER).rstrip("/")
    if not issuer or not subject:
        raise ValidationFailed("Give the provider's issuer and the account's subject (sub).")
    user = lock(User, user_id)
    taken = SsoLink.objects.select_for_update().filter(issuer=issuer, subject=subject).first()
    if taken is not None and taken.user_id != user.pk:
        raise ValidationFailed(f"{subject} at {issuer} is linked to another login already: unlink it first.")
    if taken is not None:
        return taken
    for old in SsoLink.objects.select_for_update().filter(user=user, issuer=issuer):
        _unlink(actor, old)
    link = SsoLink.objects.create(user=user, issuer=issuer, subject=subject)
    audit_event_record(
        actor=actor,
        action=AuditAction.SSO_LINKED,
        target=user,
        data={"issuer": issuer, "subject": subject, "matched_by": "admin"},
    )
    return link


def _unlink(actor: ActorLike, link: SsoLink) -> None:
    audit_event_record(
        actor=actor,
        action=AuditAction.SSO_UNLINKED,
        target=link.user,
        data={"issuer": link.issuer, "subject": link.subject},
    )
    link.delete()


@state_change
def sso_link_remove(*, actor: ActorLike, user_id: int, issuer: str = "") -> int:
    """Unlink a login from its provider account(s) (at `issuer`, or everywhere); the next sign-in links anew."""
    _require_admin(actor)
    user = lock(User, user_id)
    links = SsoLink.objects.select_for_update().filter(user=user)
    if issuer:
        links = links.filter(issuer=issuer.rstrip("/"))
    removed = 0
    for link in links:
        _unlink(actor, link)
        removed += 1
    return removed
