"""Forms for the inventory pages: they parse input; the services decide."""

import json
from datetime import timedelta

from django import forms

from .choices import IdentityKind, IdentityStatus, RiskTier
from .models import Entitlement, Identity, System


def active_people():
    return Identity.objects.filter(kind=IdentityKind.HUMAN, status=IdentityStatus.ACTIVE).order_by("name")


def add_service_errors(form: forms.Form, error) -> None:
    """Show a DomainError's field errors beside their fields, the rest above the form."""
    placed = False
    for field, messages in error.field_errors.items():
        target = field if field in form.fields else None
        for message in messages:
            form.add_error(target, message)
            placed = placed or target is not None
    if not placed:
        form.add_error(None, error.message)


class ReasonForm(forms.Form):
    reason = forms.CharField(label="Reason", max_length=500, widget=forms.Textarea(attrs={"rows": 2}))


class IdentityForm(forms.ModelForm):
    """The descriptive and credential facts an owner keeps true (owner and status have their own actions)."""

    class Meta:
        model = Identity
        fields = [
            "name",
            "email",
            "team",
            "description",
            "manager",
            "credential_type",
            "secret_location",
            "last_rotated_at",
            "rotation_period_days",
            "last_used_at",
            "may_self_request",
            "external_id",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "last_rotated_at": forms.DateTimeInput(attrs={"type": "datetime-local"}),
            "last_used_at": forms.DateTimeInput(attrs={"type": "datetime-local"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["manager"].queryset = active_people()


class IdentityCreateForm(IdentityForm):
    kind = forms.ChoiceField(choices=IdentityKind.choices, label="Kind")
    owner = forms.ModelChoiceField(queryset=Identity.objects.none(), required=False, label="Owner")

    class Meta(IdentityForm.Meta):
        fields = ["kind", "owner", *IdentityForm.Meta.fields]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = active_people()
        self.order_fields(["kind", "name", "owner"])


class OwnerForm(forms.Form):
    owner = forms.ModelChoiceField(queryset=Identity.objects.none(), required=False, label="Owner")
    backup_owner = forms.ModelChoiceField(queryset=Identity.objects.none(), required=False, label="Backup owner")
    reason = forms.CharField(label="Reason", max_length=500, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = self.fields["backup_owner"].queryset = active_people()


class SystemForm(forms.ModelForm):
    class Meta:
        model = System
        fields = ["name", "description", "owner", "criticality"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = active_people()


class EntitlementForm(forms.ModelForm):
    max_duration_hours = forms.IntegerField(
        label="Maximum duration (hours)",
        min_value=1,
        required=False,
        help_text="Empty: the default for its risk tier.",
    )
    approval_stages = forms.CharField(
        label="Approval stages (JSON)",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='For example [{"approver": "entitlement_owner", "quorum": 1}, {"approver": "system_owner"}]',
    )
    allowed_identity_kinds = forms.MultipleChoiceField(
        choices=IdentityKind.choices, widget=forms.CheckboxSelectMultiple, label="Identity kinds allowed"
    )

    class Meta:
        model = Entitlement
        fields = [
            "name",
            "owner",
            "business_purpose",
            "risk_tier",
            "requestable",
            "auto_approve_machines",
            "break_glass_eligible",
            "justification_required",
            "ticket_required",
            "review_cadence_days",
        ]
        widgets = {"business_purpose": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = active_people()
        self.fields["risk_tier"].choices = RiskTier.choices
        if self.instance.pk:
            self.initial["approval_stages"] = json.dumps(self.instance.approval_stages)
            self.initial["allowed_identity_kinds"] = self.instance.allowed_identity_kinds
            if self.instance.max_duration:
                self.initial["max_duration_hours"] = int(self.instance.max_duration.total_seconds() // 3600)

    def clean_approval_stages(self):
        try:
            return json.loads(self.cleaned_data["approval_stages"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None

    def changes(self) -> dict:
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        hours = self.cleaned_data.get("max_duration_hours")
        data["max_duration"] = timedelta(hours=hours) if hours else None
        data["approval_stages"] = self.cleaned_data["approval_stages"]
        data["allowed_identity_kinds"] = list(self.cleaned_data["allowed_identity_kinds"])
        return data
