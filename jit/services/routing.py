"""Who may approve a stage: resolved once at submission and stored on the stage."""

from django.conf import settings
from django.contrib.auth import get_user_model

from governance import policies
from governance.choices import ApproverSource, IdentityStatus
from governance.models import Identity

from ..models import AccessRequest
from .deputies import absent_deputies, may_deputise


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


def _may_decide(user) -> bool:
    """An active login that may act: an owner who is only an auditor is never routed a decision."""
    return user is not None and user.is_active and not policies.is_read_only(user)


def excluded_user_ids(request: AccessRequest) -> set[int]:
    beneficiary = request.beneficiary
    excluded = {request.requester_id, beneficiary.user_id}
    if beneficiary.kind != "human":
        for owner in (beneficiary.owner, beneficiary.backup_owner):
            if owner is not None:
                excluded.add(owner.user_id)
    # A machine asking on someone's behalf: everyone in its delegation chain (and a machine's owners) asked too.
    chain = [
        end["id"] for hop in request.delegation_chain or () if isinstance(hop, dict) for end in (hop["from"], hop["to"])
    ]
    if chain:
        for row in Identity.objects.filter(pk__in=chain).values_list(
            "user_id", "owner__user_id", "backup_owner__user_id"
        ):
            excluded.update(row)
    return {pk for pk in excluded if pk is not None}


def _group(name: str) -> list:
    return list(get_user_model().objects.filter(groups__name=name, is_active=True).distinct().order_by("pk"))


def fallback_approvers(request: AccessRequest) -> list:
    excluded = excluded_user_ids(request)
    return [u for u in _group(settings.JIT_FALLBACK_GROUP) if u.pk not in excluded]


def _usable(found: dict | set, earlier: set[int], earlier_quorum: int) -> int:
    """How many of a stage's people are left whoever decided the earlier stages.

    Earlier stages use up `earlier_quorum` people at most, and only those who are also eligible
    here take a place from this stage.
    """
    return len(found) - min(len(set(found) & earlier), earlier_quorum)


def _add_deputies(found: dict, excluded: set[int]) -> None:
    """Whoever is away now brings the deputy they named (jit.services.deputies), unless the deputy
    may not decide this request; the absent approver stays eligible, for when they are back."""
    for deputy in absent_deputies(found).values():
        if deputy.pk not in excluded and may_deputise(deputy) is None:
            found.setdefault(deputy.pk, deputy)


def stage_approvers(stages: list[dict], request: AccessRequest) -> list[list]:
    """Each stage's approvers, so that every quorum can be met by distinct people.

    Conflicts of interest are excluded; an approver out of office brings their deputy (who is
    left out like anyone else with a conflict). One person cannot decide two stages of a request,
    so someone an earlier stage cannot do without is not offered again, and a stage counts on none
    of the people earlier stages may use up; a stage left short of its quorum
    (a critical entitlement's single system owner, two stages drawing on one small group) is
    topped up from the fallback group, then from the approver group, people no earlier stage can
    take first. A stage still short is the caller's to refuse (see `short_stages`).
    """
    excluded = excluded_user_ids(request)
    earlier: set[int] = set()
    earlier_quorum = 0
    reserves: list | None = None
    result = []
    for spec in stages:
        quorum = spec.get("quorum", 1)
        found = {u.pk: u for u in _candidates(spec, request) if _may_decide(u) and u.pk not in excluded}
        _add_deputies(found, excluded)
        if _usable(found, earlier, earlier_quorum) < quorum:
            if reserves is None:
                reserves = _group(settings.JIT_FALLBACK_GROUP) + _group(settings.JIT_EXTRA_STAGE_GROUP)
            for user in sorted(reserves, key=lambda u: u.pk in earlier):
                if _usable(found, earlier, earlier_quorum) >= quorum:
                    break
                if user.pk not in excluded and _may_decide(user):
                    found.setdefault(user.pk, user)
        if len(found) <= quorum:
            excluded = excluded | set(found)  # this stage cannot do without them: no later stage counts on them
        result.append(list(found.values()))
        earlier |= set(found)
        earlier_quorum += quorum
    return result


def short_stages(stages: list[dict], approvers: list[list]) -> list[int]:
    """Positions (from 1) of stages whose quorum the worst order of earlier decisions could leave unmet."""
    earlier: set[int] = set()
    earlier_quorum, short = 0, []
    for position, (spec, people) in enumerate(zip(stages, approvers, strict=True), start=1):
        found = {u.pk for u in people}
        if _usable(found, earlier, earlier_quorum) < spec.get("quorum", 1):
            short.append(position)
        earlier |= found
        earlier_quorum += spec.get("quorum", 1)
    return short
