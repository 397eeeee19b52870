"""Forms of the approver's pages: the queue's filters, a decision (maybe for less), a selection, an absence."""

import zoneinfo
from datetime import datetime, timedelta

from django import forms
from django.conf import settings
from django.utils import timezone

from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from audit.kernel.widgets import ListedModelChoiceField, QuickSelect, QuickTextInput
from governance.choices import RiskTier
from governance.models import System

from .choices import Decision
from .forms import DecisionForm

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"
DATETIME_FORMATS = [DATETIME_LOCAL, "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]

ORDERS = [
    ("oldest", "Oldest first"),
    ("newest", "Newest first"),
    ("risk", "Highest risk first"),
    ("requester", "Requester, A to Z"),
]
WAITING = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "3d": timedelta(days=3), "7d": timedelta(days=7)}
WAITING_CHOICES = [
    ("", "Any time"),
    ("1h", "1 hour or more"),
    ("1d", "1 day or more"),
    ("3d", "3 days or more"),
    ("7d", "a week or more"),
]


def zone_or_default(name: str | None) -> str:
    """A time zone the server knows (the browser's, sent in a hidden field), else the portal's."""
    return name if name and name in zoneinfo.available_timezones() else settings.TIME_ZONE


def in_zone(value: datetime | None, zone: str) -> datetime | None:
    """The wall-clock time typed, read in the person's zone (the field read it in the server's)."""
    if value is None:
        return None
    wall = timezone.make_naive(value, timezone.get_current_timezone())
    return timezone.make_aware(wall, zoneinfo.ZoneInfo(zone_or_default(zone)))


def local_datetime_field(label: str, *, required: bool = False, help_text: str = "") -> forms.DateTimeField:
    return forms.DateTimeField(
        label=label,
        required=required,
        input_formats=DATETIME_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
        help_text=help_text,
    )


class QueueFilterForm(forms.Form):
    """Filter the queue by requester, risk, system and age, and sort it (the selector does the work)."""

    # A search, not a choice: a select of everyone waiting (~500, mostly machines) was hard to use, and
    # grouping and naming them cost more than the page's cards. A "u<id>"/"i<id>" key (links,
    # bookmarks) still names one requester exactly (`selectors_queue.queue_rows`).
    # Quick: Django's selects and inputs render each through templates (QuickSelect, QuickTextInput).
    requester = forms.CharField(
        label="Requester",
        required=False,
        max_length=150,
        help_text="Name or login",
        widget=QuickTextInput(attrs={"type": "search"}),
    )
    risk_tier = forms.ChoiceField(
        label="Risk tier", choices=[("", "Any"), *RiskTier.choices], required=False, widget=QuickSelect
    )
    system = ListedModelChoiceField(
        label="System", queryset=System.objects.none(), required=False, empty_label="Any", widget=QuickSelect
    )
    waiting = forms.ChoiceField(label="Waiting", choices=WAITING_CHOICES, required=False, widget=QuickSelect)
    order = forms.ChoiceField(label="Sort by", choices=ORDERS, required=False, widget=QuickSelect)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # An option shows a system's name (`str`) and its key: only those columns are read.
        self.fields["system"].queryset = System.objects.filter(status="active").order_by("name").only("pk", "name")

    def filters(self) -> dict:
        """The selector's keyword arguments; an invalid filter is ignored (shown as an error beside it),
        the valid ones still apply."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})  # an unbound form has none: no filter
        system = data.get("system")
        return {
            "requester": data.get("requester") or "",
            "risk_tier": data.get("risk_tier") or "",
            "system_id": system.pk if system else None,
            "waiting_at_least": WAITING.get(data.get("waiting") or ""),
            "order": data.get("order") or "oldest",
        }


class QueueDecisionForm(DecisionForm):
    """A decision from the queue or the request's page; an approval may be for less time or start later.

    Empty `duration_minutes` and `start_at` mean "as asked"; the service refuses more or earlier.
    """

    duration_minutes = forms.IntegerField(label="Approve for", required=False, min_value=1, max_value=366 * 24 * 60)
    start_at = local_datetime_field("Start no earlier than")
    time_zone = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def narrowing(self) -> dict:
        """The service's `duration` and `start_at` for an approval (a denial narrows nothing)."""
        data = self.cleaned_data
        if data.get("decision") != Decision.APPROVE:
            return {}
        minutes, start = data.get("duration_minutes"), data.get("start_at")
        return {
            "duration": timedelta(minutes=minutes) if minutes else None,
            "start_at": in_zone(start, data.get("time_zone")) if start else None,
        }


# The service names its fields after the model; the form after what people type.
DECISION_SERVICE_FIELDS = {"duration": "duration_minutes", "start_at": "start_at", "comment": "comment"}


class BulkDecisionForm(forms.Form):
    """A selection of queue cards (`request id:stage`), approved or denied together."""

    selected = forms.MultipleChoiceField(label="Selected requests", required=False)
    decision = forms.ChoiceField(choices=Decision.choices)
    comment = forms.CharField(
        label="Comment for all selected (required to deny)",
        required=False,
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any "id:stage" pair parses; whether each is in the queue is the view's question.
        posted = self.data.getlist("selected") if hasattr(self.data, "getlist") else []
        self.fields["selected"].choices = [(value, value) for value in posted]

    def clean_selected(self) -> list[tuple[int, int | None]]:
        pairs = []
        for value in self.cleaned_data["selected"]:
            request_id, _, stage = value.partition(":")
            if not request_id.isdigit() or (stage and not stage.isdigit()):
                raise forms.ValidationError("Select requests from the queue.")
            pairs.append((int(request_id), int(stage) if stage else None))
        if not pairs:
            raise forms.ValidationError("Select at least one request (tick “Select” on its card).")
        return pairs


class AbsenceForm(forms.Form):
    """Out of office: from when to when, and who decides meanwhile."""

    deputy = forms.ModelChoiceField(label="Deputy", queryset=None, empty_label="Choose a person")
    starts_at = local_datetime_field("From", help_text="Leave empty to start now.")
    ends_at = local_datetime_field("Until", required=True)
    reason = forms.CharField(
        label="Note for the deputy (optional)",
        required=False,
        max_length=FREE_TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    time_zone = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, deputies, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["deputy"].queryset = deputies
        self.fields["deputy"].label_from_instance = deputy_label

    def clean(self):
        data = super().clean()
        zone = data.get("time_zone")
        for name in ("starts_at", "ends_at"):
            if data.get(name) is not None:
                data[name] = in_zone(data[name], zone)
        return data


def deputy_label(user) -> str:
    identity = getattr(user, "identity", None)
    name = identity.name if identity is not None else user.get_full_name()
    return f"{name} ({user.get_username()})" if name else user.get_username()
