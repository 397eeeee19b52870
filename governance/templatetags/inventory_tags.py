"""The inventory's panel on the dashboard: what the signed-in person answers for, a query per list."""

from django import template

from governance import policies, selectors
from governance.choices import FindingStatus

register = template.Library()

PANEL_ROWS = 5


@register.inclusion_tag("governance/_dashboard_panel.html", takes_context=True)
def inventory_panel(context) -> dict:
    """My identities (owner or backup owner) and the open findings waiting on me."""
    user = context["request"].user
    me = policies.identity_of(user)
    if me is None:
        return {"me": None, "owned": [], "findings": [], "provisioning": []}
    owned = selectors.identities_owned_by(user=user).order_by("-open_finding_count", "name")
    findings = list(
        selectors.finding_list(user=user)
        .filter(status=FindingStatus.OPEN, owner_to_act=me)
        .order_by("-last_seen_at")[:PANEL_ROWS]
    )
    provisioning = list(selectors.provisioning_work_for(identity=me)[: PANEL_ROWS + 1])
    return {
        "me": me,
        "owned": list(owned[:PANEL_ROWS]),
        "findings": findings,
        "provisioning": provisioning,
        "can_register": policies.is_admin(user) or policies.may_own_machines(user),
    }
