from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from .choices import AuditAction, Channel
from .models import AuditEvent

# Layers above audit add where else a name lives (governance: the identity a login user is).
ACTOR_NAME_SEARCHES: list[Callable[[str], Q]] = []


def _start_of_day(day: date, *, days_later: int = 0) -> datetime | None:
    """Midnight at the start of `day` (plus `days_later`) in the current time zone, as UTC.

    None when that lies outside the calendar (year 1 or 9999): the bound then limits nothing.
    """
    try:
        moment = datetime.combine(day + timedelta(days=days_later), time.min)
        return timezone.make_aware(moment).astimezone(UTC)
    except OverflowError:
        return None


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
    # Whole days in the portal's time zone, compared as a range on occurred_at so the index serves them.
    since = django_filters.DateFilter(
        method="filter_since", label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = django_filters.DateFilter(method="filter_until", label="To", widget=forms.DateInput(attrs={"type": "date"}))
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

    def filter_since(self, queryset, name, value):
        start = _start_of_day(value)
        return queryset if start is None else queryset.filter(occurred_at__gte=start)

    def filter_until(self, queryset, name, value):
        end = _start_of_day(value, days_later=1)
        return queryset if end is None else queryset.filter(occurred_at__lt=end)

    def filter_target(self, queryset, name, value):
        """`type:id` (e.g. `governance.grant:42`) matches exactly; anything else searches labels."""
        if ":" in value:
            target_type, _, target_id = value.partition(":")
            return queryset.filter(target_type=target_type.strip().lower(), target_id=target_id.strip())
        return queryset.filter(target_label__icontains=value)
