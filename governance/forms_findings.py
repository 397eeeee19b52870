"""Forms of the fixes a finding offers (governance.services.finding_fixes): one per fix that asks for input."""

from datetime import datetime, time, timedelta

from django import forms
from django.utils import timezone

from audit.kernel.text import FREE_TEXT_MAX_LENGTH

from .choices import FindingExceptionStatus, FindingKind
from .forms import PersonField
from .services.finding_fixes import (
    ACCEPT,
    ASSIGN_ENTITLEMENT_OWNER,
    ASSIGN_OWNER,
    CONVERT_TO_JIT,
    MARK_ROTATED,
    MAX_ACCEPT_DAYS,
    REVOKE,
    REVOKE_ONE,
    SECRET_MOVED,
    SUSPEND,
    conflicting_grants,
)


class AssignOwnerForm(forms.Form):
    owner = PersonField(label="New owner")
    reason = forms.CharField(label="Reason (optional)", max_length=FREE_TEXT_MAX_LENGTH, required=False)

    def arguments(self) -> dict:
        return {"owner": self.cleaned_data["owner"], "reason": self.cleaned_data["reason"]}


class MarkRotatedForm(forms.Form):
    evidence = forms.CharField(
        label="Evidence",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="How it was rotated: a ticket, a change, the secret's new version.",
    )

    def arguments(self) -> dict:
        return {"evidence": self.cleaned_data["evidence"]}


class SuspendForm(forms.Form):
    reason = forms.CharField(
        label="Why it is suspended",
        max_length=FREE_TEXT_MAX_LENGTH,
        help_text="Its access ends now and its tokens stop working; reactivate it if it turns out to be needed.",
    )

    def arguments(self) -> dict:
        return {"reason": self.cleaned_data["reason"]}


class SecretMovedForm(forms.Form):
    evidence = forms.CharField(
        label="Where the secret now lives",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Its path in the secrets manager, or the change that moved it. Revoke the old copy too.",
    )

    def arguments(self) -> dict:
        return {"evidence": self.cleaned_data["evidence"]}


class RevokeOneForm(forms.Form):
    """Which of the conflicting grants goes: built for the finding (its grants in force)."""

    needs_finding = True
    grant = forms.TypedChoiceField(label="The grant to revoke", coerce=int, widget=forms.RadioSelect)
    reason = forms.CharField(label="Reason (optional)", max_length=FREE_TEXT_MAX_LENGTH, required=False)

    def __init__(self, *args, finding, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["grant"].choices = [
            (grant.pk, f"{grant.entitlement.system.name} / {grant.entitlement.name} (grant #{grant.pk})")
            for grant in conflicting_grants(finding)
        ]

    def arguments(self) -> dict:
        return {"grant_id": self.cleaned_data["grant"], "reason": self.cleaned_data["reason"]}


class RevokeForm(forms.Form):
    reason = forms.CharField(label="Reason (optional)", max_length=FREE_TEXT_MAX_LENGTH, required=False)

    def arguments(self) -> dict:
        return {"reason": self.cleaned_data["reason"]}


class ConvertForm(forms.Form):
    """Nothing to type: the page says what will happen, the button confirms it."""

    def arguments(self) -> dict:
        return {}


class AcceptForm(forms.Form):
    reason = forms.CharField(
        label="Why this risk is acceptable for now",
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    until = forms.DateField(
        label="Accepted until",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=f"The last day it is accepted (at most {MAX_ACCEPT_DAYS} days); the finding reopens after it.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        today = timezone.localdate()
        self.fields["until"].widget.attrs.update(
            min=(today + timedelta(days=1)).isoformat(), max=(today + timedelta(days=MAX_ACCEPT_DAYS)).isoformat()
        )

    def arguments(self) -> dict:
        # The end of the chosen day where the user is: "until the 30th" includes the 30th.
        end = datetime.combine(self.cleaned_data["until"], time(23, 59, 59))
        return {"reason": self.cleaned_data["reason"], "until": timezone.make_aware(end)}


FIX_FORMS: dict[str, type[forms.Form]] = {
    ASSIGN_OWNER: AssignOwnerForm,
    MARK_ROTATED: MarkRotatedForm,
    REVOKE: RevokeForm,
    CONVERT_TO_JIT: ConvertForm,
    ACCEPT: AcceptForm,
    SUSPEND: SuspendForm,
    SECRET_MOVED: SecretMovedForm,
    ASSIGN_ENTITLEMENT_OWNER: AssignOwnerForm,
    REVOKE_ONE: RevokeOneForm,
}


class ExceptionFilterForm(forms.Form):
    status = forms.ChoiceField(
        label="Status",
        choices=[*FindingExceptionStatus.choices, ("all", "Any")],
        required=False,
        initial=FindingExceptionStatus.ACTIVE,
    )
    kind = forms.ChoiceField(label="Kind", choices=[("", "Any"), *FindingKind.choices], required=False)
    q = forms.CharField(label="Subject or reason", required=False, widget=forms.TextInput(attrs={"type": "search"}))
    accepted_by = forms.CharField(label="Accepted by", required=False, widget=forms.TextInput(attrs={"type": "search"}))
