"""The catalogue page's rows (governance/_entitlement_results.html), read by key as values.

The list picks a page's keys with its filters and sort (`DeferredJoinPaginator`), then reads them here:
a row was four model instances (entitlement, system, owner, the system's owner) of every column each,
and the template reversed two URLs, looked up two labels and truncated the purpose per row.
"""

from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils.text import Truncator

from audit.kernel.links import links_for
from audit.kernel.prepared import PreparedQuery

from .choices import RISK_LABELS, IdentityStatus, LifecycleStatus
from .models import Entitlement
from .models.entitlements import effective_max_duration
from .querysets import one_of
from .templatetags.grant_tags import duration

STATUS_LABELS = dict(LifecycleStatus.choices)
PURPOSE_SHOWN = 80  # characters of the business purpose a row shows


@dataclass(frozen=True, slots=True)
class EntitlementRow:
    """An entitlement as its catalogue row shows it; the template escapes the text."""

    pk: int
    name: str
    system_name: str
    purpose: str  # as `business_purpose|truncatechars:80`
    risk_tier: str
    risk_label: str
    owner_name: str
    owner_active: bool
    maximum: str  # as `effective_max_duration|duration`
    state: str  # "requestable", else its status, "not requestable" when active
    requestable_now: bool  # active, requestable and owned by an active identity: a requester may ask for it
    url: str
    request_url: str


def truncated(text: str, length: int) -> str:
    """`text|truncatechars:length`: short ASCII text (most of it) as it is, other text through Django's
    Truncator (which also normalises it to NFC)."""
    if len(text) <= length and text.isascii():
        return text
    return Truncator(text).chars(length)


def _rows_query(keys) -> QuerySet:
    return (
        Entitlement.objects.filter(one_of("pk", keys))
        .order_by()
        .values_list(
            "pk",
            "name",
            "system__name",
            "business_purpose",
            "risk_tier",
            "max_duration",
            "status",
            "requestable",
            "owner__name",
            "owner__status",
        )
    )


_ROWS = PreparedQuery(_rows_query)


def entitlement_rows(keys: list[int]) -> list[EntitlementRow]:
    """The entitlements `keys` names, in that order, as the catalogue shows them (one query, its SQL
    built once per process)."""
    if not keys:
        return []
    detail = links_for("governance:entitlement_detail")
    request = links_for("jit:request_create")
    found = {}
    for pk, name, system_name, purpose, tier, max_duration, status, requestable, owner_name, owner_status in _ROWS.rows(
        list(keys)
    ):
        active = status == LifecycleStatus.ACTIVE
        owner_active = owner_status == IdentityStatus.ACTIVE
        if active and requestable:
            state = "requestable"
        else:
            state = STATUS_LABELS.get(status, status).lower() + (", not requestable" if active else "")
        found[pk] = EntitlementRow(
            pk=pk,
            name=name,
            system_name=system_name,
            purpose=truncated(purpose, PURPOSE_SHOWN),
            risk_tier=tier,
            risk_label=RISK_LABELS.get(tier, tier),
            owner_name=owner_name,
            owner_active=owner_active,
            maximum=duration(effective_max_duration(max_duration, tier)),
            state=state,
            requestable_now=active and requestable and owner_active,
            url=detail(pk),
            request_url=request(pk),
        )
    return [found[key] for key in keys if key in found]
