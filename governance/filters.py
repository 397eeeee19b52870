"""Filters for the inventory lists, shared by the pages (and usable by the API)."""

import django_filters
from django import forms
from django.db.models import Q

from audit.kernel.widgets import QuickSelect

from . import selectors
from .choices import FindingKind, IdentityKind, IdentityStatus, LifecycleStatus, RiskTier
from .models import Entitlement, Identity, System


# The selects render with QuickSelect (options joined in Python): Django's template per option cost
# several milliseconds a page on the lists everyone opens.
class IdentityFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    kind = django_filters.ChoiceFilter(choices=IdentityKind.choices, label="Kind", widget=QuickSelect)
    status = django_filters.ChoiceFilter(choices=IdentityStatus.choices, label="Status", widget=QuickSelect)
    owner = django_filters.CharFilter(field_name="owner__name", lookup_expr="icontains", label="Owner")
    finding = django_filters.ChoiceFilter(
        choices=FindingKind.choices, method="with_finding", label="Open finding", widget=QuickSelect
    )

    class Meta:
        model = Identity
        fields = ["q", "kind", "status", "owner", "finding"]

    def search(self, queryset, name, value):
        return selectors.identities_matching(queryset, value)

    def with_finding(self, queryset, name, value):
        return selectors.identities_with_open_finding(queryset, value)


class SystemFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Search")
    status = django_filters.ChoiceFilter(choices=LifecycleStatus.choices, label="Status", widget=QuickSelect)

    class Meta:
        model = System
        fields = ["q", "status"]


class EntitlementFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    system = django_filters.ModelChoiceFilter(
        queryset=System.objects.order_by("name"), label="System", empty_label="Any", widget=QuickSelect
    )
    risk_tier = django_filters.ChoiceFilter(choices=RiskTier.choices, label="Risk tier", widget=QuickSelect)
    requestable = django_filters.BooleanFilter(
        label="Requestable", widget=forms.Select(choices=[("", "Any"), ("true", "Yes"), ("false", "No")])
    )
    status = django_filters.ChoiceFilter(choices=LifecycleStatus.choices, label="Status", widget=QuickSelect)

    class Meta:
        model = Entitlement
        fields = ["q", "system", "risk_tier", "requestable", "status"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(business_purpose__icontains=value))
