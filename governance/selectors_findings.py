"""Reads of the findings page and the exception register: which findings and accepted risks each may see."""

from django.db.models import Q, QuerySet

from . import policies
from .models import Finding, FindingException

# What the findings page reads of a finding and the objects it names: the columns it shows, and what
# deciding its fixes asks (`finding_fixes.can_fix_finding`: the identity's owners, the entitlement's
# and its system's). The rest of five joined rows (identities of twenty fields) is neither read nor built.
FINDING_PAGE_FIELDS = (
    "kind",
    "severity",
    "status",
    "details",
    "first_seen_at",
    "last_seen_at",
    "resolved_at",
    "grant_id",
    "identity__name",
    "identity__owner_id",
    "identity__backup_owner_id",
    "entitlement__name",
    "entitlement__owner_id",
    "entitlement__system__owner_id",
    "owner_to_act__name",
)


def finding_page_rows(keys: list[int]) -> list[Finding]:
    """The findings `keys` names, in that order, with what the findings page reads of them.

    The page picks its keys with its filters and order (`DeferredJoinPaginator`), then reads its rows
    here by key alone: with the filters and the order again, the query took longer to build than to run.
    """
    rows = (
        Finding.objects.select_related("identity", "entitlement__system", "owner_to_act")
        .only(*FINDING_PAGE_FIELDS)
        .filter(pk__in=keys)
        .order_by()
    )
    found = {finding.pk: finding for finding in rows}
    return [found[key] for key in keys if key in found]


def finding_exception_list(*, user) -> QuerySet[FindingException]:
    """The accepted risks this user may read: auditors and admins all of them; anyone else those on
    identities they own or back up, and those they accepted themselves."""
    queryset = FindingException.objects.select_related(
        "finding", "finding__identity", "finding__entitlement", "finding__entitlement__system", "accepted_by"
    )
    if policies.is_admin(user) or policies.is_auditor(user):
        return queryset
    me = policies.identity_of(user)
    mine = Q(accepted_by_id=user.pk)
    if me is not None:
        mine |= Q(finding__identity__owner_id=me.pk) | Q(finding__identity__backup_owner_id=me.pk)
    return queryset.filter(mine)
