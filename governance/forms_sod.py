"""The separation-of-duties pages' forms and list filter: they parse input; the catalogue services decide."""

import django_filters
from django import forms
from django.db.models import Q

from audit.kernel.text import FREE_TEXT_MAX_LENGTH

from .choices import LifecycleStatus, Severity, SodAction
from .models import Entitlement, SodRule

ACTIVE_CHOICES = [("active", "Active"), ("inactive", "Inactive")]


def entitlement_label(entitlement: Entitlement) -> str:
    label = f"{entitlement.system.name} / {entitlement.name}"
    return (
        label if entitlement.is_live and entitlement.system.status == LifecycleStatus.ACTIVE else f"{label} (retired)"
    )


class SodRuleForm(forms.Form):
    """Create or edit a rule. Offers live entitlements, plus those the rule already covers (so an edit
    of its name never drops one silently); the service refuses adding a retired one anyway."""

    name = forms.CharField(label="Name", max_length=200)
    entitlements = forms.ModelMultipleChoiceField(
        label="Entitlements that must not be held together",
        queryset=Entitlement.objects.none(),
        widget=forms.SelectMultiple(attrs={"size": 12}),
        help_text="Two or more. Hold Ctrl (⌘ on a Mac) to choose several.",
    )
    severity = forms.ChoiceField(label="Severity", choices=Severity.choices, initial=Severity.HIGH)
    action = forms.ChoiceField(
        label="When someone would hold them all",
        choices=SodAction.choices,
        initial=SodAction.EXTRA_STAGE,
        widget=forms.RadioSelect,
    )
    description = forms.CharField(
        label="Description",
        required=False,
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why they conflict.",
    )

    def __init__(self, *args, rule: SodRule | None = None, **kwargs):
        if rule is not None:
            kwargs.setdefault(
                "initial",
                {
                    "name": rule.name,
                    "entitlements": [e.pk for e in rule.entitlements.all()],
                    "severity": rule.severity,
                    "action": rule.action,
                    "description": rule.description,
                },
            )
        super().__init__(*args, **kwargs)
        live = Q(status=LifecycleStatus.ACTIVE, system__status=LifecycleStatus.ACTIVE)
        if rule is not None:
            live |= Q(sod_rules=rule)
        field = self.fields["entitlements"]
        field.queryset = (
            Entitlement.objects.filter(pk__in=Entitlement.objects.filter(live).values("pk"))
            .select_related("system")
            .order_by("system__name", "name", "pk")
        )
        field.label_from_instance = entitlement_label


class SodRuleFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search", help_text="Rule, entitlement or system name")
    status = django_filters.ChoiceFilter(choices=ACTIVE_CHOICES, method="by_status", label="Status")
    severity = django_filters.ChoiceFilter(choices=Severity.choices, label="Severity")
    action = django_filters.ChoiceFilter(choices=SodAction.choices, label="Action")

    class Meta:
        model = SodRule
        fields = ["q", "status", "severity", "action"]

    def search(self, queryset, name, value):
        # A subquery, not a join: a rule matching through two of its entitlements is listed once.
        members = SodRule.entitlements.through.objects.filter(
            Q(entitlement__name__icontains=value) | Q(entitlement__system__name__icontains=value)
        )
        return queryset.filter(Q(name__icontains=value) | Q(pk__in=members.values("sodrule_id")))

    def by_status(self, queryset, name, value):
        return queryset.filter(is_active=value == "active")
