"""API list filters for requests (the reference filters match a plain id, as in governance.api.filters)."""

import django_filters

from governance.api.filters import by_id
from jit.choices import RequestStatus
from jit.models import AccessRequest


class AccessRequestFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=RequestStatus.choices)
    entitlement = by_id("entitlement", "Entitlement (id)")
    beneficiary = by_id("beneficiary", "Beneficiary identity (id)")

    class Meta:
        model = AccessRequest
        fields = ["status", "entitlement", "beneficiary"]
