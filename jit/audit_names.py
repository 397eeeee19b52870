"""How the audit trail names requests, break-glass and delegations, and puts them on the timelines
of their identities and entitlements. Found by `audit.sentences.discover` (like admin.py).
"""

from django.db.models import Q
from django.urls import reverse

from audit.sentences import USER_KIND, Named, Ref, register_data_keys, register_kind
from audit.timeline import register_related
from governance.audit_names import ENTITLEMENT, IDENTITY, entitlement_ref

from .models import AccessRequest, BreakGlassActivation, BreakGlassDrill, BreakGlassEligibility
from .models_delegations import Delegation

REQUEST = "jit.accessrequest"
ACTIVATION = "jit.breakglassactivation"
ELIGIBILITY = "jit.breakglasseligibility"
DRILL = "jit.breakglassdrill"
DELEGATION = "jit.delegation"


def _identity(pk, name) -> Ref | None:
    return Ref(name, reverse("governance:identity_detail", args=[pk])) if pk is not None else None


def _named(ref: Ref, **related: Ref | None) -> Named:
    return Named(ref, {key: value for key, value in related.items() if value is not None})


def request_names(ids: list[int]) -> dict[int, Named]:
    rows = AccessRequest.objects.filter(pk__in=ids).values_list(
        "pk", "entitlement_id", "entitlement__name", "entitlement__system__name", "beneficiary_id", "beneficiary__name"
    )
    return {
        pk: _named(
            Ref(f"request #{pk}", reverse("jit:request_detail", args=[pk])),
            entitlement=entitlement_ref(entitlement_id, entitlement, system),
            beneficiary=_identity(beneficiary_id, beneficiary),
            identity=_identity(beneficiary_id, beneficiary),
        )
        for pk, entitlement_id, entitlement, system, beneficiary_id, beneficiary in rows
    }


def activation_names(ids: list[int]) -> dict[int, Named]:
    rows = BreakGlassActivation.objects.filter(pk__in=ids).values_list(
        "pk", "identity_id", "identity__name", "entitlement_id", "entitlement__name", "entitlement__system__name"
    )
    return {
        pk: _named(
            Ref(f"break-glass #{pk}", reverse("jit:break_glass_detail", args=[pk])),
            identity=_identity(identity_id, identity),
            entitlement=entitlement_ref(entitlement_id, entitlement, system),
        )
        for pk, identity_id, identity, entitlement_id, entitlement, system in rows
    }


def eligibility_names(ids: list[int]) -> dict[int, Named]:
    rows = BreakGlassEligibility.objects.filter(pk__in=ids).values_list(
        "pk", "identity_id", "identity__name", "entitlement_id", "entitlement__name", "entitlement__system__name"
    )
    return {
        pk: _named(
            Ref(f"break-glass eligibility #{pk}"),
            identity=_identity(identity_id, identity),
            entitlement=entitlement_ref(entitlement_id, entitlement, system),
        )
        for pk, identity_id, identity, entitlement_id, entitlement, system in rows
    }


def drill_names(ids: list[int]) -> dict[int, Named]:
    rows = BreakGlassDrill.objects.filter(pk__in=ids).values_list(
        "pk",
        "eligibility__identity_id",
        "eligibility__identity__name",
        "eligibility__entitlement_id",
        "eligibility__entitlement__name",
        "eligibility__entitlement__system__name",
    )
    return {
        pk: _named(
            Ref(f"drill #{pk}"),
            identity=_identity(identity_id, identity),
            entitlement=entitlement_ref(entitlement_id, entitlement, system),
        )
        for pk, identity_id, identity, entitlement_id, entitlement, system in rows
    }


def delegation_names(ids: list[int]) -> dict[int, Named]:
    rows = Delegation.objects.filter(pk__in=ids).values_list(
        "pk", "delegator_id", "delegator__name", "delegate_id", "delegate__name"
    )
    return {
        pk: _named(
            Ref(f"delegation #{pk}"),
            delegator=_identity(delegator_id, delegator),
            delegate=_identity(delegate_id, delegate),
        )
        for pk, delegator_id, delegator, delegate_id, delegate in rows
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
