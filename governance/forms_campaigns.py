"""Forms for certification campaigns and review decisions: they parse input; the services decide.

Scopes can name thousands of entitlements and people, so those are typed in (one per line) and
resolved in one query, never offered as a list of everything. Times are read in the time zone the
person picks (their browser's, filled in by static/js/time-zone.js), and stored in UTC.
"""

import re
import zoneinfo
from datetime import UTC, datetime, timedelta

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Q
from django.utils import timezone

from audit.kernel.text import FREE_TEXT_MAX_LENGTH

from .choices import GrantKind, IdentityKind, LifecycleStatus, RiskTier
from .forms import PeopleWidget, find_person, person_text
from .models import Entitlement, Identity, System
from .models.certification import (
    Decision,
    RemediationTiming,
    ReviewerSource,
    UndecidedRule,
    default_undecided_by_tier,
)

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"
LOCAL_INPUTS = [DATETIME_LOCAL, "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]
ENTITLEMENT_SEPARATOR = " / "
TIME_ZONE_SESSION_KEY = "time_zone"


def _lines(text: str) -> list[str]:
    """Non-empty lines (or comma-separated parts of a line), stripped, in order, without repeats."""
    parts = [part.strip() for part in re.split(r"[\n,]", text or "")]
    return list(dict.fromkeys(part for part in parts if part))


def _local_field(label: str, *, required: bool, help_text: str = "") -> forms.DateTimeField:
    return forms.DateTimeField(
        label=label,
        required=required,
        input_formats=LOCAL_INPUTS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
        help_text=help_text,
    )


def _group_choices(blank: str) -> list[tuple[str, str]]:
    return [("", blank), *((name, name) for name in Group.objects.order_by("name").values_list("name", flat=True))]


def _entitlement_line(line: str) -> tuple[str | None, str]:
    """("System", "name") from "System / name"; (None, line) for a name alone."""
    system, separator, name = line.rpartition(ENTITLEMENT_SEPARATOR)
    return (system.strip(), name.strip()) if separator and system.strip() and name.strip() else (None, line)


def time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones())]


class CampaignForm(forms.Form):
    """A campaign's definition; `fields()` gives what `campaign_create`/`campaign_update` take."""

    name = forms.CharField(label="Name", max_length=200)
    description = forms.CharField(
        label="Description", required=False, max_length=FREE_TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3})
    )
    # What is reviewed
    review_grants = forms.BooleanField(
        label="Review the access granted", required=False, help_text="One item per grant in scope."
    )
    review_identities = forms.BooleanField(
        label="Review the non-human identities themselves",
        required=False,
        help_text="One item per service account, API key, workload or agent in scope: its owner attests it is still "
        "needed (revoking suspends it). Only identity kinds, owners and teams narrow these.",
    )
    # Scope: every part left empty selects everything.
    systems = forms.ModelMultipleChoiceField(
        label="Systems",
        required=False,
        queryset=System.objects.none(),
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="None chosen: every system.",
    )
    entitlements = forms.CharField(
        label="Entitlements",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="One per line: “System / entitlement”, or the entitlement's name alone when only one system has it. "
        "Empty: every entitlement.",
    )
    risk_tiers = forms.MultipleChoiceField(
        label="Risk tiers", required=False, choices=RiskTier.choices, widget=forms.CheckboxSelectMultiple
    )
    identity_kinds = forms.MultipleChoiceField(
        label="Identity kinds", required=False, choices=IdentityKind.choices, widget=forms.CheckboxSelectMultiple
    )
    owners = forms.CharField(
        label="Owners",
        required=False,
        widget=PeopleWidget(attrs={"rows": 2, "spellcheck": "false"}),
        help_text="People whose identities, entitlements or systems are reviewed: one login, email or name per line "
        "(type part of a name to pick from a list). "
        "Empty: anyone's.",
    )
    teams = forms.MultipleChoiceField(
        label="Teams",
        required=False,
        choices=[],
        widget=forms.SelectMultiple(attrs={"size": 4}),
        help_text="None chosen: every team.",
    )
    grant_kinds = forms.MultipleChoiceField(
        label="Grant kinds", required=False, choices=GrantKind.choices, widget=forms.CheckboxSelectMultiple
    )
    # Who reviews
    reviewer = forms.ChoiceField(label="Reviewer", choices=ReviewerSource.choices)
    reviewer_group = forms.ChoiceField(label="Reviewer group", required=False, help_text="When a named group reviews.")
    fallback_group = forms.ChoiceField(
        label="Fallback group",
        help_text="Reviews what has no reviewer, an offboarded one, or one who would review their own access.",
    )
    second_stage = forms.BooleanField(label="Second stage for high and critical items", required=False)
    second_stage_reviewer = forms.ChoiceField(label="Second-stage reviewer", choices=ReviewerSource.choices)
    second_stage_group = forms.ChoiceField(label="Second-stage group", required=False)
    # When
    time_zone = forms.ChoiceField(label="Time zone of the dates below", choices=[])
    starts_at = _local_field("Starts", required=False, help_text="Empty: when launched.")
    due_at = _local_field("Due", required=True)
    # What happens to items nobody decided by the due date, per risk tier
    undecided_low = forms.ChoiceField(label="Undecided low-risk items", choices=UndecidedRule.choices)
    undecided_medium = forms.ChoiceField(label="Undecided medium-risk items", choices=UndecidedRule.choices)
    undecided_high = forms.ChoiceField(label="Undecided high-risk items", choices=UndecidedRule.choices)
    undecided_critical = forms.ChoiceField(label="Undecided critical items", choices=UndecidedRule.choices)
    remediation = forms.ChoiceField(label="Carry out revocations", choices=RemediationTiming.choices)
    recurrence_days = forms.IntegerField(
        label="Repeat every (days)", required=False, min_value=1, help_text="Empty: once."
    )

    def __init__(self, *args, campaign=None, time_zone: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["systems"].queryset = System.objects.filter(status=LifecycleStatus.ACTIVE).order_by("name")
        teams = Identity.objects.exclude(team="").order_by("team").values_list("team", flat=True).distinct()
        self.fields["teams"].choices = [(team, team) for team in teams]
        for name in ("reviewer_group", "second_stage_group"):
            self.fields[name].choices = _group_choices("—")
        self.fields["fallback_group"].choices = _group_choices("—")[1:]
        self.fields["time_zone"].choices = time_zone_choices()
        # Nothing chosen yet (a new form, no zone remembered): the browser's zone is filled in.
        fresh = not self.is_bound and campaign is None and time_zone is None
        self.fields["time_zone"].widget.attrs["data-browser-time-zone"] = "" if fresh else "keep"
        zone = time_zone if time_zone in zoneinfo.available_timezones() else settings.TIME_ZONE
        self.initial.setdefault("time_zone", zone)
        defaults = default_undecided_by_tier()
        for tier in RiskTier.values:
            self.initial.setdefault(f"undecided_{tier}", defaults[tier])
        self.initial.setdefault("review_grants", True)
        self.initial.setdefault("fallback_group", "admin")
        self.initial.setdefault("reviewer", ReviewerSource.ENTITLEMENT_OWNER)
        self.initial.setdefault("second_stage_reviewer", ReviewerSource.SYSTEM_OWNER)
        self.initial.setdefault("remediation", RemediationTiming.AT_DECISION)
        if campaign is not None:
            self._show(campaign, zone)

    def _show(self, campaign, zone: str) -> None:
        """A draft's definition as the form shows it (people and entitlements as text, times in `zone`)."""
        scope = campaign.scope or {}
        local = zoneinfo.ZoneInfo(zone)
        entitlements = Entitlement.objects.filter(pk__in=scope.get("entitlements", [])).select_related("system")
        owners = Identity.objects.filter(pk__in=scope.get("owners", [])).select_related("user")
        self.initial.update(
            name=campaign.name,
            description=campaign.description,
            review_grants=campaign.review_grants,
            review_identities=campaign.review_identities,
            systems=scope.get("systems", []),
            entitlements="\n".join(f"{e.system.name}{ENTITLEMENT_SEPARATOR}{e.name}" for e in entitlements),
            risk_tiers=scope.get("risk_tiers", []),
            identity_kinds=scope.get("identity_kinds", []),
            owners="\n".join(person_text(owner) for owner in owners),
            teams=scope.get("teams", []),
            grant_kinds=scope.get("grant_kinds", []),
            reviewer=campaign.reviewer,
            reviewer_group=campaign.reviewer_group,
            fallback_group=campaign.fallback_group,
            second_stage=campaign.second_stage,
            second_stage_reviewer=campaign.second_stage_reviewer,
            second_stage_group=campaign.second_stage_group,
            starts_at=campaign.starts_at and timezone.localtime(campaign.starts_at, local).replace(tzinfo=None),
            due_at=timezone.localtime(campaign.due_at, local).replace(tzinfo=None),
            remediation=campaign.remediation,
            recurrence_days=campaign.recurrence_days,
            **{f"undecided_{tier}": rule for tier, rule in (campaign.undecided or {}).items()},
        )
        # A campaign's teams may no longer exist in the inventory: keep them choosable.
        known = {value for value, _ in self.fields["teams"].choices}
        self.fields["teams"].choices += [(t, t) for t in scope.get("teams", []) if t not in known]

    def clean_entitlements(self) -> list[int]:
        """Each line names one live entitlement, as "System / name" or by a name only one system has."""
        lines = _lines(self.cleaned_data["entitlements"])
        if not lines:
            return []
        parsed = [_entitlement_line(line) for line in lines]
        wanted = Q()
        for system, name in parsed:
            wanted |= Q(name__iexact=name) if system is None else Q(name__iexact=name, system__name__iexact=system)
        found = list(
            Entitlement.objects.filter(status=LifecycleStatus.ACTIVE)
            .filter(wanted)
            .values_list("pk", "name", "system__name")
        )
        ids, errors = [], []
        for line, (system, name) in zip(lines, parsed, strict=True):
            matches = [
                pk
                for pk, n, s in found
                if n.lower() == name.lower() and (system is None or s.lower() == system.lower())
            ]
            if not matches:
                errors.append(f"No live entitlement “{line}”.")
            elif len(matches) > 1:
                errors.append(f"“{line}” is in several systems: write “System / {line}”.")
            else:
                ids.append(matches[0])
        if errors:
            raise forms.ValidationError(errors)
        return list(dict.fromkeys(ids))

    def clean_owners(self) -> list[int]:
        ids, errors = [], []
        for text in _lines(self.cleaned_data["owners"]):
            try:
                ids.append(find_person(text).pk)
            except forms.ValidationError as error:
                errors.append(f"{text}: {error.messages[0]}")
        if errors:
            raise forms.ValidationError(errors)
        return list(dict.fromkeys(ids))

    def clean(self):
        data = super().clean()
        if not data.get("review_grants") and not data.get("review_identities"):
            self.add_error("review_grants", "Review the access granted, the identities themselves, or both.")
        zone = zoneinfo.ZoneInfo(data.get("time_zone") or settings.TIME_ZONE)
        for name in ("starts_at", "due_at"):
            value = data.get(name)
            if value is not None:
                # Django read it in the server's zone; the person meant theirs.
                naive = timezone.make_naive(value, timezone.get_current_timezone())
                data[name] = timezone.make_aware(naive, zone).astimezone(UTC)
        return data

    def campaign_fields(self) -> dict:
        """The campaign's fields, as the services take them."""
        data = self.cleaned_data
        scope_parts = ("systems", "entitlements", "risk_tiers", "identity_kinds", "owners", "teams", "grant_kinds")
        scope = {}
        for part in scope_parts:
            values = data.get(part) or []
            if part == "systems":
                values = [system.pk for system in values]
            if values:
                scope[part] = list(values)
        return {
            "name": data["name"],
            "description": data["description"],
            "scope": scope,
            "review_grants": data["review_grants"],
            "review_identities": data["review_identities"],
            "reviewer": data["reviewer"],
            "reviewer_group": data["reviewer_group"],
            "fallback_group": data["fallback_group"],
            "second_stage": data["second_stage"],
            "second_stage_reviewer": data["second_stage_reviewer"],
            "second_stage_group": data["second_stage_group"],
            "starts_at": data["starts_at"],
            "due_at": data["due_at"],
            "undecided": {tier: data[f"undecided_{tier}"] for tier in RiskTier.values},
            "remediation": data["remediation"],
            "recurrence_days": data["recurrence_days"],
        }


def default_due(days: int = 14) -> datetime:
    return (timezone.now() + timedelta(days=days)).replace(minute=0, second=0, microsecond=0)


class CancelForm(forms.Form):
    reason = forms.CharField(
        label="Why it is cancelled", max_length=FREE_TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3})
    )


#
# Reviewing
#
class ItemFilterForm(forms.Form):
    """A campaign's items: by reviewer (a login or a group's name), decision, recommendation, risk."""

    reviewer = forms.CharField(label="Reviewer (login)", required=False)
    decision = forms.ChoiceField(
        label="Decision", required=False, choices=[("", "Any"), ("open", "Not decided"), *Decision.choices]
    )
    recommendation = forms.ChoiceField(label="Recommendation", required=False, choices=[("", "Any"), *Decision.choices])
    risk_tier = forms.ChoiceField(label="Risk tier", required=False, choices=[("", "Any"), *RiskTier.choices])


class QueueFilterForm(forms.Form):
    """The reviewer's queue: group by, narrow, sort."""

    GROUPS = [("identity", "Identity"), ("entitlement", "Entitlement")]
    SORTS = [
        ("risk", "Risk, highest first"),
        ("recommendation", "Revoke recommended first"),
        ("due", "Due soonest"),
        ("last_used", "Least recently used"),
        ("name", "Name"),
    ]

    group = forms.ChoiceField(label="Group by", choices=GROUPS, required=False)
    campaign = forms.TypedChoiceField(label="Campaign", choices=[], coerce=int, empty_value=None, required=False)
    recommendation = forms.ChoiceField(label="Recommendation", choices=[("", "Any"), *Decision.choices], required=False)
    risk_tier = forms.ChoiceField(label="Risk tier", choices=[("", "Any"), *RiskTier.choices], required=False)
    order = forms.ChoiceField(label="Sort", choices=SORTS, required=False)

    def __init__(self, *args, campaigns=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["campaign"].choices = [("", "Any"), *((c.pk, c.name) for c in campaigns)]


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(label="Decision", choices=Decision.choices)
    comment = forms.CharField(label="Comment", required=False, max_length=FREE_TEXT_MAX_LENGTH)


class BulkDecisionForm(DecisionForm):
    items = forms.TypedMultipleChoiceField(label="Items", coerce=int, choices=[])
    comment = forms.CharField(
        label="Comment for the selection",
        required=False,
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required to revoke a selection: the holders and auditors read it.",
    )

    def __init__(self, *args, item_ids=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["items"].choices = [(pk, pk) for pk in item_ids]
        self.fields["items"].error_messages.update(
            required="Choose at least one item.", invalid_choice="Choose among your open items."
        )


class ReassignForm(forms.Form):
    reviewer = forms.CharField(
        label="New reviewer (login name)", max_length=150, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )
    reason = forms.CharField(label="Why", max_length=FREE_TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_reviewer(self):
        login = self.cleaned_data["reviewer"].strip()
        user = get_user_model().objects.filter(username__iexact=login, is_active=True).first()
        if user is None:
            raise forms.ValidationError("No active login with that name.")
        return user
