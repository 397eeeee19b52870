"""The request catalogue's rows (jit/_catalogue_results.html), read as values.

A row was three model instances (entitlement, system, owner) of every column each, and the template
reversed two to four URLs, looked up a label, worked out the duration's words and truncated the purpose
per row; here each is made once, the links from one `reverse()` per kind.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import QuerySet
from django.urls import reverse

from audit.kernel.links import links_for
from governance.choices import RISK_LABELS
from governance.models.entitlements import effective_max_duration
from governance.selectors_catalogue import truncated

from .forms import duration_words

PURPOSE_SHOWN = 120  # characters of the business purpose a row shows

# The values a row reads: the entitlement's, its system's name and my standing (`selectors.with_my_standing`).
CATALOGUE_ROW = (
    "pk",
    "name",
    "system__name",
    "business_purpose",
    "risk_tier",
    "max_duration",
    "justification_required",
    "ticket_required",
    "held_by_me",
    "granting_to_me",
    "requested_by_me",
)


@dataclass(frozen=True, slots=True)
class Badge:
    """What the catalogue says of my standing on an entitlement, linking to where it is listed."""

    url: str
    style: str
    text: str


@dataclass(frozen=True, slots=True)
class CatalogueRow:
    """A requestable entitlement as its catalogue row shows it; the template escapes the text."""

    pk: int
    name: str
    system_name: str
    purpose: str  # as `business_purpose|truncatechars:120`
    risk_tier: str
    risk_label: str
    maximum: str  # as `effective_max_duration|words`
    justification_required: bool
    ticket_required: bool
    held_by_me: bool
    granting_to_me: bool
    requested_by_me: bool
    badge: Badge | None  # held, being granted or asked for: then it is not offered again
    url: str
    request_url: str


class _RowMaker:
    """Builds a page's rows with what they share made once: the links' reversals, the badges, the words
    of each maximum."""

    def __init__(self) -> None:
        self.detail = links_for("governance:entitlement_detail")
        self.request = links_for("jit:request_create")
        my_grants = reverse("jit:my_grants")
        self.held = Badge(my_grants, "active", "you hold it")
        self.granting = Badge(my_grants, "pending", "being granted")
        self.asked = Badge(reverse("jit:request_list"), "pending", "you asked")
        self.words: dict[timedelta, str] = {}

    def maximum(self, max_duration: timedelta | None, tier: str) -> str:
        maximum = effective_max_duration(max_duration, tier)
        if maximum not in self.words:
            self.words[maximum] = duration_words(maximum)
        return self.words[maximum]

    def row(self, pk, name, system_name, purpose, tier, max_duration, justification, ticket, held, granting, asked):
        """One row from `CATALOGUE_ROW`'s values, in its order."""
        badge = self.held if held else self.granting if granting else self.asked if asked else None
        return CatalogueRow(
            pk=pk,
            name=name,
            system_name=system_name,
            purpose=truncated(purpose, PURPOSE_SHOWN),
            risk_tier=tier,
            risk_label=RISK_LABELS.get(tier, tier),
            maximum=self.maximum(max_duration, tier),
            justification_required=justification,
            ticket_required=ticket,
            held_by_me=held,
            granting_to_me=granting,
            requested_by_me=asked,
            badge=badge,
            url=self.detail(pk),
            request_url=self.request(pk),
        )


def catalogue_rows(entitlements: QuerySet) -> list[CatalogueRow]:
    """A page of the catalogue (entitlements annotated by `with_my_standing`, sliced) as its rows: one query."""
    make = _RowMaker()
    return [make.row(*values) for values in entitlements.values_list(*CATALOGUE_ROW)]
