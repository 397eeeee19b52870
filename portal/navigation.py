"""The navigation each role sees. Pages still check permission themselves: hiding is not securing."""

from dataclasses import dataclass

from governance.roles import Role, user_roles


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    roles: frozenset[str]  # empty: every signed-in user


EVERYONE: frozenset[str] = frozenset()
NAV_ITEMS: list[NavItem] = [
    NavItem("Dashboard", "dashboard", EVERYONE),
    NavItem("Audit trail", "audit:event_list", frozenset({Role.AUDITOR, Role.ADMIN})),
    NavItem("Admin", "admin:index", frozenset({Role.ADMIN})),
]


def nav_for(user) -> list[NavItem]:
    roles = user_roles(user)
    if not roles and not getattr(user, "is_authenticated", False):
        return []
    return [item for item in NAV_ITEMS if not item.roles or item.roles & roles]
