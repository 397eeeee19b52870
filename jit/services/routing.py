"""Who may approve a stage: resolved once at submission and stored on the stage."""

from django.conf import settings
from django.contrib.auth import get_user_model

from governance.choices import ApproverSource, IdentityStatus

from ..models import AccessRequest


def _user_of(identity):
    if identity is None or identity.status != IdentityStatus.ACTIVE or identity.user_id is None:
        return None
    return identity.user


def _candidates(stage: dict, request: AccessRequest) -> list:
    entitlement, beneficiary = request.entitlement, request.beneficiary
    source = stage["approver"]
    if source == ApproverSource.ENTITLEMENT_OWNER:
        return [_user_of(entitlement.owner)]
    if source == ApproverSource.SYSTEM_OWNER:
        return [_user_of(entitlement.system.owner)]
    if source == ApproverSource.BENEFICIARY_OWNER:
        # A person's manager; for a machine, its owner's manager (its owner may not approve it).
        person = beneficiary if beneficiary.kind == "human" else beneficiary.owner
        return [_user_of(person.manager) if person is not None else None]
    if source == ApproverSource.GROUP:
        return list(get_user_model().objects.filter(groups__name=stage.get("group", ""), is_active=True))
    return []


def excluded_user_ids(request: AccessRequest) -> set[int]:
    beneficiary = request.beneficiary
    excluded = {request.requester_id, beneficiary.user_id}
    if beneficiary.kind != "human":
        for owner in (beneficiary.owner, beneficiary.backup_owner):
            if owner is not None:
                excluded.add(owner.user_id)
    return {pk for pk in excluded if pk is not None}


def fallback_approvers(request: AccessRequest) -> list:
    excluded = excluded_user_ids(request)
    users = get_user_model().objects.filter(groups__name=settings.JIT_FALLBACK_GROUP, is_active=True).distinct()
    return [u for u in users if u.pk not in excluded]


def eligible_approvers(stage: dict, request: AccessRequest) -> list:
    """The stage's approvers minus anyone with a conflict of interest; the fallback group if none remain."""
    excluded = excluded_user_ids(request)
    found = {u.pk: u for u in _candidates(stage, request) if u is not None and u.is_active and u.pk not in excluded}
    return list(found.values()) or fallback_approvers(request)
