"""Forms for the inventory pages: they parse input; the services decide."""

import json
from datetime import datetime, timedelta
from decimal import Decimal

from django import forms
from django.db.models import Case, IntegerField, Q, Value, When
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html

from audit.kernel.text import FREE_TEXT_MAX_LENGTH

from . import stage_builder
from .approval_stages import validate_approval_stages
from .auto_approval import IntentPart
from .choices import Connector, GrantStatus, IdentityKind, IdentityStatus, RiskTier
from .connectors import CONNECTORS, connector_class
from .errors import ValidationFailed
from .models import Entitlement, Identity, System
from .selectors_connectors import plain_settings, secrets_set
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


#
# Picking a person: a login, an email or an exact name typed in, never a list of everyone
#
PERSON_HELP = "Their login, email or full name."


def person_text(identity: Identity | None) -> str:
    """How a form shows a person it holds: their login, else their email, else their name."""
    if identity is None:
        return ""
    return identity.user.username if identity.user_id else identity.email or identity.name


def find_person(text: str, *, signs_in: bool = False) -> Identity:
    """The one active person a login, an email or an exact name names (in any case), in one query.

    A login counts before an email and an email before a name; two people sharing the best match
    are refused, never guessed between. `signs_in`: only people with a login (a delegate signs in).
    """
    people = active_people()
    if signs_in:
        people = people.filter(user__isnull=False)
    best = Case(
        When(user__username__iexact=text, then=Value(0)),
        When(email__iexact=text, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    found = list(
        people.filter(Q(user__username__iexact=text) | Q(email__iexact=text) | Q(name__iexact=text))
        .annotate(match=best)
        .select_related("user")
        .order_by("match", "pk")[:2]
    )
    if not found:
        if signs_in:
            raise forms.ValidationError(f"No active person signs in as {text!r}.", code="unknown_person")
        raise forms.ValidationError("No active person with that login, email or name.", code="unknown_person")
    if len(found) > 1 and found[0].match == found[1].match:
        what = ["login", "email", "name"][found[0].match]
        raise forms.ValidationError(
            f"More than one active person has that {what}: give their login or email.", code="ambiguous_person"
        )
    return found[0]


def person_picker_attrs(name: str, listbox: str, *, signs_in: bool = False, lines: bool = False) -> dict[str, str]:
    """A text input's attributes that make it a combobox asking `people_search` as one types (htmx).

    Without script they do nothing: the input stays a plain field taking a login, email or name. With
    `lines` (a textarea of people, one a line) the search is for the last line, and a pick replaces it.
    """
    values = {"field": name, "listbox": listbox, **({"signs_in": "1"} if signs_in else {})}
    if lines:
        values["lines"] = "1"
    return {
        "role": "combobox",
        "aria-autocomplete": "list",
        "aria-expanded": "false",
        "aria-controls": listbox,
        "autocomplete": "off",
        "spellcheck": "false",
        "data-person-input": "",
        "hx-get": reverse("governance:people_search"),
        "hx-trigger": "input changed delay:250ms",
        "hx-target": f"#{listbox}",
        "hx-swap": "innerHTML",
        "hx-sync": "this:replace",
        "hx-vals": json.dumps(values),
    }


class PersonWidget(forms.TextInput):
    """A person field's input with its list of matches (static/js/person-picker.js works the keyboard)."""

    def __init__(self, attrs=None, *, signs_in: bool = False):
        super().__init__(attrs)
        self.signs_in = signs_in

    def render(self, name, value, attrs=None, renderer=None):
        attrs = {**self.attrs, **(attrs or {})}
        attrs.setdefault("id", f"id_{name}")
        listbox = f"{attrs['id']}_listbox"
        attrs.update(person_picker_attrs(name, listbox, signs_in=self.signs_in))
        return format_html(
            '<span class="person-picker">{}<ul role="listbox" id="{}" class="picker-options" '
            'aria-label="People found" hidden></ul></span>',
            super().render(name, value, attrs, renderer),
            listbox,
        )


class PeopleWidget(forms.Textarea):
    """A textarea of people, one a line, whose last line searches as one types (the person picker's list)."""

    def render(self, name, value, attrs=None, renderer=None):
        attrs = {**self.attrs, **(attrs or {})}
        attrs.setdefault("id", f"id_{name}")
        listbox = f"{attrs['id']}_listbox"
        attrs.update(person_picker_attrs(name, listbox, lines=True))
        return format_html(
            '<span class="person-picker">{}<ul role="listbox" id="{}" class="picker-options" '
            'aria-label="People found" hidden></ul></span>',
            super().render(name, value, attrs, renderer),
            listbox,
        )


class PersonField(forms.CharField):
    """A person typed in by login, email or exact name; cleans to the active person it names (None if empty).

    The person the form showed (`current`, set by `PeopleAsText`) is taken back as is, even one who has
    since left, so a form sent back unchanged keeps them and the service says what is wrong, if anything.
    """

    def __init__(self, *, signs_in: bool = False, **kwargs):
        kwargs.setdefault("max_length", 254)
        kwargs.setdefault("help_text", PERSON_HELP)
        kwargs.setdefault("widget", PersonWidget(signs_in=signs_in))
        super().__init__(**kwargs)
        self.signs_in = signs_in
        self.current: Identity | None = None

    def clean(self, value):
        text = super().clean(value)
        if not text:
            return None
        if self.current is not None and text == person_text(self.current):
            return self.current
        return find_person(text, signs_in=self.signs_in)


class PeopleAsText:
    """For forms with PersonFields: show the people they start with as text (one query for them all)."""

    def show_people_as_text(self) -> None:
        names = [name for name, field in self.fields.items() if isinstance(field, PersonField)]
        start = {name: self.get_initial_for_field(self.fields[name], name) for name in names}
        start = {name: getattr(value, "pk", value) for name, value in start.items()}
        start = {name: value for name, value in start.items() if isinstance(value, int)}
        if not start:
            return
        people = Identity.objects.select_related("user").in_bulk(set(start.values()))
        for name, pk in start.items():
            person = people.get(pk)
            self.fields[name].current = person
            self.initial[name] = person_text(person)


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
    """Add a delegate by login, email or name (`find_person`, one who signs in), or remove one by id
    (whatever their status now)."""

    # Typed in, not a list of every person in the organisation.
    delegate = forms.CharField(
        label="Person (login, email or name)", max_length=254, required=False, widget=PersonWidget(signs_in=True)
    )
    delegate_id = forms.IntegerField(required=False, widget=forms.HiddenInput)
    reason = forms.CharField(label="Why (optional)", required=False, max_length=FREE_TEXT_MAX_LENGTH)

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
            found = find_person(value, signs_in=True)
        data["person"] = found
        return data


class ReasonForm(forms.Form):
    """The reason every suspension, offboarding and retirement records in the audit trail."""

    reason = forms.CharField(label="Reason", max_length=FREE_TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2}))


class IdentityForm(PeopleAsText, forms.ModelForm):
    """The descriptive and credential facts an owner keeps true (owner and status have their own actions).

    The fields are the service's EDITABLE_FIELDS, so the form can never offer what identity_update refuses.
    """

    manager = PersonField(label="Manager", required=False)

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
        if not admin:
            for name in USAGE_FIELDS:
                del self.fields[name]
        if self.instance.pk and self.instance.kind == IdentityKind.HUMAN:
            for name in MACHINE_ONLY_FIELDS:
                del self.fields[name]
        elif self.instance.pk and self.instance.kind != IdentityKind.AI_AGENT:
            del self.fields["may_self_request"]
        self.show_people_as_text()

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
    owner = PersonField(label="Owner", required=False)

    class Meta(IdentityForm.Meta):
        fields = ["kind", "owner", *EDITABLE_FIELDS]

    def __init__(self, *args, admin: bool = True, me: Identity | None = None, **kwargs):
        super().__init__(*args, admin=admin, **kwargs)
        self.admin, self.me = admin, me
        owner = self.fields["owner"]
        owner.help_text = f"{PERSON_HELP} Required for a non-human identity; empty for a person."
        if not admin:
            # Everyone else registers machines they will own themselves: offer nothing they would be refused.
            self.fields["kind"].choices = [c for c in IdentityKind.choices if c[0] != IdentityKind.HUMAN]
            owner.required = True
            owner.help_text = (
                "You will own it. An admin can register it for someone else, or you can hand it over later."
            )
        self.order_fields(["kind", "name", "owner"])

    def clean_owner(self):
        owner = self.cleaned_data["owner"]
        if not self.admin and owner is not None and (self.me is None or owner.pk != self.me.pk):
            raise forms.ValidationError(
                "You can only register an identity you will own yourself: an admin can register it for someone else.",
                code="not_yours",
            )
        return owner

    def _post_clean(self):
        # No model validation here: identity_create validates the new row and names the field at
        # fault ("owner: Required for non-human identities."), where a constraint error would not.
        pass

    def changes(self) -> dict:
        return {name: self.cleaned_data[name] for name in EDITABLE_FIELDS if name in self.cleaned_data}


class OwnerForm(PeopleAsText, forms.Form):
    """Hand an identity over: its owner and backup owner as the page started with them (ids or identities)."""

    owner = PersonField(label="Owner", required=False)
    backup_owner = PersonField(label="Backup owner", required=False)
    reason = forms.CharField(label="Reason", max_length=FREE_TEXT_MAX_LENGTH, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.show_people_as_text()


class SystemForm(PeopleAsText, forms.ModelForm):
    """A system's descriptive facts and owner: to edit one, or (unsaved instance) to add one."""

    owner = PersonField(label="Owner")

    class Meta:
        model = System
        fields = SYSTEM_FORM_FIELDS
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.show_people_as_text()


class SystemAdminForm(SystemForm):
    """What an admin edits besides: the connector. Its settings are a form of their own
    (`connector_settings_form`), swapped in by htmx when the connector changes."""

    class Meta(SystemForm.Meta):
        fields = [*SYSTEM_FORM_FIELDS, "connector"]
        help_texts = {"connector": "How grants reach this system. Changing it starts its settings afresh."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        query = f"?system={self.instance.pk}" if self.instance.pk else ""
        self.fields["connector"].choices = Connector.choices
        self.fields["connector"].required = False  # a post without it (a script, an older page) keeps it
        self.fields["connector"].widget.attrs.update(
            {
                "hx-get": reverse("governance:system_connector_settings") + query,
                "hx-trigger": "change",
                "hx-target": "#connector-settings",
                "hx-swap": "innerHTML",
                "hx-include": "this",
                "aria-controls": "connector-settings",
            }
        )

    def clean_connector(self) -> str:
        return self.cleaned_data.get("connector") or self.instance.connector

    def chosen_connector(self) -> str:
        """The connector whose settings the page shows: the one sent, if it exists, else the system's."""
        sent = self.data.get("connector") if self.is_bound else None
        return sent if sent in CONNECTORS else self.instance.connector


SETTINGS_PREFIX = "settings"
SECRET_IS_SET = "Set — leave blank to keep it."


def connector_settings_form(connector: str, *, system: System | None = None, data=None) -> forms.Form | None:
    """The connector's settings form (its `settings_form`), prefixed, for the system pages.

    It starts from the system's plain settings when the system uses this connector. A secret is a
    password input that never shows its value back: when one is set it may be left blank to keep
    it (the service keeps a secret not sent again). None for a connector that does not exist.
    """
    if connector not in CONNECTORS:
        return None
    cls = connector_class(connector)
    same = system is not None and system.pk is not None and system.connector == connector
    form = cls.settings_form(data=data, initial=plain_settings(system) if same else {}, prefix=SETTINGS_PREFIX)
    is_set = secrets_set(system) if same else {}
    for name in cls.secret_fields:
        field = form.fields[name]
        if not isinstance(field.widget, forms.PasswordInput):
            field.widget = forms.PasswordInput(attrs=field.widget.attrs)
        field.widget.render_value = False
        field.widget.attrs["autocomplete"] = "new-password"  # never the browser's saved login password
        if is_set.get(name):
            field.required = False
            field.help_text = f"{SECRET_IS_SET} {field.help_text}".strip()
    form.connector = connector
    form.connector_label = Connector(connector).label if connector in Connector.values else connector
    form.secret_fields = cls.secret_fields
    return form


def add_system_service_errors(form: forms.Form, settings_form: forms.Form | None, error) -> None:
    """A system service's errors beside their fields: `connector_settings.<name>` beside that setting."""
    placed = False
    for field, messages in error.field_errors.items():
        setting = field.removeprefix("connector_settings.") if field.startswith("connector_settings.") else None
        for message in messages:
            if setting is not None and settings_form is not None and setting in settings_form.fields:
                settings_form.add_error(setting, message)
                placed = True
            elif field in form.fields:
                form.add_error(field, message)
                placed = True
            else:
                form.add_error(None, message)
    if not placed and not error.field_errors:
        form.add_error(None, error.message)


#
# Approval stages: a builder of stages, not JSON
#
class ApprovalStagesWidget(forms.Widget):
    """The stage builder (governance/stage_builder.py). Reads the builder's fields, or the raw JSON a
    script may still post as `approval_stages`; shows each stage's error beside it."""

    use_fieldset = True

    def __init__(self, attrs=None):
        super().__init__(attrs)
        self.entitlement: Entitlement | None = None
        self.stage_errors: dict[int, tuple[str, str]] = {}

    def value_from_datadict(self, data, files, name):
        stages = stage_builder.posted_stages(data)
        return stages if stages is not None else data.get(name)

    def value_omitted_from_data(self, data, files, name):
        return name not in data and stage_builder.posted_stages(data) is None

    def render(self, name, value, attrs=None, renderer=None):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = []
        stages = [s for s in value if isinstance(s, dict)] if isinstance(value, list) else []
        entitlement = self.entitlement
        if entitlement is not None and entitlement.pk:
            url = reverse("governance:approval_stages_builder") + f"?entitlement={entitlement.pk}"
        elif entitlement is not None and entitlement.system_id:
            url = reverse("governance:approval_stages_builder") + f"?system={entitlement.system_id}"
        else:
            url = reverse("governance:approval_stages_builder")
        built = stage_builder.builder(stages, url=url, entitlement=entitlement, errors=self.stage_errors, spare=True)
        return render_to_string("governance/partials/stage_builder.html", {"builder": built})


class ApprovalStagesField(forms.Field):
    """An approval path, checked by `validate_approval_stages` stage by stage (errors beside each) and whole."""

    widget = ApprovalStagesWidget

    def prepare_value(self, value):
        # As JSON text: what a script posts back as `approval_stages`; the builder reads it too.
        return json.dumps(value) if isinstance(value, list) else value

    def to_python(self, value):
        if not isinstance(value, str):
            return value or None
        if not value.strip():
            return None
        if len(value) > FREE_TEXT_MAX_LENGTH:
            raise forms.ValidationError(f"At most {FREE_TEXT_MAX_LENGTH} characters.", code="max_length")
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None

    def clean(self, value) -> list[dict]:
        value = self.to_python(value)
        self.validate(value)  # required
        if isinstance(value, list) and len(value) > stage_builder.MAX_STAGES:
            raise forms.ValidationError(f"At most {stage_builder.MAX_STAGES} stages.", code="too_many")
        groups = set(stage_builder.group_names())
        if isinstance(value, list) and all(isinstance(stage, dict) for stage in value):
            self.widget.stage_errors = stage_builder.stage_errors(value, groups)
            if self.widget.stage_errors:
                raise forms.ValidationError(
                    f"Fix the stage{'s' if len(self.widget.stage_errors) > 1 else ''} marked above: "
                    + " ".join(short for _full, short in self.widget.stage_errors.values()),
                    code="bad_stage",
                )
        try:
            return validate_approval_stages(value, groups=groups)
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.message, code="bad_stages") from None


# Conditions that always have a value: one left out of a post keeps the entitlement's.
KEPT_WHEN_OMITTED = ("auto_approve_max_risk", "auto_approve_max_finding_severity")


class EntitlementForm(PeopleAsText, forms.ModelForm):
    """An entitlement's catalogue entry: to edit one, or (an unsaved one in its system) to add one."""

    owner = PersonField(label="Owner")
    max_duration_hours = forms.DecimalField(
        label="Maximum duration (hours)",
        min_value=Decimal("0.01"),
        max_value=24 * 366,
        decimal_places=2,
        required=False,
        help_text="Empty: the default for its risk tier.",
    )
    approval_stages = ApprovalStagesField(
        label="Approval stages",
        help_text="Every stage must approve, in this order; a stage needs as many different people as its number.",
    )
    allowed_identity_kinds = forms.MultipleChoiceField(
        choices=IdentityKind.choices, widget=forms.CheckboxSelectMultiple, label="Identity kinds allowed"
    )
    auto_approve_kinds = forms.MultipleChoiceField(
        choices=IdentityKind.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="For identities of these kinds",
        help_text=Entitlement._meta.get_field("auto_approve_kinds").help_text,
    )
    auto_approve_intent_fields = forms.MultipleChoiceField(
        choices=IntentPart.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="When the request declares",
        help_text="The parts of the intent a request must give; none checked: none asked for.",
    )

    # The form page shows these in their own fieldset (governance/_form_fieldsets.html), in this order.
    fieldsets = [
        (
            None,
            [
                "name",
                "target_name",
                "owner",
                "business_purpose",
                "risk_tier",
                "requestable",
                "break_glass_eligible",
                "justification_required",
                "ticket_required",
                "review_cadence_days",
                "max_duration_hours",
                "approval_stages",
                "allowed_identity_kinds",
            ],
        ),
        (
            "Automatic approval",
            [
                "auto_approve_machines",
                "auto_approve_kinds",
                "auto_approve_max_risk",
                "auto_approve_max_finding_severity",
                "auto_approve_max_minutes",
                "auto_approve_intent_fields",
                "auto_approve_max_per_hour",
            ],
        ),
    ]

    class Meta:
        model = Entitlement
        fields = [
            "name",
            "target_name",
            "owner",
            "business_purpose",
            "risk_tier",
            "requestable",
            "auto_approve_machines",
            "break_glass_eligible",
            "justification_required",
            "ticket_required",
            "review_cadence_days",
            "auto_approve_max_risk",
            "auto_approve_max_finding_severity",
            "auto_approve_max_minutes",
            "auto_approve_max_per_hour",
        ]
        widgets = {"business_purpose": forms.Textarea(attrs={"rows": 2})}
        labels = {
            "auto_approve_machines": "Approve automatically when the conditions below hold",
            "auto_approve_max_risk": "While this entitlement's risk tier is at most",
            "auto_approve_max_finding_severity": "Open hygiene findings tolerated on the identity",
            "auto_approve_max_minutes": "For at most (minutes)",
            "auto_approve_max_per_hour": "At most this many per hour, for one identity",
        }
        help_texts = {
            "target_name": "What the system's connector grants: a database role, a group. Blank: the entitlement's "
            "name. Changing it does not move access already granted; reconciliation reports what differs.",
            "auto_approve_machines": "Nobody is asked when every condition holds; otherwise the request goes to its "
            "approvers. Never with a separation-of-duties conflict, a step-up, or for someone who owns this "
            "entitlement or its system.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.show_people_as_text()
        self._saved_max_duration = self.instance.max_duration
        self.fields["risk_tier"].choices = RiskTier.choices
        # An unsaved entitlement starts from the model's defaults (one stage, every kind allowed).
        self.initial.setdefault("approval_stages", self.instance.approval_stages)
        self.fields["approval_stages"].widget.entitlement = self.instance
        self.initial.setdefault("allowed_identity_kinds", self.instance.allowed_identity_kinds)
        self.initial.setdefault("auto_approve_kinds", self.instance.auto_approve_kinds)
        self.initial.setdefault("auto_approve_intent_fields", self.instance.auto_approve_intent_fields)
        self.fields["auto_approve_max_risk"].choices = RiskTier.choices
        # A post that leaves a condition out (an older client, a script) keeps it as it is.
        for name in KEPT_WHEN_OMITTED:
            self.fields[name].required = False
        for name in ("auto_approve_max_minutes", "auto_approve_max_per_hour"):
            self.fields[name].widget.attrs["min"] = 1  # zero would mean "never": the switch says that
        if self.instance.max_duration:
            hours = (Decimal(self.instance.max_duration.total_seconds()) / 3600).quantize(Decimal("0.01"))
            self.initial["max_duration_hours"] = hours.quantize(Decimal(1)) if hours == hours.to_integral() else hours

    def _kept_when_omitted(self, name: str):
        return self.cleaned_data[name] or getattr(self.instance, name)

    def clean_auto_approve_max_risk(self):
        return self._kept_when_omitted("auto_approve_max_risk")

    def clean_auto_approve_max_finding_severity(self):
        return self._kept_when_omitted("auto_approve_max_finding_severity")

    def _max_duration(self) -> timedelta | None:
        hours = self.cleaned_data.get("max_duration_hours")
        if self.instance.pk and "max_duration_hours" not in self.changed_data:
            return self._saved_max_duration  # shown rounded; sent back as shown, kept exact
        return timedelta(seconds=round(hours * 3600)) if hours else None

    def clean(self):
        cleaned = super().clean()
        # The model checks the automatic-approval conditions against the maximum duration: it sees
        # the values sent, not the ones saved, so each error lands beside its field.
        if "max_duration_hours" not in self.errors:
            self.instance.max_duration = self._max_duration()
        for name in ("auto_approve_kinds", "auto_approve_intent_fields"):
            if name in cleaned:
                setattr(self.instance, name, list(cleaned[name]))
        return cleaned

    def changes(self) -> dict:
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        data["max_duration"] = self._max_duration()
        data["approval_stages"] = self.cleaned_data["approval_stages"]
        data["allowed_identity_kinds"] = list(self.cleaned_data["allowed_identity_kinds"])
        data["auto_approve_kinds"] = list(self.cleaned_data["auto_approve_kinds"])
        data["auto_approve_intent_fields"] = list(self.cleaned_data["auto_approve_intent_fields"])
        return data

    def grouped_fields(self) -> list[tuple[str | None, list]]:
        """The bound fields of each fieldset, for the form page; any field not placed goes in the first."""
        placed = {name for _, names in self.fieldsets for name in names}
        groups = [(legend, [self[name] for name in names if name in self.fields]) for legend, names in self.fieldsets]
        groups[0][1].extend(self[name] for name in self.fields if name not in placed)
        return groups


#
# Grants the connector gave up on
#
FAILURE_KINDS = [
    ("", "Any"),
    (GrantStatus.PROVISION_FAILED, "Granting failed — no access yet"),
    (GrantStatus.REVOKE_FAILED, "Revocation failed — access may still exist"),
]


class GrantFailureFilterForm(forms.Form):
    """Narrow the failures page to one system (among those with failures the user sees) or one kind."""

    system = forms.ModelChoiceField(queryset=System.objects.none(), required=False, empty_label="Any", label="System")
    kind = forms.ChoiceField(choices=FAILURE_KINDS, required=False, label="Failure")

    def __init__(self, *args, systems=None, **kwargs):
        super().__init__(*args, **kwargs)
        if systems is not None:
            self.fields["system"].queryset = systems
