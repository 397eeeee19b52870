"""Logins and their roles, kept by admins in the portal: every change one audited state change.

An admin never learns or sets another person's password: a new login has none until its person
follows the link mailed to them, and an admin can only send such a link again. An admin changes
neither their own roles nor their own login's state: another admin does, so there is always one left.
"""

import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from audit.choices import AuditAction
from audit.handlers import EMAIL
from audit.outbox import outbox_enqueue
from audit.services import ActorLike, acting_user, audit_event_record, state_change

from .. import policies
from ..choices import IdentityKind, IdentityStatus
from ..errors import InvalidTransition, PermissionRefused, ValidationFailed
from ..locks import lock
from ..models import Identity
from ..roles import Role

User = get_user_model()


def _require_admin(actor: ActorLike, message: str = "Only admins manage logins and roles."):
    user = acting_user(actor)
    if user is None or not policies.is_admin(user):
        raise PermissionRefused(message)
    return user


def _refuse_self(admin, user, what: str) -> None:
    if admin.pk == user.pk:
        raise PermissionRefused(f"You cannot change your own {what}: ask another admin.")


def _clean_roles(roles: Iterable[str]) -> set[str]:
    wanted = set(roles)
    unknown = wanted - set(Role.values)
    if unknown:
        raise ValidationFailed(
            f"Unknown role: {', '.join(sorted(unknown))}.", field_errors={"roles": ["Choose from the roles listed."]}
        )
    return wanted


def reset_link(user) -> str:
    """An absolute link that lets `user` choose a password (Django's one-time token: it dies once used)."""
    path = reverse(
        "password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    return f"{settings.PORTAL_BASE_URL.rstrip('/')}{path}"


def send_password_link(user, *, key: str, first: bool = False) -> None:
    """Mail the link through the outbox (delivered after commit, retried if the mail server is down)."""
    if not user.email:
        raise ValidationFailed(f"{user.get_username()} has no email address to send a link to.")
    intro = "A login to the access portal was made for you." if first else "A new password was asked for your login."
    outbox_enqueue(
        kind=EMAIL,
        idempotency_key=key,
        payload={
            "to": [user.email],
            "subject": "[Access portal] Choose your password",
            "body": f"{intro}\n\nChoose a password here (the link works once):\n{reset_link(user)}\n\n"
            f"Your login name: {user.get_username()}\n",
        },
    )


@state_change
def login_create(*, actor: ActorLike, identity_id: int, username: str, roles: Iterable[str]):
    """Give an active person of the inventory a login with roles; they choose its password from a mailed link."""
    admin = _require_admin(actor)
    wanted = _clean_roles(roles)
    identity = lock(Identity, identity_id)
    if identity.kind != IdentityKind.HUMAN or identity.status != IdentityStatus.ACTIVE:
        raise ValidationFailed(
            "Logins are for active people.", field_errors={"identity": ["Must be an active person."]}
        )
    if identity.user_id is not None:
        raise InvalidTransition(f"{identity} already has a login.")
    if not identity.email:
        raise ValidationFailed(
            f"{identity} has no email address: add one so that they can receive their link.",
            field_errors={"identity": ["Needs an email address."]},
        )
    username = username.strip()
    if not username:
        raise ValidationFailed("Give a login name.", field_errors={"username": ["Required."]})
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationFailed("That login name is taken.", field_errors={"username": ["Taken; choose another."]})
    user = login_make(identity, username, actor=admin, roles=wanted)
    send_password_link(user, key=f"login:{user.pk}:first-password", first=True)
    return user


def login_make(identity: Identity, username: str, *, actor: ActorLike, roles: Iterable[str] = (), **recorded: Any):
    """A person's login without a password, linked to them and audited; for callers that checked who
    may make it (an admin's `login_create`, a provider-verified sign-in). `recorded` goes in the event."""
    wanted = sorted(set(roles))
    user = User(username=username, email=identity.email, first_name=identity.name[:150])
    user.set_unusable_password()
    user.save()
    identity.user = user
    identity.save(update_fields=["user", "updated_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.LOGIN_CREATED,
        target=user,
        data={"user": username, "identity": identity.pk, "roles": wanted, **recorded},
    )
    user.groups.add(*Group.objects.filter(name__in=wanted))  # audited as role.assigned (portal.signals)
    return user


def roles_set(user, wanted: set[str], *, within: Iterable[str]) -> None:
    """Give and take roles so that, of the roles `within`, the login holds exactly `wanted`; each role
    given or taken is audited by portal.signals."""
    held = set(user.groups.filter(name__in=within).values_list("name", flat=True))
    if held - wanted:
        user.groups.remove(*Group.objects.filter(name__in=held - wanted))
    if wanted - held:
        user.groups.add(*Group.objects.filter(name__in=wanted - held))


@state_change
def login_set_roles(*, actor: ActorLike, user_id: int, roles: Iterable[str]):
    """Set a login's roles to exactly `roles`; each role given or taken is its own audit event."""
    admin = _require_admin(actor)
    wanted = _clean_roles(roles)
    user = lock(User, user_id)
    _refuse_self(admin, user, "roles")
    roles_set(user, wanted, within=Role.values)
    return user


@state_change
def login_set_active(*, actor: ActorLike, user_id: int, active: bool, reason: str):
    """Turn a login off (its sessions stop working at the next request) or on again."""
    admin = _require_admin(actor)
    user = lock(User, user_id)
    _refuse_self(admin, user, "login")
    if user.is_active == active:
        return user
    identity = Identity.objects.filter(user=user).only("status").first()
    if active and identity is not None and identity.status != IdentityStatus.ACTIVE:
        raise InvalidTransition(f"{identity} is {identity.status}: reactivate the person first.")
    user.is_active = active
    user.save(update_fields=["is_active"])
    audit_event_record(
        actor=admin,
        action=AuditAction.LOGIN_REACTIVATED if active else AuditAction.LOGIN_DEACTIVATED,
        target=user,
        data={"user": user.get_username(), "reason": reason},
    )
    return user


@state_change
def login_send_password_reset(*, actor: ActorLike, user_id: int):
    """Mail a person a link to choose a new password: the admin never sees it or the password."""
    admin = _require_admin(actor)
    user = lock(User, user_id)
    if not user.is_active:
        raise InvalidTransition(f"{user.get_username()}'s login is off: turn it on first.")
    audit_event_record(
        actor=admin, action=AuditAction.PASSWORD_RESET_SENT, target=user, data={"user": user.get_username()}
    )
    send_password_link(user, key=f"login:{user.pk}:reset:{uuid.uuid4().hex}")
    return user
