import django_filters
from django.db.models import Q
from django.utils import timezone

from governance.choices import FindingKind, FindingStatus, GrantKind, GrantStatus
from governance.models import Finding, Grant


class GrantFilter(django_filters.FilterSet):
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

    class Meta:
        model = Finding
        fields = ["kind", "status", "owner_to_act", "identity"]
