from collections.abc import Callable

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q

from .choices import AuditAction, Channel
from .models import AuditEvent

# Layers above audit add where else a name lives (governance: the identity a login user is).
ACTOR_NAME_SEARCHES: list[Callable[[str], Q]] = []


class AuditFilterForm(forms.Form):
    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return data


class AuditEventFilter(django_filters.FilterSet):
    """Search the trail by actor, action, target and time (the auditor's questions)."""

    actor = django_filters.CharFilter(method="filter_actor", label="Actor", help_text="Login or name")
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
        form = AuditFilterForm
        fields = ["actor", "action", "channel", "target", "since", "until", "correlation_id"]

    def filter_actor(self, queryset, name, value):
        """The login recorded on the event, or the name the person goes by everywhere else."""
        words = value.split()
        if not words:
            return queryset
        people = get_user_model().objects.all()
        for word in words:
            people = people.filter(Q(first_name__icontains=word) | Q(last_name__icontains=word))
        match = Q(actor_label__icontains=value) | Q(actor_user_id__in=people.values("pk"))
        for search in ACTOR_NAME_SEARCHES:
            match |= search(value)
        return queryset.filter(match)

    def filter_target(self, queryset, name, value):
        """`type:id` (e.g. `governance.grant:42`) matches exactly; anything else searches labels."""
        if ":" in value:
            target_type, _, target_id = value.partition(":")
            return queryset.filter(target_type=target_type.strip().lower(), target_id=target_id.strip())
        return queryset.filter(target_label__icontains=value)
