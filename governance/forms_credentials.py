from django import forms

from .token_scopes import MACHINE_SCOPES, SCOPES


class ApiTokenForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100, help_text="What uses it: a script, a pipeline, an agent.")
    scopes = forms.MultipleChoiceField(
        label="What it may reach", widget=forms.CheckboxSelectMultiple, choices=list(SCOPES.items())
    )
    expires_in_days = forms.IntegerField(
        label="Expires in (days)", min_value=1, max_value=365, initial=90,
        help_text="Bounded by the riskiest access the identity holds: 30 days for critical, 90 for high.",
    )  # fmt: skip
    allowed_networks = forms.CharField(
        label="Allowed networks (optional)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="One address or network per line (10.0.0.0/8); empty: from anywhere.",
    )

    def __init__(self, *args, machine: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if machine:
            self.fields["scopes"].choices = [(k, v) for k, v in SCOPES.items() if k in MACHINE_SCOPES]

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "scopes": data["scopes"],
            "expires_in_days": data["expires_in_days"],
            "allowed_networks": [line for line in data["allowed_networks"].splitlines() if line.strip()],
        }
