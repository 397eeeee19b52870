"""The navigation each role sees. Pages still check permission themselves: hiding is not securing."""

from dataclasses import dataclass

from governance.roles import READ_INVENTORY_ROLES, Role, user_roles


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    roles: frozenset[str]  # empty: every signed-in user
    # Work of one's own (requests, grants, reviews): not shown to someone who only audits, who has none.
    acting: bool = False


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
