"""Forms of the request pages: they parse input; the services decide."""

import math
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator
from django.utils import timezone

from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from governance.choices import RiskTier
from governance.models import System

from .choices import Decision, RequestStatus
from .policy import human_duration

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
    q = forms.CharField(
        label="Search", required=False, max_length=200, widget=forms.TextInput(attrs={"type": "search"})
    )
    system = forms.ModelChoiceField(label="System", queryset=System.objects.none(), required=False, empty_label="Any")
    risk_tier = forms.ChoiceField(label="Risk tier", choices=[("", "Any"), *RiskTier.choices], required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["system"].queryset = System.objects.filter(status="active").order_by("name")


class RequestFilterForm(forms.Form):
    status = forms.ChoiceField(label="Status", choices=[("", "Any"), *RequestStatus.choices], required=False)
    order = forms.ChoiceField(
        label="Sort",
        choices=[("-created_at", "Newest first"), ("created_at", "Oldest first")],
        required=False,
    )


class QueueFilterForm(forms.Form):
    risk_tier = forms.ChoiceField(label="Risk tier", choices=[("", "Any"), *RiskTier.choices], required=False)
    system = forms.ModelChoiceField(label="System", queryset=System.objects.none(), required=False, empty_label="Any")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["system"].queryset = System.objects.filter(status="active").order_by("name")


class BoundedDurationForm(forms.Form):
    """A duration in hours whose bound is the policy's, said in the policy's words, not a generic one."""

    def bound_duration(self, max_hours: Decimal, message: str, help_text: str) -> None:
        field = self.fields["duration_hours"]
        field.validators = [v for v in field.validators if not isinstance(v, MaxValueValidator)]
        field.validators.append(MaxValueValidator(max_hours, message=message))
        field.help_text = help_text
        field.widget.attrs.update(max=max_hours, min=HUNDREDTH)

    def asked_hours(self) -> Decimal | None:
        """The hours asked, even when out of bounds, so the preview judges what was typed."""
        if not self.is_bound:
            return None
        self.is_valid()
        if "duration_hours" in self.cleaned_data:
            return self.cleaned_data["duration_hours"]
        try:
            hours = Decimal(str(self.data.get("duration_hours", "")).strip())
        except (TypeError, ValueError, InvalidOperation):
            return None
        return min(hours, Decimal(10**6)) if hours.is_finite() and hours > 0 else None


class AccessRequestForm(BoundedDurationForm):
    """For whom, for how long, from when, and why; the maximum comes from the entitlement's policy."""

    beneficiary = forms.ModelChoiceField(label="For", queryset=None, empty_label=None)
    duration_hours = duration_hours_field("Duration (hours)")
    start_at = forms.DateTimeField(
        label="Start later (UTC, optional)",
        required=False,
        input_formats=[DATETIME_LOCAL, "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
        help_text="Leave empty to start as soon as it is approved.",
    )
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

    def __init__(self, *args, entitlement, beneficiaries, **kwargs):
        super().__init__(*args, **kwargs)
        self.entitlement = entitlement
        self.max_hours = hours_of(entitlement.effective_max_duration)
        self.fields["beneficiary"].queryset = beneficiaries
        self.fields["beneficiary"].label_from_instance = lambda identity: (
            f"{identity.name} (you)"
            if identity.is_human
            else f"{identity.name} ({identity.get_kind_display().lower()} you own)"
        )
        self.bound_duration(
            self.max_hours,
            f"The maximum duration for this entitlement is {human_duration(entitlement.effective_max_duration)}.",
            f"Maximum: {self.max_hours} hours for this entitlement.",
        )
        self.default_hours = min(hours_of(settings.DEFAULT_DURATION_BY_RISK[entitlement.risk_tier]), self.max_hours)
        self.initial.setdefault("duration_hours", self.default_hours)
        justification = self.fields["justification"]
        if entitlement.justification_required:
            justification.required = True
            justification.error_messages["required"] = "A justification is required for this entitlement."
        if entitlement.ticket_required:
            self.fields["ticket"].required = True
            self.fields["ticket"].error_messages["required"] = "A ticket reference is required for this entitlement."

    @property
    def machine_ids(self) -> str:
        """The beneficiaries that are machines, for the page's script that shows the intent fields."""
        return ",".join(str(i.pk) for i in self.fields["beneficiary"].queryset if not i.is_human)

    def intent_shown(self) -> bool:
        """The intent fields start visible when the chosen beneficiary is a machine."""
        chosen = self["beneficiary"].value()
        return any(str(i.pk) == str(chosen) and not i.is_human for i in self.fields["beneficiary"].queryset)

    def clean(self):
        data = super().clean()
        beneficiary = data.get("beneficiary")
        if beneficiary is not None and beneficiary.is_human:
            for name in self.INTENT_FIELDS:
                if data.get(name):
                    self.add_error(name, "Only for a request for a machine identity; say why in the justification.")
        return data

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
    duration_hours = duration_hours_field("Extra time (hours)")
    justification = forms.CharField(
        label="Why you still need it",
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        required=True,
    )
    ticket = forms.CharField(label="Ticket", required=False, max_length=100)

    def __init__(self, *args, grant, **kwargs):
        super().__init__(*args, **kwargs)
        entitlement = grant.entitlement
        # What is left plus the extension may not outrun one grant's maximum from now.
        left = max((grant.expires_at or timezone.now()) - timezone.now(), timedelta(0))
        room = entitlement.effective_max_duration - left
        self.max_hours = hours_of(room)
        limit = (
            f"It has {human_duration(left)} left and may run at most "
            f"{human_duration(entitlement.effective_max_duration)} from now"
        )
        self.bound_duration(
            self.max_hours,
            f"At most {self.max_hours} more hours: {limit.lower()}.",
            f"At most {self.max_hours} more hours. {limit}.",
        )
        self.default_hours = min(hours_of(settings.DEFAULT_DURATION_BY_RISK[entitlement.risk_tier]), self.max_hours)
        self.initial.setdefault("duration_hours", self.default_hours)
        self.fields["justification"].error_messages["required"] = "Say why the access must continue."
        if entitlement.ticket_required:
            self.fields["ticket"].required = True


class ReasonForm(forms.Form):
    reason = forms.CharField(label="Reason (optional)", required=False, max_length=FREE_TEXT_MAX_LENGTH)


class NoRenewForm(forms.Form):
    note = forms.CharField(label="Note (optional)", required=False, max_length=FREE_TEXT_MAX_LENGTH)
