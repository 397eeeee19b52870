import django_filters
from django import forms

from .choices import AuditAction, Channel
from .models import AuditEvent


class AuditEventFilter(django_filters.FilterSet):
    """Search the trail by actor, action, target and time (the auditor's questions)."""

    actor = django_filters.CharFilter(field_name="actor_label", lookup_expr="icontains", label="Actor")
    action = django_filters.ChoiceFilter(choices=AuditAction.choices, label="Action")
    channel = django_filters.ChoiceFilter(choices=Channel.choices, label="Channel")
    target = django_filters.CharFilter(method="filter_target", label="Target")
    since = django_filters.DateFilter(
        field_name="occurred_at",
        lookup_expr="date__gte",
        label="From",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    until = django_filters.DateFilter(
        field_name="occurred_at",
        lookup_expr="date__lte",
        label="To",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    correlation_id = django_filters.CharFilter(label="Correlation id")

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "channel", "target", "since", "until", "correlation_id"]

    def filter_target(self, queryset, name, value):
        """`type:id` (e.g. `governance.grant:42`) matches exactly; anything else searches labels."""
        if ":" in value:
            target_type, _, target_id = value.partition(":")
            return queryset.filter(target_type=target_type.strip().lower(), target_id=target_id.strip())
        return queryset.filter(target_label__icontains=value)
