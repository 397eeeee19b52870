"""The inventory's panel on the dashboard: what the signed-in person answers for, a query per list.

Each list's SQL is built once per process (audit.kernel.prepared), with the person's identity bound at
each run, and its rows read as values with what the panel prints worked out here (labels, links, dates):
building the four querysets cost ~3 ms of CPU a page, more than PostgreSQL took to run them.
"""

from dataclasses import dataclass
from datetime import datetime

from django import template
from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import F, Q, QuerySet
from django.template.defaultfilters import timesince_filter
from django.utils import timezone

from audit.kernel.links import links_for
from audit.kernel.prepared import PreparedQuery
from governance import policies, selectors
from governance.choices import FindingKind, FindingStatus, GrantStatus, IdentityStatus
from governance.models import Finding, Identity
from governance.querysets import EqualsAny

register = template.Library()

PANEL_ROWS = 5
FINDING_LABELS = dict(FindingKind.choices)


@dataclass(frozen=True, slots=True)
class OwnedShown:
    """An identity I own or back up: its name and kind (and status, when not active), its open findings."""

    url: str
    name: str
    kind: str
    open_finding_count: int


@dataclass(frozen=True, slots=True)
class FindingShown:
    """An open finding naming me: its kind, what it is about (linked), since when (a day, in my zone)."""

    kind: str
    url: str
    subject: str
    since: str


@dataclass(frozen=True, slots=True)
class ProvisioningShown:
    """A grant to put in place or to remove by hand, and how long it has waited."""

    url: str
    removing: bool
    entitlement: str
    holder: str
    waiting: str


@register.inclusion_tag("governance/_dashboard_panel.html", takes_context=True)
def inventory_panel(context) -> dict:
    """My identities (owner or backup owner) and the open findings waiting on me."""
    user = context["request"].user
    me = policies.identity_of(user)
    if me is None:
        return {"me": None, "owned": [], "findings": [], "provisioning": []}
    return {
        "me": me,
        "owned": _owned_by(me),
        "findings": _findings_for(me),
        "provisioning": _provisioning_for(me),
        "can_register": policies.is_admin(user) or policies.may_own_machines(user),
    }


def _owned_by(me: Identity) -> list[OwnedShown]:
    """The identities I own or back up, most open findings first."""
    url = links_for("governance:identity_detail")
    return [
        OwnedShown(url(pk), name, _kind_words(kind, status), count)
        for pk, name, kind, status, count in _OWNED.rows(me.pk)
    ]


def _kind_words(kind: str, status: str) -> str:
    """ "Service account", or "Service account, suspended": as the panel printed kind and status."""
    words = selectors.KIND_LABELS.get(kind, kind)
    if status != IdentityStatus.ACTIVE:
        words += f", {selectors.STATUS_LABELS.get(status, status).lower()}"
    return words


def _owned_query(identity_id) -> QuerySet:
    """No join (what I own I may see: no visibility filter either), the count a correlated subquery."""
    owned = Identity.objects.filter(Q(owner=identity_id) | Q(backup_owner=identity_id)).annotate(
        open_finding_count=selectors._count_of(Finding, "identity", status=FindingStatus.OPEN)
    )
    return owned.order_by("-open_finding_count", "name", "pk").values_list(
        "pk", "name", "kind", "status", "open_finding_count"
    )[:PANEL_ROWS]


def _findings_for(me: Identity) -> list[FindingShown]:
    """The latest open findings naming me to act, each linked to its identity, else its entitlement."""
    identity_url, entitlement_url = links_for("governance:identity_detail"), links_for("governance:entitlement_detail")
    shown = []
    for kind, identity_id, identity, entitlement_id, entitlement, first_seen_at in _FINDINGS.rows(me.pk):
        if identity_id is not None:
            url, subject = identity_url(identity_id), identity
        elif entitlement_id is not None:
            url, subject = entitlement_url(entitlement_id), entitlement
        else:
            url, subject = "", ""
        shown.append(FindingShown(FINDING_LABELS.get(kind, kind), url, subject, _day(first_seen_at)))
    return shown


def _day(moment: datetime) -> str:
    """`|date:"Y-m-d"`, written out: the day in the viewer's zone."""
    local = timezone.localtime(moment)
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d}"


def _findings_query(identity_id) -> QuerySet:
    """Picked by key on the (owner_to_act, status) index, and read by key in the same statement (on
    PostgreSQL `pk = ANY(ARRAY(keys))`, the keys read first, on their own).

    Picked with the joins and every column, PostgreSQL read all 27,000 findings in parallel to sort
    the thousand of one owner (12-25 ms); by key it sorts them off the index in ~1 ms.
    """
    latest = ("-last_seen_at", "-pk")
    keys = (
        Finding.objects.filter(status=FindingStatus.OPEN, owner_to_act=identity_id)
        .order_by(*latest)
        .values("pk")[:PANEL_ROWS]
    )
    picked = EqualsAny(F("pk"), ArraySubquery(keys)) if connection.vendor == "postgresql" else Q(pk__in=keys)
    return (
        Finding.objects.filter(picked)
        .order_by(*latest)
        .values_list("kind", "identity_id", "identity__name", "entitlement_id", "entitlement__name", "first_seen_at")
    )


def _provisioning_for(me: Identity) -> list[ProvisioningShown]:
    """Up to one more than the panel lists: it says "5+" when there are more."""
    url = links_for("governance:grant_detail")
    return [
        ProvisioningShown(
            url(pk), status == GrantStatus.REVOKING, f"{system} / {entitlement}", holder, timesince_filter(updated_at)
        )
        for pk, status, updated_at, holder, entitlement, system in _PROVISIONING.rows(me.pk)
    ]


def _provisioning_query(identity_id) -> QuerySet:
    return selectors.provisioning_work_for(identity=identity_id).values_list(
        "pk", "status", "updated_at", "identity__name", "entitlement__name", "entitlement__system__name"
    )[: PANEL_ROWS + 1]


_OWNED = PreparedQuery(_owned_query)
_FINDINGS = PreparedQuery(_findings_query)
_PROVISIONING = PreparedQuery(_provisioning_query)
