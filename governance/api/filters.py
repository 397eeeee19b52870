"""API list filters. References filter by plain id: a ModelChoiceFilter would check the id against
every row (400 "Select a valid choice" for an unknown one, 200 for one the caller may not see),
telling a caller which hidden records exist; an id is matched within what the caller sees, or nothing."""

import django_filters
from django.db.models import Q
from django.utils import timezone

from governance.choices import FindingKind, FindingStatus, GrantKind, GrantStatus
from governance.models import Finding, Grant
from jit.choices import RequestStatus
from jit.models import AccessRequest


def _by_id(field: str, label: str) -> django_filters.NumberFilter:
    return django_filters.NumberFilter(field_name=f"{field}_id", label=label, min_value=1)


class GrantFilter(django_filters.FilterSet):
    identity = _by_id("identity", "Identity (id)")
    entitlement = _by_id("entitlement", "Entitlement (id)")
    status = django_filters.ChoiceFilter(choices=GrantStatus.choices)
    kind = django_filters.ChoiceFilter(choices=GrantKind.choices)
    in_force = django_filters.BooleanFilter(method="filter_in_force", label="In force now")

    class Meta:
        model = Grant
        fields = ["identity", "entitlement", "status", "kind", "in_force"]

    def filter_in_force(self, queryset, name, value):
        in_force = Q(status=GrantStatus.ACTIVE) & (Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        return queryset.filter(in_force) if value else queryset.exclude(in_force)


class FindingFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=FindingKind.choices)
    status = django_filters.ChoiceFilter(choices=FindingStatus.choices)
    owner_to_act = _by_id("owner_to_act", "Owner who must act (id)")
    identity = _by_id("identity", "Identity (id)")

    class Meta:
        model = Finding
        fields = ["kind", "status", "owner_to_act", "identity"]


class AccessRequestFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=RequestStatus.choices)
    entitlement = _by_id("entitlement", "Entitlement (id)")
    beneficiary = _by_id("beneficiary", "Beneficiary identity (id)")

    class Meta:
        model = AccessRequest
        fields = ["status", "entitlement", "beneficiary"]
