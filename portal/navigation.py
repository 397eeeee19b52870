"""The navigation each role sees. Pages still check permission themselves: hiding is not securing."""

from dataclasses import dataclass
from functools import cache

from django.urls import get_script_prefix, get_urlconf, reverse

from governance.roles import READ_INVENTORY_ROLES, Role, user_roles


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    roles: frozenset[str]  # empty: every signed-in user
    # Work of one's own (requests, grants, reviews): not shown to someone who only audits, who has none.
    acting: bool = False
    # A count loaded after the page (htmx), so no page pays for it.
    count_url_name: str = ""


@dataclass(frozen=True)
class NavLink:
    """A menu entry as base.html shows it: built in Python once per page, not per item in the template."""

    label: str
    url: str
    current: bool
    count_url: str


EVERYONE: frozenset[str] = frozenset()
NAV_ITEMS: list[NavItem] = [
    NavItem("Dashboard", "dashboard", EVERYONE),
    NavItem("Request access", "jit:request_catalogue", frozenset({Role.REQUESTER})),
    NavItem("My requests", "jit:request_list", EVERYONE, acting=True),
    NavItem("My grants", "jit:my_grants", EVERYONE, acting=True),
    NavItem("Delegations", "jit:delegation_list", EVERYONE, acting=True),
    NavItem("Approvals", "jit:approval_queue", frozenset({Role.APPROVER, Role.OWNER, Role.ADMIN})),
    NavItem("Break glass", "jit:break_glass", frozenset({Role.REQUESTER, Role.APPROVER, Role.OWNER, Role.ADMIN})),
    NavItem("Notifications", "jit:notification_list", EVERYONE),
    NavItem("Catalogue", "governance:entitlement_list", frozenset(READ_INVENTORY_ROLES)),
    NavItem("My identities", "governance:my_identities", EVERYONE, acting=True),
    NavItem("Identities", "governance:identity_list", frozenset(READ_INVENTORY_ROLES)),
    NavItem("Systems", "governance:system_list", frozenset(READ_INVENTORY_ROLES)),
    # Grants a connector gave up on.
    NavItem(
        "Failed grants",
        "governance:grant_failures",
        frozenset({Role.ADMIN}),
        count_url_name="governance:grant_failures_count",
    ),
    NavItem("Findings", "governance:finding_list", EVERYONE),
    NavItem("Exceptions", "governance:finding_exception_list", frozenset({Role.OWNER, Role.AUDITOR, Role.ADMIN})),
    NavItem("My reviews", "governance:review_queue", EVERYONE, acting=True),
    NavItem("Campaigns", "governance:campaign_list", frozenset({Role.ADMIN, Role.AUDITOR, Role.OWNER})),
    NavItem("Import", "governance:import", frozenset({Role.ADMIN, Role.OWNER})),  # owners: what they own
    NavItem(
        "Break-glass reviews",
        "jit:break_glass_review_list",
        frozenset({Role.APPROVER, Role.OWNER, Role.ADMIN, Role.AUDITOR}),
    ),
    NavItem("Break-glass report", "jit:break_glass_report", frozenset({Role.ADMIN, Role.AUDITOR})),
    NavItem("Break-glass eligibility", "jit:break_glass_eligibility_list", frozenset({Role.ADMIN, Role.AUDITOR})),
    NavItem("Audit trail", "audit:event_list", frozenset({Role.AUDITOR, Role.ADMIN})),
    NavItem("Inventory export", "governance:export", frozenset({Role.AUDITOR, Role.ADMIN})),
    NavItem("Logins", "governance:login_list", frozenset({Role.ADMIN})),
    NavItem("Identity sources", "identity_sources:scim_sources", frozenset({Role.ADMIN})),
    NavItem("Admin", "admin:index", frozenset({Role.ADMIN})),
]


def nav_for(user) -> list[NavItem]:
    if not getattr(user, "is_authenticated", False):
        return []
    roles = user_roles(user)
    only_audits = roles == {Role.AUDITOR}
    return [item for item in NAV_ITEMS if (not item.roles or item.roles & roles) and not (item.acting and only_audits)]


def nav_links(user, *, current_view: str, unread: int) -> list[NavLink]:
    """The menu of this user on the page `current_view` names; Notifications says how many are unread."""
    links = []
    for item in nav_for(user):
        label = f"{item.label} ({unread})" if unread and item.url_name == "jit:notification_list" else item.label
        count_url = _path(item.count_url_name, get_script_prefix(), get_urlconf()) if item.count_url_name else ""
        url = _path(item.url_name, get_script_prefix(), get_urlconf())
        links.append(NavLink(label, url, item.url_name == current_view, count_url))
    return links


@cache
def _path(url_name: str, prefix: str, urlconf) -> str:
    """The menu's paths take no arguments: reversed once per process (and prefix), not on every page."""
    return reverse(url_name, urlconf=urlconf)
