"""Forms for the inventory pages: they parse input; the services decide."""

import json
from datetime import datetime, timedelta
from decimal import Decimal

from django import forms
from django.db.models import Q

from .choices import IdentityKind, IdentityStatus, RiskTier
from .models import Entitlement, Identity, System
from .services.identities import EDITABLE_FIELDS, USAGE_FIELDS

# What an owner edits in the browser; the connector and external id stay with admins and imports.
SYSTEM_FORM_FIELDS = ["name", "description", "owner", "criticality"]
# Fields meaningful only for non-human identities (hidden on a person's edit form).
MACHINE_ONLY_FIELDS = [
    "credential_type",
    "secret_location",
    "last_rotated_at",
    "rotation_period_days",
    "may_self_request",
]


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


SECONDS = "%Y-%m-%dT%H:%M:%S"


class DelegateForm(forms.Form):
    """Add a delegate by login or email, or remove one by id (whatever their status now)."""

    # A login or an email, not a list of every person in the organisation.
    delegate = forms.CharField(label="Person (login or email)", max_length=254, required=False)
    delegate_id = forms.IntegerField(required=False, widget=forms.HiddenInput)
    reason = forms.CharField(label="Why (optional)", required=False, max_length=500)

    def clean(self):
        data = super().clean()
        if data.get("delegate_id"):
            found = Identity.objects.filter(pk=data["delegate_id"], user__isnull=False).first()
            if found is None:
                raise forms.ValidationError("No such delegate.")
        else:
            value = (data.get("delegate") or "").strip()
            if not value:
                raise forms.ValidationError("Give the person's login or email.")
            found = (
                active_people()
                .filter(Q(user__username__iexact=value) | Q(email__iexact=value), user__isnull=False)
                .first()
            )
            if found is None:
                raise forms.ValidationError(f"No active person signs in as {value!r}.")
        data["person"] = found
        return data


class ReasonForm(forms.Form):
    """The reason every suspension, offboarding and retirement records in the audit trail."""

    reason = forms.CharField(label="Reason", max_length=500, widget=forms.Textarea(attrs={"rows": 2}))


class IdentityForm(forms.ModelForm):
    """The descriptive and credential facts an owner keeps true (owner and status have their own actions).

    The fields are the service's EDITABLE_FIELDS, so the form can never offer what identity_update refuses.
    """

    class Meta:
        model = Identity
        fields = EDITABLE_FIELDS
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "last_rotated_at": forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format=SECONDS),
            "last_used_at": forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format=SECONDS),
        }

    def __init__(self, *args, admin: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["manager"].queryset = active_people()
        if not admin:
            for name in USAGE_FIELDS:
                del self.fields[name]
        if self.instance.pk and self.instance.kind == IdentityKind.HUMAN:
            for name in MACHINE_ONLY_FIELDS:
                del self.fields[name]
        elif self.instance.pk and self.instance.kind != IdentityKind.AI_AGENT:
            del self.fields["may_self_request"]

    def changes(self) -> dict:
        """Only what the person changed: a field sent back as shown must not rewrite the stored value.

        The times are shown to the second, so a usage time with microseconds, sent back as shown,
        counts as unchanged (it feeds the stale and rotation findings).
        """
        changed = {}
        for name in self.changed_data:
            if name not in EDITABLE_FIELDS:
                continue
            value, stored = self.cleaned_data[name], getattr(self.instance, name)
            if isinstance(stored, datetime) and value is not None and stored.replace(microsecond=0) == value:
                continue
            changed[name] = value
        return changed


class IdentityCreateForm(IdentityForm):
    """Register an identity. Admins register anyone; everyone else registers machines they will own."""

    kind = forms.ChoiceField(choices=IdentityKind.choices, label="Kind")
    owner = forms.ModelChoiceField(queryset=Identity.objects.none(), required=False, label="Owner")

    class Meta(IdentityForm.Meta):
        fields = ["kind", "owner", *EDITABLE_FIELDS]

    def __init__(self, *args, admin: bool = True, me: Identity | None = None, **kwargs):
        super().__init__(*args, admin=admin, **kwargs)
        owner = self.fields["owner"]
        owner.queryset = active_people()
        owner.help_text = "Required for a non-human identity; empty for a person."
        if not admin:
            # Everyone else registers machines they will own themselves: offer nothing they would be refused.
            self.fields["kind"].choices = [c for c in IdentityKind.choices if c[0] != IdentityKind.HUMAN]
            owner.queryset = Identity.objects.filter(pk=me.pk if me else None)
            owner.required, owner.empty_label = True, None
            owner.help_text = (
                "You will own it. An admin can register it for someone else, or you can hand it over later."
            )
        self.order_fields(["kind", "name", "owner"])

    def _post_clean(self):
        # No model validation here: identity_create validates the new row and names the field at
        # fault ("owner: Required for non-human identities."), where a constraint error would not.
        pass

    def changes(self) -> dict:
        return {name: self.cleaned_data[name] for name in EDITABLE_FIELDS if name in self.cleaned_data}


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
        fields = SYSTEM_FORM_FIELDS
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = active_people()


class EntitlementForm(forms.ModelForm):
    max_duration_hours = forms.DecimalField(
        label="Maximum duration (hours)",
        min_value=Decimal("0.01"),
        max_value=24 * 366,
        decimal_places=2,
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
                hours = (Decimal(self.instance.max_duration.total_seconds()) / 3600).quantize(Decimal("0.01"))
                self.initial["max_duration_hours"] = (
                    hours.quantize(Decimal(1)) if hours == hours.to_integral() else hours
                )

    def clean_approval_stages(self):
        try:
            return json.loads(self.cleaned_data["approval_stages"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None

    def changes(self) -> dict:
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        hours = self.cleaned_data.get("max_duration_hours")
        if self.instance.pk and "max_duration_hours" not in self.changed_data:
            data["max_duration"] = self.instance.max_duration  # shown rounded; sent back as shown, kept exact
        else:
            data["max_duration"] = timedelta(seconds=round(hours * 3600)) if hours else None
        data["approval_stages"] = self.cleaned_data["approval_stages"]
        data["allowed_identity_kinds"] = list(self.cleaned_data["allowed_identity_kinds"])
        return data
