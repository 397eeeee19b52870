"""How the audit trail names requests, break-glass and delegations, and puts them on the timelines
of their identities and entitlements. Found by `audit.sentences.discover` (like admin.py).
"""

from django.db.models import Q

from audit.sentences import USER_KIND, Named, Ref, page_links, register_data_keys, register_kind
from audit.timeline import register_related
from governance.audit_names import ENTITLEMENT, IDENTITY, batch_rows, entitlement_refs, identity_refs

from .models import AccessRequest, BreakGlassActivation, BreakGlassDrill, BreakGlassEligibility
from .models_delegations import Delegation

REQUEST = "jit.accessrequest"
ACTIVATION = "jit.breakglassactivation"
ELIGIBILITY = "jit.breakglasseligibility"
DRILL = "jit.breakglassdrill"
DELEGATION = "jit.delegation"


_REQUESTS = batch_rows(
    AccessRequest, "pk", "entitlement_id", "entitlement__name", "entitlement__system__name", "beneficiary_id",
    "beneficiary__name",
)  # fmt: skip
_ACTIVATIONS = batch_rows(
    BreakGlassActivation, "pk", "identity_id", "identity__name", "entitlement_id", "entitlement__name",
    "entitlement__system__name",
)  # fmt: skip
_ELIGIBILITIES = batch_rows(
    BreakGlassEligibility, "pk", "identity_id", "identity__name", "entitlement_id", "entitlement__name",
    "entitlement__system__name",
)  # fmt: skip
_DRILLS = batch_rows(
    BreakGlassDrill, "pk", "eligibility__identity_id", "eligibility__identity__name", "eligibility__entitlement_id",
    "eligibility__entitlement__name", "eligibility__entitlement__system__name",
)  # fmt: skip
_DELEGATIONS = batch_rows(Delegation, "pk", "delegator_id", "delegator__name", "delegate_id", "delegate__name")


def _named(ref: Ref, **related: Ref | None) -> Named:
    return Named(ref, {key: value for key, value in related.items() if value is not None})


def request_names(ids: list[int]) -> dict[int, Named]:
    request_url, identity_ref, entitlement_ref = page_links("jit:request_detail"), identity_refs(), entitlement_refs()
    named = {}
    for pk, entitlement_id, entitlement, system, beneficiary_id, beneficiary in _REQUESTS.rows(ids):
        beneficiary_ref = identity_ref(beneficiary_id, beneficiary)  # "{beneficiary}" and "{identity}" alike
        named[pk] = _named(
            Ref(f"request #{pk}", request_url(pk)),
            entitlement=entitlement_ref(entitlement_id, entitlement, system),
            beneficiary=beneficiary_ref,
            identity=beneficiary_ref,
        )
    return named


def activation_names(ids: list[int]) -> dict[int, Named]:
    activation_url, identity_ref, entitlement_ref = (
        page_links("jit:break_glass_detail"), identity_refs(), entitlement_refs(),
    )  # fmt: skip
    return {
        pk: _named(
            Ref(f"break-glass #{pk}", activation_url(pk)),
            identity=identity_ref(identity_id, identity),
            entitlement=entitlement_ref(entitlement_id, entitlement, system),
        )
        for pk, identity_id, identity, entitlement_id, entitlement, system in _ACTIVATIONS.rows(ids)
    }


def eligibility_names(ids: list[int]) -> dict[int, Named]:
    identity_ref, entitlement_ref = identity_refs(), entitlement_refs()
    return {
        pk: _named(
            Ref(f"break-glass eligibility #{pk}"),
            identity=identity_ref(identity_id, identity),
            entitlement=entitlement_ref(entitlement_id, entitlement, system),
        )
        for pk, identity_id, identity, entitlement_id, entitlement, system in _ELIGIBILITIES.rows(ids)
    }


def drill_names(ids: list[int]) -> dict[int, Named]:
    identity_ref, entitlement_ref = identity_refs(), entitlement_refs()
    return {
        pk: _named(
            Ref(f"drill #{pk}"),
            identity=identity_ref(identity_id, identity),
            entitlement=entitlement_ref(entitlement_id, entitlement, system),
        )
        for pk, identity_id, identity, entitlement_id, entitlement, system in _DRILLS.rows(ids)
    }


def delegation_names(ids: list[int]) -> dict[int, Named]:
    identity_ref = identity_refs()
    return {
        pk: _named(
            Ref(f"delegation #{pk}"),
            delegator=identity_ref(delegator_id, delegator),
            delegate=identity_ref(delegate_id, delegate),
        )
        for pk, delegator_id, delegator, delegate_id, delegate in _DELEGATIONS.rows(ids)
    }


register_kind(REQUEST, noun="request", names=request_names)
register_kind(ACTIVATION, noun="break-glass", names=activation_names)
register_kind(ELIGIBILITY, noun="break-glass eligibility", names=eligibility_names)
register_kind(DRILL, noun="drill", names=drill_names)
register_kind(DELEGATION, noun="delegation", names=delegation_names)
register_data_keys(
    {
        "beneficiary": IDENTITY,
        "request": REQUEST,
        "renewal_of": REQUEST,
        "eligibility": ELIGIBILITY,
        "drill": DRILL,
        "delegation": DELEGATION,
    }
)
register_data_keys({"refuse_requests_for_retired": REQUEST, "closed_requests": REQUEST}, lists=True)
register_data_keys(dict.fromkeys(("approver", "deputy", "absent"), USER_KIND))  # out of office, by logins

register_related(IDENTITY, REQUEST, lambda pk: AccessRequest.objects.filter(beneficiary_id=pk))
register_related(IDENTITY, ACTIVATION, lambda pk: BreakGlassActivation.objects.filter(identity_id=pk))
register_related(IDENTITY, ELIGIBILITY, lambda pk: BreakGlassEligibility.objects.filter(identity_id=pk))
register_related(IDENTITY, DELEGATION, lambda pk: Delegation.objects.filter(Q(delegator_id=pk) | Q(delegate_id=pk)))
register_related(IDENTITY, DRILL, lambda pk: BreakGlassDrill.objects.filter(eligibility__identity_id=pk))
register_related(ENTITLEMENT, REQUEST, lambda pk: AccessRequest.objects.filter(entitlement_id=pk))
register_related(ENTITLEMENT, ACTIVATION, lambda pk: BreakGlassActivation.objects.filter(entitlement_id=pk))
register_related(ENTITLEMENT, ELIGIBILITY, lambda pk: BreakGlassEligibility.objects.filter(entitlement_id=pk))
register_related(ENTITLEMENT, DRILL, lambda pk: BreakGlassDrill.objects.filter(eligibility__entitlement_id=pk))
