"""The audit trail's filters: the auditor's questions (who, what, about what, when), each answered
from an index at a million events.

Times are read in the viewer's time zone (`audit.kernel.zones`), to the minute; a date alone means
the whole day. The target is exact: a name, "request #8", or "type:id", never a part of a label.
"""

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from typing import NamedTuple

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from .choices import AuditAction, Channel
from .kernel.widgets import QuickCheckboxInput, QuickHiddenInput, QuickInput, QuickSelect, QuickTextInput
from .kernel.zones import zone_name
from .models import AuditEvent
from .sentences import targets_named

# Layers above audit add where else a name lives (governance: the identity a login user is).
ACTOR_NAME_SEARCHES: list[Callable[[str], Q]] = []

# What "hide sign-ins" hides: the routine comings and goings. Failed sign-ins and lock-outs stay.
SIGN_INS = (AuditAction.USER_LOGGED_IN.value, AuditAction.USER_LOGGED_OUT.value)

# The action filter's groups, by the action's subject (the part before the dot). An action of a
# subject not listed here (a new one) still shows, under "Other".
AREAS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("requests", "Requests and approvals", ("request", "approver")),
    ("grants", "Grants", ("grant", "holding")),
    ("break_glass", "Break-glass", ("break_glass",)),
    ("certification", "Certification", ("campaign", "review")),
    ("identities", "Identities", ("identity", "delegation")),
    ("credentials", "API tokens and workloads", ("api_token", "workload_trust")),
    ("catalogue", "Systems and entitlements", ("system", "entitlement", "sod_rule")),
    ("findings", "Findings", ("finding",)),
    ("sign_ins", "Sign-ins, logins and roles", ("user", "role")),
    ("data", "Imports, exports and delivery", ("import", "export", "outbox")),
)
OTHER_AREA = ("other", "Other")
AREA_PREFIX = "area:"


def _area_key(action: str) -> str:
    subject = action.partition(".")[0]
    return next((key for key, _label, subjects in AREAS if subject in subjects), OTHER_AREA[0])


def actions_in_area(key: str) -> list[str]:
    return [action for action in AuditAction.values if _area_key(action) == key]


@cache
def action_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """The actions grouped by area (optgroups), each group led by "every <area> event".

    Built once per process: the actions are fixed in code, and building them (every action's area,
    for every area) took longer than the page's queries."""
    groups = []
    for key, label in [(key, label) for key, label, _subjects in AREAS] + [OTHER_AREA]:
        actions = [(value, name) for value, name in AuditAction.choices if _area_key(value) == key]
        if actions:
            everything = (f"{AREA_PREFIX}{key}", f"Any of: {label.lower()}")
            groups.append((label, [everything, *sorted(actions, key=lambda choice: str(choice[1]))]))
    return groups


#
# Moments: a date, or a date and time, in the viewer's zone
#
class Moment(NamedTuple):
    """A time as typed (no zone yet) and how long it lasts: a day, a minute or a second."""

    start: datetime
    length: timedelta


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class MomentInput(QuickInput, forms.DateTimeInput):
    """A datetime-local input. A date alone (an older link) shows as the day's first or last minute."""

    input_type = "datetime-local"

    def __init__(self, *, end: bool = False, **kwargs) -> None:
        self.end = end
        super().__init__(**kwargs)

    def format_value(self, value):
        if isinstance(value, str) and _DATE.fullmatch(value.strip()):
            return value.strip() + ("T23:59" if self.end else "T00:00")
        return value if isinstance(value, str) else super().format_value(value)


class MomentField(forms.Field):
    default_error_messages = {"invalid": "Enter a date (2026-03-10) or a date and time (2026-03-10 09:30)."}

    def to_python(self, value) -> Moment | None:
        text = (value or "").strip()
        if not text:
            return None
        try:
            if _DATE.fullmatch(text):
                return Moment(datetime.fromisoformat(text), timedelta(days=1))
            moment = datetime.fromisoformat(text.replace(" ", "T"))
        except ValueError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
        if moment.tzinfo is not None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        has_seconds = text.count(":") >= 2
        return Moment(moment, timedelta(seconds=1) if has_seconds else timedelta(minutes=1))


class MomentFilter(django_filters.Filter):
    field_class = MomentField


def _as_utc(moment: datetime, zone: tzinfo) -> datetime | None:
    """A wall-clock time in `zone` as UTC; None off the calendar (year 1 or 9999): the bound limits nothing."""
    try:
        return moment.replace(tzinfo=zone).astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _end_of(moment: Moment) -> datetime | None:
    try:
        return moment.start + moment.length
    except OverflowError:
        return None


class AuditFilterForm(forms.Form):
    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since.start > until.start:
            self.add_error("until", "The end date is before the start date.")
        return data


class AuditEventFilter(django_filters.FilterSet):
    """Search the trail by actor, action, target and time (the auditor's questions)."""

    actor = django_filters.CharFilter(
        method="filter_actor", label="Actor", help_text="Login or name", widget=QuickTextInput
    )
    # ~150 options: Django's template per option cost more than the rest of the page (QuickSelect).
    action = django_filters.ChoiceFilter(
        choices=action_choices,
        method="filter_action",
        label="Action",
        empty_label="Any action",
        null_label=None,
        widget=QuickSelect,
    )
    channel = django_filters.ChoiceFilter(
        choices=Channel.choices, label="Channel", empty_label="Any channel", null_label=None, widget=QuickSelect
    )
    target = django_filters.CharFilter(
        method="filter_target",
        label="Target",
        widget=QuickTextInput,
        help_text="Exact: a name (s3-logs-reader, Riya Requester), request #8, or type:id",
    )
    # Ranges on occurred_at, so that the index serves them; read in the viewer's time zone.
    since = MomentFilter(method="filter_since", label="From", widget=MomentInput())
    until = MomentFilter(method="filter_until", label="To", widget=MomentInput(end=True))
    correlation_id = django_filters.CharFilter(label="Correlation id", widget=QuickTextInput)
    hide_sign_ins = django_filters.BooleanFilter(
        method="filter_hide_sign_ins", label="Hide sign-ins and sign-outs", widget=QuickCheckboxInput
    )
    # The zone the times above are in: the browser's, filled in by static/js/browser-time-zone.js.
    tz = django_filters.CharFilter(
        method="filter_nothing", widget=QuickHiddenInput(attrs={"data-browser-time-zone": ""})
    )

    class Meta:
        model = AuditEvent
        form = AuditFilterForm
        fields = ["actor", "action", "channel", "target", "since", "until", "correlation_id", "hide_sign_ins", "tz"]

    def __init__(self, *args, zone: tzinfo | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.zone = zone or timezone.get_current_timezone()
        help_text = f"In your time zone ({zone_name(self.zone)}); a date alone is the whole day."
        self.form.fields["since"].help_text = help_text
        self.form.fields["until"].help_text = help_text

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

    def filter_action(self, queryset, name, value):
        if value.startswith(AREA_PREFIX):
            return queryset.filter(action__in=actions_in_area(value.removeprefix(AREA_PREFIX)))
        return queryset.filter(action=value)

    def filter_since(self, queryset, name, value: Moment):
        start = _as_utc(value.start, self.zone)
        return queryset if start is None else queryset.filter(occurred_at__gte=start)

    def filter_until(self, queryset, name, value: Moment):
        end = _end_of(value)
        end = None if end is None else _as_utc(end, self.zone)
        return queryset if end is None else queryset.filter(occurred_at__lt=end)

    def filter_hide_sign_ins(self, queryset, name, value):
        if not value or self.form.cleaned_data.get("action") in SIGN_INS:
            return queryset  # asking for sign-ins by name shows them
        return queryset.exclude(action__in=SIGN_INS)

    def filter_nothing(self, queryset, name, value):
        return queryset

    def filter_target(self, queryset, name, value):
        """`type:id` (e.g. `governance.grant:42`), "request #8", or a name: exactly that object's events.

        Names are looked up in the inventory (each kind's exact-name finder), so the trail is read
        through its (target_type, target_id) index: a million events are never scanned for a label.
        """
        value = " ".join(value.split())
        if re.fullmatch(r"[a-z_]+\.[a-z_]+:\S+", value, flags=re.IGNORECASE):
            target_type, _, target_id = value.partition(":")
            return queryset.filter(target_type=target_type.lower(), target_id=target_id)
        match = Q(pk__in=[])
        for target_type, ids in targets_named(value).items():
            match |= Q(target_type=target_type, target_id__in=ids)
        return queryset.filter(match)
