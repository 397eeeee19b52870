"""Roles are Django groups; what each may do is declared once here as model permissions.

`roles_bootstrap` is idempotent: it runs after every `migrate` (post_migrate, once every app's
permissions exist), and `manage.py bootstrap_roles` runs it on demand. It sets each role's
permissions to exactly this list, so one removed here leaves existing databases too.
"""

from contextvars import ContextVar

from django.contrib.auth.models import Group, Permission
from django.db import models


class Role(models.TextChoices):
    REQUESTER = "requester", "Requester"
    APPROVER = "approver", "Approver"
    OWNER = "owner", "Owner"
    AUDITOR = "auditor", "Auditor"
    ADMIN = "admin", "Admin"


# Roles that read the whole inventory; a requester sees only the identities that are theirs.
READ_INVENTORY_ROLES = (Role.OWNER, Role.APPROVER, Role.AUDITOR, Role.ADMIN)

# "app_label.codename" of the capabilities each role holds; object-level rights (what one owns)
# come from django-guardian and ownership, not from here.
ROLE_PERMISSIONS: dict[str, list[str]] = {
    Role.REQUESTER: [],
    Role.APPROVER: [],
    Role.OWNER: [],
    Role.AUDITOR: ["audit.view_auditevent"],
    Role.ADMIN: ["audit.view_auditevent", "audit.view_outboxmessage", "audit.change_outboxmessage"],
}


_bootstrapping = ContextVar("roles_bootstrapping", default=False)


def bootstrapping() -> bool:
    """True while the roles are set from this module: a deployment of the code, not a person's change."""
    return _bootstrapping.get()


def roles_bootstrap(*, using: str = "default") -> None:
    token = _bootstrapping.set(True)
    try:
        for role, codenames in ROLE_PERMISSIONS.items():
            group, _ = Group.objects.using(using).get_or_create(name=role)
            wanted = []
            for dotted in codenames:
                app_label, codename = dotted.split(".")
                wanted.extend(
                    Permission.objects.using(using).filter(content_type__app_label=app_label, codename=codename)
                )
            group.permissions.set(wanted)
    finally:
        _bootstrapping.reset(token)


def user_roles(user) -> set[str]:
    """The roles a user holds; a superuser holds all. Cached on the user object for one request."""
    if not getattr(user, "is_authenticated", False):
        return set()
    cached = getattr(user, "_portal_roles", None)
    if cached is None:
        cached = set(Role.values) if user.is_superuser else set(group_names(user) & set(Role.values))
        user._portal_roles = cached
    return cached


def group_names(user) -> frozenset[str]:
    """Every group a user is in: the roles, and the others (a break-glass reviewer group, the security
    group). Cached on the user object for one request, so a page with several panels asks once."""
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, "_portal_groups", None)
    if cached is None:
        cached = remember_group_names(user, user.groups.values_list("name", flat=True))
    return cached


def remember_group_names(user, names) -> frozenset[str]:
    """Keep the user's groups for this request: read with the user itself when the session loads it."""
    user._portal_groups = frozenset(names)
    return user._portal_groups


def has_role(user, *roles: str) -> bool:
    return bool(user_roles(user) & set(roles))
