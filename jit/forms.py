"""Forms of the request pages: they parse input; the services decide."""

import math
import zoneinfo
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator
from django.utils import timezone

from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from audit.kernel.widgets import ListedModelChoiceField, QuickSelect, QuickTextInput
from governance.choices import RiskTier
from governance.models import Entitlement, System

from .choices import Decision, RequestStatus
from .services.requests import MAX_TOGETHER

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"
# The service maps its field errors onto these form fields.
SERVICE_FIELDS = {"duration": "duration_hours"}


HUNDREDTH = Decimal("0.01")


def hours_of(delta: timedelta) -> Decimal:
    """`delta` in hours, rounded down to a hundredth (36 seconds), shown without trailing zeros."""
    hours = Decimal(math.floor(max(delta.total_seconds(), 0) / 36)) * HUNDREDTH
    return hours.to_integral() if hours == hours.to_integral() else hours.normalize()


def duration_of(hours: Decimal) -> timedelta:
    return timedelta(seconds=round(hours * 3600))


class HoursField(forms.DecimalField):
    """Hours, with fractions: an entitlement's maximum may be under an hour (0.5 = 30 minutes).
    Trailing zeros are no extra precision ("1.500" is 1.5)."""

    def to_python(self, value):
        hours = super().to_python(value)
        return hours.normalize() if hours is not None and hours.is_finite() else hours


def duration_hours_field(label: str) -> forms.DecimalField:
    field = HoursField(label=label, min_value=HUNDREDTH, max_value=24 * 366, decimal_places=2)
    field.widget.attrs.update(step="any", inputmode="decimal")
    field.error_messages["max_decimal_places"] = "Use at most two decimals (0.25 = 15 minutes)."
    return field


def add_service_errors(form: forms.Form, error, renamed: dict[str, str] | None = None) -> bool:
    """Put a DomainError's field errors beside their fields (`renamed`: the service's field names the
    form calls otherwise); True when at least one found a field."""
    renamed = SERVICE_FIELDS if renamed is None else renamed
    placed = False
    for name, messages in (error.field_errors or {}).items():
        field = renamed.get(name, name)
        for message in messages:
            if field in form.fields:
                form.add_error(field, message)
                placed = True
    return placed


class CatalogueFilterForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=200, widget=QuickTextInput(attrs={"type": "search"}))
    system = ListedModelChoiceField(
        label="System", queryset=System.objects.none(), required=False, empty_label="Any", widget=QuickSelect
    )
    risk_tier = forms.ChoiceField(
        label="Risk tier", choices=[("", "Any"), *RiskTier.choices], required=False, widget=QuickSelect
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["system"].queryset = System.objects.filter(status="active").order_by("name")


class RequestFilterForm(forms.Form):
    status = forms.ChoiceField(
        label="Status", choices=[("", "Any"), *RequestStatus.choices], required=False, widget=QuickSelect
    )
    order = forms.ChoiceField(
        label="Sort",
        choices=[("-created_at", "Newest first"), ("created_at", "Oldest first")],
        required=False,
        widget=QuickSelect,
    )


PRESETS = (timedelta(hours=1), timedelta(hours=4), timedelta(days=1), timedelta(days=7))
OTHER = "other"


def duration_words(delta: timedelta) -> str:
    """A duration in the one style of the request pages: "1 hour", "4 hours", "1 day", "7 days",
    "1 h 30 min", "30 minutes". Whole days are said in days, so a preset and a limit read alike."""
    seconds = int(delta.total_seconds())
    minutes = seconds // 60
    days, rest = divmod(minutes, 24 * 60)
    day_words = f"{days} day{'s' if days != 1 else ''}"
    if days and not rest:
        return day_words
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{day_words} {hours} h" + (f" {minutes} min" if minutes else "")
    if minutes:
        return f"{hours} h {minutes} min" if hours else f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{hours} hour{'s' if hours != 1 else ''}"


class BoundedDurationForm(forms.Form):
    """A duration picked from presets up to the policy's bound, or typed in hours ("Other").

    The bound is said in the policy's words, not a generic one. `duration_hours` alone (no preset
    sent) is the typed duration, as older clients and the API-shaped tests post it.
    """

    duration_preset = forms.ChoiceField(label="Duration", required=False, widget=forms.RadioSelect)

    def bound_duration(self, max_hours: Decimal, message: str, help_text: str) -> None:
        field = self.fields["duration_hours"]
        field.required = False  # a preset may stand in for it; clean() asks for one or the other
        field.validators = [v for v in field.validators if not isinstance(v, MaxValueValidator)]
        field.validators.append(MaxValueValidator(max_hours, message=message))
        field.help_text = help_text
        field.widget.attrs.update(max=max_hours, min=HUNDREDTH)

    def offer_presets(self, maximum: timedelta, default: timedelta) -> None:
        """The presets up to `maximum`, with the default and the maximum itself among them."""
        spans = sorted({p for p in PRESETS if p <= maximum} | {default, maximum}) if maximum > timedelta(0) else []
        choices = []
        for span in spans:
            label = duration_words(span) + (" (the maximum)" if span == maximum else "")
            choices.append((str(hours_of(span)), label))
        self.fields["duration_preset"].choices = [*choices, (OTHER, "Other")]
        self.initial.setdefault("duration_preset", str(hours_of(default)) if spans else OTHER)

    def _preset_hours(self) -> Decimal | None:
        """The preset picked (None for "Other" or none): one of the offered values only."""
        value = str(self.data.get(self.add_prefix("duration_preset"), "") or "") if self.is_bound else ""
        offered = {key for key, _ in self.fields["duration_preset"].choices}
        if value in ("", OTHER) or value not in offered:
            return None
        return Decimal(value)

    def clean(self):
        data = super().clean()
        preset = self._preset_hours()
        if preset is not None:
            # A preset wins over whatever the "Other" box still holds (without the page's script).
            self._errors.pop("duration_hours", None)
            data["duration_hours"] = preset
        elif data.get("duration_hours") is None and "duration_hours" not in self._errors:
            self.add_error("duration_hours", "Choose a duration, or type one in hours under Other.")
        return data

    def asked_hours(self) -> Decimal | None:
        """The hours asked, even when out of bounds, so the preview judges what was typed."""
        if not self.is_bound:
            return None
        self.is_valid()
        if self.cleaned_data.get("duration_hours") is not None:
            return self.cleaned_data["duration_hours"]
        try:
            hours = Decimal(str(self.data.get("duration_hours", "")).strip())
        except (TypeError, ValueError, InvalidOperation):
            return None
        return min(hours, Decimal(10**6)) if hours.is_finite() and hours > 0 else None


def local_zone(name: str | None) -> str:
    """A time zone the server knows, else the portal's (UTC by default)."""
    if not name:
        return settings.TIME_ZONE
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return settings.TIME_ZONE
    return name


class AccessRequestForm(BoundedDurationForm):
    """For whom, for how long, from when, and why; the maximum comes from the entitlements' policy.

    One entitlement is the page's own; `also` (ids, from the catalogue's selection) adds others asked
    for together: one justification, one request and one decision each. The start is typed in the
    person's time zone (`time_zone`, filled from the browser) and kept in UTC.
    """

    beneficiary = forms.ModelChoiceField(label="For", queryset=None, empty_label=None)
    duration_hours = duration_hours_field("Other duration (hours)")
    start_at = forms.DateTimeField(
        label="Start later (optional)",
        required=False,
        input_formats=[DATETIME_LOCAL, "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
        help_text="Leave empty to start as soon as it is approved.",
    )
    time_zone = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)
    justification = forms.CharField(
        label="Justification", required=False, max_length=FREE_TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3})
    )
    ticket = forms.CharField(label="Ticket", required=False, max_length=100)
    # The declared intent of a machine's access (issue 14): shown when a machine identity is chosen.
    intent_task = forms.CharField(label="Task id", required=False, max_length=200, help_text="T-123, INC-7781")
    intent_action = forms.CharField(label="Action", required=False, max_length=100, help_text="read, restart, deploy")
    intent_resource = forms.CharField(label="Resource", required=False, max_length=300, help_text="db/orders")
    intent = forms.CharField(
        label="The task in words",
        required=False,
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    INTENT_FIELDS = ("intent_task", "intent_action", "intent_resource", "intent")

    def __init__(self, *args, entitlement, beneficiaries, requestable=None, also=(), time_zone=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.entitlement = entitlement
        # The others asked for together: any unknown or unrequestable id is left out, not refused.
        others = (requestable if requestable is not None else Entitlement.objects.none()).exclude(pk=entitlement.pk)
        self.together = [entitlement, *self._chosen_also(others, also)]
        self.fields["beneficiary"].queryset = beneficiaries
        self.fields["beneficiary"].label_from_instance = lambda identity: (
            f"{identity.name} (you)"
            if identity.is_human
            else f"{identity.name} ({identity.get_kind_display().lower()} you own)"
        )
        # Together, each is asked for the same time, cut to its own maximum: the longest bounds the choice.
        longest = max(e.effective_max_duration for e in self.together)
        self.max_hours = hours_of(longest)
        words = duration_words(longest)
        if len(self.together) == 1:
            self.too_long = f"The maximum duration for this entitlement is {words}."
            help_text = f"In hours: at most {self.max_hours} ({words}, the maximum for this entitlement)."
        else:
            self.too_long = f"The longest maximum of these entitlements is {words}."
            help_text = f"In hours: at most {self.max_hours} ({words}); each is cut to its own maximum."
        self.bound_duration(self.max_hours, self.too_long, help_text)
        default = min(settings.DEFAULT_DURATION_BY_RISK[entitlement.risk_tier], longest)
        self.default_hours = hours_of(default)
        self.offer_presets(longest, default)
        self.initial.setdefault("duration_hours", self.default_hours)
        self.time_zone = local_zone(time_zone)
        self.initial.setdefault("time_zone", self.time_zone)
        justification = self.fields["justification"]
        if any(e.justification_required for e in self.together):
            justification.required = True
            justification.error_messages["required"] = "A justification is required for this entitlement."
        if any(e.ticket_required for e in self.together):
            self.fields["ticket"].required = True
            self.fields["ticket"].error_messages["required"] = "A ticket reference is required for this entitlement."

    def _chosen_also(self, others, also) -> list:
        """The other entitlements asked for together: those posted, or those the catalogue passed."""
        posted = getattr(self.data, "getlist", lambda name: [])
        ids = posted("also") if self.is_bound else list(also)
        wanted = [int(i) for i in ids if str(i).isdigit()][:MAX_TOGETHER]
        if not wanted:
            return []
        return list(others.filter(pk__in=wanted).order_by("system__name", "name", "pk"))

    @property
    def machine_ids(self) -> str:
        """The beneficiaries that are machines, for the page's script that shows the intent fields."""
        return ",".join(str(i.pk) for i in self.fields["beneficiary"].queryset if not i.is_human)

    def intent_shown(self) -> bool:
        """The intent fields start visible when the chosen beneficiary is a machine."""
        chosen = self["beneficiary"].value()
        return any(str(i.pk) == str(chosen) and not i.is_human for i in self.fields["beneficiary"].queryset)

    def clean_time_zone(self) -> str:
        return local_zone(self.cleaned_data.get("time_zone"))

    def clean(self):
        data = super().clean()
        beneficiary = data.get("beneficiary")
        if beneficiary is not None and beneficiary.is_human:
            for name in self.INTENT_FIELDS:
                if data.get(name):
                    self.add_error(name, "Only for a request for a machine identity; say why in the justification.")
        if data.get("start_at") is not None:
            data["start_at"] = self._in_zone(data["start_at"], data.get("time_zone") or self.time_zone)
        return data

    @staticmethod
    def _in_zone(value: datetime, zone: str) -> datetime:
        """The wall-clock time typed, read in the person's zone (the field read it as UTC)."""
        wall = timezone.make_naive(value, timezone.get_current_timezone())
        return timezone.make_aware(wall, zoneinfo.ZoneInfo(zone))

    def intent_data(self) -> dict:
        data = getattr(self, "cleaned_data", {})
        return {name: data.get(name) or "" for name in self.INTENT_FIELDS}

    def preview_facts(self) -> tuple[object | None, dict]:
        """Lenient parse for the live preview: whatever is valid so far (the form need not be complete)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        hours = self.asked_hours()
        return data.get("beneficiary"), {
            "duration": duration_of(hours) if hours else None,
            "justification": data.get("justification") or "",
            "ticket": data.get("ticket") or "",
            "start_at": data.get("start_at"),
            **self.intent_data(),
        }


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=Decision.choices)
    comment = forms.CharField(
        label="Comment (required to deny)",
        required=False,
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    stage_position = forms.IntegerField(required=False, min_value=1)


class ExtendForm(BoundedDurationForm):
    duration_hours = duration_hours_field("Other extra time (hours)")
    justification = forms.CharField(
        label="Why you still need it",
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        required=True,
    )
    ticket = forms.CharField(label="Ticket", required=False, max_length=100)

    def __init__(self, *args, grant, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["duration_preset"].label = "Extra time"
        entitlement = grant.entitlement
        # What is left plus the extension may not outrun one grant's maximum from now.
        left = max((grant.expires_at or timezone.now()) - timezone.now(), timedelta(0))
        cap = entitlement.effective_max_duration
        self.max_hours = hours_of(cap - left)
        room = duration_of(self.max_hours)
        self.limit = (
            f"up to {duration_words(room)} more, because the total is capped at {duration_words(cap)} "
            f"from now and it has {duration_words(left)} left"
        )
        self.too_long = (
            f"At most {duration_words(room)} more: the total is capped at {duration_words(cap)} from now "
            f"and it has {duration_words(left)} left."
        )
        self.bound_duration(self.max_hours, self.too_long, "In hours.")
        default = min(settings.DEFAULT_DURATION_BY_RISK[entitlement.risk_tier], room)
        self.default_hours = hours_of(default)
        self.offer_presets(room, default)
        self.initial.setdefault("duration_hours", self.default_hours)
        self.fields["justification"].error_messages["required"] = "Say why the access must continue."
        if entitlement.ticket_required:
            self.fields["ticket"].required = True


class ReasonForm(forms.Form):
    reason = forms.CharField(label="Reason (optional)", required=False, max_length=FREE_TEXT_MAX_LENGTH)


class NoRenewForm(forms.Form):
    note = forms.CharField(label="Note (optional)", required=False, max_length=FREE_TEXT_MAX_LENGTH)
