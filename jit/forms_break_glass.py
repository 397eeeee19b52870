"""Forms of the break-glass pages: they parse input; `jit.services.break_glass` decides."""

from datetime import datetime, timedelta

from django import forms
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator
from django.db.models import Q
from django.utils import timezone

from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from audit.kernel.zones import current_zone_name
from governance.models import Entitlement, Identity

from .forms import DATETIME_LOCAL
from .forms import add_service_errors as add_request_form_errors
from .policy import human_duration

SERVICE_FIELDS = {"max_duration": "max_minutes"}


def add_service_errors(form: forms.Form, error) -> bool:
    """A DomainError's field errors beside their fields; True when one found its field."""
    return add_request_form_errors(form, error, renamed=SERVICE_FIELDS)


class EligibilityChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.entitlement.system.name} / {obj.entitlement.name} (up to {human_duration(obj.max_duration)})"


class ActivationForm(forms.Form):
    """Break glass: which access, the incident, why, and the re-authentication."""

    eligibility = EligibilityChoiceField(
        label="Access", queryset=None, empty_label=None, help_text="The break-glass access you are eligible for."
    )
    incident_reference = forms.CharField(
        label="Incident reference", max_length=200, help_text="The incident's ticket or page, e.g. INC-1234."
    )
    reason = forms.CharField(
        label="Reason",
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What you must do with this access. Reviewers read it after the incident.",
    )
    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Re-enter it: break-glass needs a fresh sign-in.",
    )
    otp_token = forms.CharField(
        label="One-time code",
        max_length=12,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        help_text="The code your authenticator app shows now.",
    )

    def __init__(self, *args, eligibilities, has_device: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["eligibility"].queryset = eligibilities
        if not has_device:
            del self.fields["otp_token"]


def _local(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime(DATETIME_LOCAL) if moment else ""


class EligibilityForm(forms.Form):
    """An admin names who may break glass into which access (a new eligibility)."""

    entitlement = forms.ModelChoiceField(label="Entitlement", queryset=Entitlement.objects.none())
    identity = forms.CharField(
        label="Identity",
        required=False,
        max_length=254,
        help_text="A person's email, or a machine identity's exact name (automated incident response). "
        "Or name a group instead.",
    )
    group = forms.ChoiceField(label="Or a group", required=False, help_text="Every active member may break glass.")
    max_minutes = forms.IntegerField(
        label="Emergency duration (minutes)",
        min_value=1,
        help_text="The hard cap of each activation.",
    )
    reviewer_group = forms.ChoiceField(
        label="Reviewers", required=False, help_text="Empty: the entitlement's owner reviews each activation."
    )
    expires_at = forms.DateTimeField(
        label="Eligible until (UTC)",
        input_formats=[DATETIME_LOCAL],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
        help_text="Eligibility is access too: it ends unless reviewed and renewed.",
    )
    reason = forms.CharField(
        label="Why", required=False, max_length=FREE_TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["expires_at"].label = f"Eligible until ({current_zone_name()})"  # read in the viewer's zone
        cap = int(settings.BREAK_GLASS_MAX_DURATION.total_seconds() // 60)
        self.fields["max_minutes"].validators.append(MaxValueValidator(cap))
        self.fields["max_minutes"].widget.attrs["max"] = cap
        self.fields["max_minutes"].help_text = f"The hard cap of each activation; at most {cap} minutes (global cap)."
        groups = [("", "—")] + [(g, g) for g in Group.objects.order_by("name").values_list("name", flat=True)]
        self.fields["group"].choices = groups
        self.fields["reviewer_group"].choices = groups
        self.fields["entitlement"].queryset = (
            Entitlement.objects.filter(break_glass_eligible=True, status="active", system__status="active")
            .select_related("system")
            .order_by("system__name", "name")
        )
        if not self.is_bound and "expires_at" not in self.initial:
            self.initial["expires_at"] = _local(timezone.now() + timedelta(days=90))
            self.initial.setdefault("max_minutes", int(settings.BREAK_GLASS_DEFAULT_DURATION.total_seconds() // 60))
        if editing:
            for name in ("entitlement", "identity", "group", "expires_at"):
                del self.fields[name]

    def clean_identity(self) -> Identity | None:
        """One active identity by email or exact name (a select of every identity would not scale)."""
        text = (self.cleaned_data.get("identity") or "").strip()
        if not text:
            return None
        found = list(Identity.objects.filter(Q(email__iexact=text) | Q(name=text), status="active")[:2])
        if not found:
            raise forms.ValidationError("No active identity has this email or name.")
        if len(found) > 1:
            raise forms.ValidationError("Several identities match; give the person's email.")
        return found[0]

    def clean(self):
        data = super().clean()
        if "identity" in self.fields and bool(data.get("identity")) == bool(data.get("group")):
            self.add_error("identity", "Name either one identity or one group.")
        return data

    @property
    def max_duration(self) -> timedelta:
        return timedelta(minutes=self.cleaned_data["max_minutes"])


class RenewForm(forms.Form):
    expires_at = forms.DateTimeField(
        label="Eligible until (UTC)",
        input_formats=[DATETIME_LOCAL],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
        help_text="You confirm it is still needed; the review is recorded with your name.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["expires_at"].label = f"Eligible until ({current_zone_name()})"  # read in the viewer's zone


class RevokeForm(forms.Form):
    reason = forms.CharField(
        label="Why it ends", max_length=FREE_TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2})
    )


class EligibilityFilterForm(forms.Form):
    q = forms.CharField(
        label="Search", required=False, max_length=200, widget=forms.TextInput(attrs={"type": "search"})
    )
    state = forms.ChoiceField(
        label="State",
        required=False,
        choices=[("", "Any"), ("in_force", "In force"), ("expired", "Lapsed"), ("revoked", "Revoked")],
    )
