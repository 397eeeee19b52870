"""API list filters. References filter by plain id: a ModelChoiceFilter would check the id against
every row (400 "Select a valid choice" for an unknown one, 200 for one the caller may not see),
telling a caller which hidden records exist; an id is matched within what the caller sees, or nothing."""

import django_filters

from governance.choices import FindingKind, FindingStatus, GrantKind, GrantStatus
from governance.models import Finding, Grant


def by_id(field: str, label: str) -> django_filters.NumberFilter:
    return django_filters.NumberFilter(field_name=f"{field}_id", label=label, min_value=1)


class GrantFilter(django_filters.FilterSet):
    identity = by_id("identity", "Identity (id)")
    entitlement = by_id("entitlement", "Entitlement (id)")
    status = django_filters.ChoiceFilter(choices=GrantStatus.choices)
    kind = django_filters.ChoiceFilter(choices=GrantKind.choices)
    in_force = django_filters.BooleanFilter(method="filter_in_force", label="In force now")

    class Meta:
        model = Grant
        fields = ["identity", "entitlement", "status", "kind", "in_force"]

    def filter_in_force(self, queryset, name, value):
        return queryset.in_force() if value else queryset.not_in_force()


class FindingFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=FindingKind.choices)
    status = django_filters.ChoiceFilter(choices=FindingStatus.choices)
    owner_to_act = by_id("owner_to_act", "Owner who must act (id)")
    identity = by_id("identity", "Identity (id)")

    class Meta:
        model = Finding
        fields = ["kind", "status", "owner_to_act", "identity"]
