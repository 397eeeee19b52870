"""Reads of the exception register: accepted risks, who may see which."""

from django.db.models import Q, QuerySet

from . import policies
from .models import FindingException


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
