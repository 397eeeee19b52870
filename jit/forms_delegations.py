"""The delegation page's form: it parses input; `services.delegations` decides."""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.utils import timezone

from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from audit.kernel.zones import current_zone_name
from governance import selectors as inventory_selectors
from governance.choices import RiskTier

from .forms import DATETIME_LOCAL
from .selectors_delegations import delegators_for, possible_delegates
from .services.delegations import DEFAULT_DAYS


class DelegationForm(forms.Form):
    """Let a machine act for you (or for a machine you own): on what, up to which risk, until when."""

    delegator = forms.ModelChoiceField(label="On behalf of", queryset=None, empty_label=None)
    delegate = forms.ModelChoiceField(
        label="Delegate to",
        queryset=None,
        empty_label="Choose a machine",
        help_text="An active service account, workload or agent.",
    )
    entitlements = forms.ModelMultipleChoiceField(
        label="Only for these entitlements (optional)",
        queryset=None,
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="None chosen: any entitlement up to the risk tier below.",
    )
    max_risk_tier = forms.ChoiceField(label="Up to risk tier", choices=RiskTier.choices, initial=RiskTier.MEDIUM)
    may_redelegate = forms.BooleanField(
        label="It may delegate further (to another machine)",
        required=False,
        help_text="An orchestrator handing tasks to worker agents needs this; most delegates do not.",
    )
    purpose = forms.CharField(
        label="Purpose",
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What the delegate may act for you on.",
    )
    expires_at = forms.DateTimeField(
        label="Expires (UTC)",
        input_formats=[DATETIME_LOCAL, "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["expires_at"].label = f"Expires ({current_zone_name()})"  # read in the viewer's zone
        delegators = self.fields["delegator"]
        delegators.queryset = delegators_for(user=user)
        delegators.label_from_instance = lambda identity: (
            f"{identity.name} (you)"
            if identity.is_human
            else f"{identity.name} ({identity.get_kind_display().lower()})"
        )
        delegate = self.fields["delegate"]
        delegate.queryset = possible_delegates()
        delegate.label_from_instance = lambda identity: f"{identity.name} ({identity.get_kind_display().lower()})"
        entitlements = self.fields["entitlements"]
        entitlements.queryset = (
            inventory_selectors.requestable_entitlements(user=user)
            .select_related("system")
            .order_by("system__name", "name", "pk")
        )
        entitlements.label_from_instance = lambda e: f"{e.system.name} / {e.name} ({e.get_risk_tier_display().lower()})"
        longest = settings.DELEGATION_MAX_DAYS
        self.fields["expires_at"].help_text = f"At most {longest} days from now."
        self.initial.setdefault(
            "expires_at", (timezone.now() + timedelta(days=min(DEFAULT_DAYS, longest))).replace(second=0, microsecond=0)
        )
