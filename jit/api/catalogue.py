"""The catalogue through the API: what the caller may ask for, so that an agent finds the entitlement
its task needs (by name, system or risk) from the API alone, with what asking will take."""

import django_filters
from django.db.models import TextField
from django.db.models.functions import Cast
from rest_framework import mixins, serializers, viewsets

from governance.api.authentication import MachinePrincipal
from governance.choices import RiskTier
from governance.models import Entitlement
from governance.selectors import entitlements_matching, requestable_entitlements


class CatalogueFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_q", label="Name, system or purpose contains")
    system = django_filters.NumberFilter(field_name="system_id", min_value=1)
    risk_tier = django_filters.ChoiceFilter(choices=RiskTier.choices)

    class Meta:
        model = Entitlement
        fields = ["q", "system", "risk_tier"]

    def filter_q(self, queryset, name, value):
        return entitlements_matching(queryset, value)


class CatalogueEntrySerializer(serializers.ModelSerializer):
    system = serializers.IntegerField(source="system_id")
    system_name = serializers.CharField(source="system.name")
    max_duration_seconds = serializers.SerializerMethodField()
    approves_automatically = serializers.BooleanField(
        source="auto_approve_machines",
        help_text="Automatic approval is on: a request is approved at once when the entitlement's conditions hold "
        "(the request's policy snapshot says which held).",
    )

    class Meta:
        model = Entitlement
        fields = [
            "id",
            "name",
            "system",
            "system_name",
            "business_purpose",
            "risk_tier",
            "max_duration_seconds",
            "allowed_identity_kinds",
            "justification_required",
            "ticket_required",
            "approves_automatically",
        ]

    def get_max_duration_seconds(self, entitlement) -> int:
        return int(entitlement.effective_max_duration.total_seconds())


class CatalogueViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Requestable entitlements; a machine sees those its kind may hold."""

    serializer_class = CatalogueEntrySerializer
    filterset_class = CatalogueFilter
    token_area = "requests"
    machines_allowed = True

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Entitlement.objects.none()
        user = self.request.user
        if isinstance(user, MachinePrincipal):
            # Matched in the list's JSON text: the same on PostgreSQL and on the embedded SQLite.
            queryset = (
                requestable_entitlements(user=None)
                .annotate(kinds_text=Cast("allowed_identity_kinds", TextField()))
                .filter(kinds_text__contains=f'"{user.identity.kind}"')
            )
        else:
            queryset = requestable_entitlements(user=user)
        return queryset.order_by("system__name", "name", "pk")
