"""The inventory's panel on the dashboard: what the signed-in person answers for, a query per list."""

from django import template
from django.db.models import Q

from governance import policies, selectors
from governance.choices import FindingStatus
from governance.models import Finding, Identity

register = template.Library()

PANEL_ROWS = 5
# The columns each list shows (templates/governance/_dashboard_panel.html): only these are read.
PROVISIONING_SHOWN = ("status", "updated_at", "identity__name", "entitlement__name", "entitlement__system__name")
FINDING_SHOWN = ("kind", "first_seen_at", "identity__name", "entitlement__name")


@register.inclusion_tag("governance/_dashboard_panel.html", takes_context=True)
def inventory_panel(context) -> dict:
    """My identities (owner or backup owner) and the open findings waiting on me."""
    user = context["request"].user
    me = policies.identity_of(user)
    if me is None:
        return {"me": None, "owned": [], "findings": [], "provisioning": []}
    provisioning = list(selectors.provisioning_work_for(identity=me).only(*PROVISIONING_SHOWN)[: PANEL_ROWS + 1])
    return {
        "me": me,
        "owned": _owned_by(me),
        "findings": _findings_for(me),
        "provisioning": provisioning,
        "can_register": policies.is_admin(user) or policies.may_own_machines(user),
    }


def _owned_by(me: Identity) -> list[Identity]:
    """The identities I own or back up, most open findings first: the panel shows their name, kind,
    status and that count, so no join (what I own I may see: no visibility filter either)."""
    owned = (
        Identity.objects.filter(Q(owner=me) | Q(backup_owner=me))
        .only("name", "kind", "status")
        .annotate(open_finding_count=selectors._count_of(Finding, "identity", status=FindingStatus.OPEN))
    )
    return list(owned.order_by("-open_finding_count", "name", "pk")[:PANEL_ROWS])


def _findings_for(me: Identity) -> list[Finding]:
    """The latest open findings naming me to act, picked by key on the (owner_to_act, status) index, then
    read by key with the identity or entitlement they show.

    Picked with the joins and every column, PostgreSQL read all 27,000 findings in parallel to sort
    the thousand of one owner (12-25 ms); by key it sorts them off the index in ~1 ms.
    """
    keys = list(
        Finding.objects.filter(status=FindingStatus.OPEN, owner_to_act=me)
        .order_by("-last_seen_at", "-pk")
        .values_list("pk", flat=True)[:PANEL_ROWS]
    )
    found = Finding.objects.select_related("identity", "entitlement").only(*FINDING_SHOWN).in_bulk(keys)
    return [found[key] for key in keys if key in found]
