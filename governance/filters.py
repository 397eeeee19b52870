"""Filters for the inventory lists, shared by the pages (and usable by the API)."""

import django_filters
import django_filters.fields
from django.db.models import Q

from audit.kernel.widgets import ListedChoices, QuickSelect, QuickTextInput

from . import selectors
from .choices import FindingKind, IdentityKind, IdentityStatus, LifecycleStatus, RiskTier
from .models import Entitlement, Identity, System


class _ListedFilterChoices(django_filters.fields.ModelChoiceIterator, ListedChoices):
    """django-filter's options (with its "None" choice), read in one query, not a server-side cursor."""


class _ListedFilterField(django_filters.fields.ModelChoiceField):
    iterator = _ListedFilterChoices


class ListedModelChoiceFilter(django_filters.ModelChoiceFilter):
    field_class = _ListedFilterField


# The selects and inputs render in Python (QuickSelect, QuickTextInput): Django's templates per option
# and per input cost several milliseconds a page on the lists everyone opens.
class IdentityFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search", widget=QuickTextInput)
    kind = django_filters.ChoiceFilter(choices=IdentityKind.choices, label="Kind", widget=QuickSelect)
    status = django_filters.ChoiceFilter(choices=IdentityStatus.choices, label="Status", widget=QuickSelect)
    owner = django_filters.CharFilter(method="with_owner_named", label="Owner", widget=QuickTextInput)
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

    def with_owner_named(self, queryset, name, value):
        return selectors.identities_with_owner_named(queryset, value)

    @property
    def reads_every_match(self) -> bool:
        """Whether the page's keys' query reads every matching identity, whatever its sort and page: the
        finding filter looks its identities up by key, and on PostgreSQL a search or an owner's name reads
        its matches through the trigram indexes (`selectors.identities_matching`,
        `identities_with_owner_named`). Its COUNT would read them again."""
        data = self.form.cleaned_data
        searched = any(selectors.searched_by_trigrams(data.get(field) or "") for field in ("q", "owner"))
        return bool(data.get("finding")) or searched


class SystemFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Search", widget=QuickTextInput)
    status = django_filters.ChoiceFilter(choices=LifecycleStatus.choices, label="Status", widget=QuickSelect)

    class Meta:
        model = System
        fields = ["q", "status"]


class EntitlementFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search", widget=QuickTextInput)
    system = ListedModelChoiceFilter(
        queryset=System.objects.order_by("name"), label="System", empty_label="Any", widget=QuickSelect
    )
    risk_tier = django_filters.ChoiceFilter(choices=RiskTier.choices, label="Risk tier", widget=QuickSelect)
    requestable = django_filters.BooleanFilter(
        label="Requestable", widget=QuickSelect(choices=[("", "Any"), ("true", "Yes"), ("false", "No")])
    )
    status = django_filters.ChoiceFilter(choices=LifecycleStatus.choices, label="Status", widget=QuickSelect)

    class Meta:
        model = Entitlement
        fields = ["q", "system", "risk_tier", "requestable", "status"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(business_purpose__icontains=value))
