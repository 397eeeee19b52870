"""Forms of the logins page: who gets a login, and which roles a login holds."""

from django import forms
from django.contrib.auth import get_user_model

from .choices import IdentityKind, IdentityStatus
from .models import Identity
from .roles import Role

ROLE_HELP = {
    Role.REQUESTER: "asks for access for themself and the identities they own",
    Role.APPROVER: "decides requests routed to them",
    Role.OWNER: "keeps the identities, systems and entitlements they own true",
    Role.AUDITOR: "reads the inventory and the audit trail; changes nothing",
    Role.ADMIN: "configures the portal and manages logins",
}
ROLE_CHOICES = [(role.value, f"{role.label}: {ROLE_HELP[role]}") for role in Role]


class RolesForm(forms.Form):
    roles = forms.MultipleChoiceField(
        label="Roles", choices=ROLE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple
    )


class LoginCreateForm(RolesForm):
    identity = forms.ModelChoiceField(
        label="Person",
        queryset=Identity.objects.none(),
        help_text="An active person of the inventory without a login; the link to choose a password goes to their email.",
    )
    username = forms.CharField(label="Login name", max_length=150)
    field_order = ["identity", "username", "roles"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["identity"].queryset = Identity.objects.filter(
            kind=IdentityKind.HUMAN, status=IdentityStatus.ACTIVE, user__isnull=True
        ).order_by("name")
        self.fields["roles"].initial = [Role.REQUESTER]

    def clean_username(self):
        username = get_user_model().username_validator
        value = self.cleaned_data["username"].strip()
        username(value)
        return value
