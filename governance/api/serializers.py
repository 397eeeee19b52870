"""Serializers: the read shape of the inventory, and the inputs the services accept."""

from datetime import timedelta

from rest_framework import serializers

from audit.kernel import clock
from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from governance.auto_approval import IntentPart
from governance.choices import GrantKind, IdentityKind, IdentityStatus
from governance.models import Entitlement, Finding, Grant, Identity, System
from governance.selectors_connectors import plain_settings


class IdentitySerializer(serializers.ModelSerializer):
    owner_name = serializers.CharField(source="owner.name", default=None, read_only=True, allow_null=True)
    live_grant_count = serializers.IntegerField(read_only=True)
    open_finding_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Identity
        fields = [
            "id",
            "external_id",
            "name",
            "kind",
            "status",
            "email",
            "team",
            "description",
            "owner",
            "owner_name",
            "backup_owner",
            "manager",
            "last_used_at",
            "credential_type",
            "secret_location",
            "last_rotated_at",
            "rotation_period_days",
            "credentials_suspended_at",
            "may_self_request",
            "live_grant_count",
            "open_finding_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "credentials_suspended_at", "created_at", "updated_at"]


class NamesPeopleById:
    """People are named by id among active people only: any other id (unknown, a machine, someone
    who left) gets one answer, so an endpoint tells nobody which identities exist. Those already set
    on the record stay valid when sent back."""

    PEOPLE_FIELDS: tuple[str, ...] = ("owner",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        people = Identity.objects.filter(kind=IdentityKind.HUMAN, status=IdentityStatus.ACTIVE)
        for name in self.PEOPLE_FIELDS:
            current = getattr(self.instance, f"{name}_id", None)
            field = self.fields[name]
            field.queryset = people | Identity.objects.filter(pk=current) if current else people
            field.error_messages["does_not_exist"] = "Must be an active person."


class IdentityCreateSerializer(NamesPeopleById, serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=IdentityKind.choices)
    PEOPLE_FIELDS = ("owner", "backup_owner", "manager")

    class Meta:
        model = Identity
        fields = [
            "external_id",
            "name",
            "kind",
            "email",
            "team",
            "description",
            "owner",
            "backup_owner",
            "manager",
            "last_used_at",
            "credential_type",
            "secret_location",
            "last_rotated_at",
            "rotation_period_days",
            "may_self_request",
        ]
        extra_kwargs = {"external_id": {"validators": []}}


class SystemSerializer(NamesPeopleById, serializers.ModelSerializer):
    entitlement_count = serializers.IntegerField(read_only=True)
    connector_settings = serializers.JSONField(
        required=False,
        help_text="The connector's settings, an object keyed by setting name; only admins may change them, and "
        "the connector's schema validates them. Secret settings (the webhook's signing_secret, the postgresql "
        "password) are write-only: reads omit them, whether set or not (the system's page says whether one is "
        "set). On write, a secret left out or blank keeps its stored value, so a read sent back changes nothing.",
    )

    class Meta:
        model = System
        fields = [
            "id",
            "external_id",
            "name",
            "description",
            "owner",
            "criticality",
            "connector",
            "connector_settings",
            "last_reconciled_at",
            "status",
            "retired_at",
            "entitlement_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "retired_at", "last_reconciled_at", "created_at", "updated_at"]
        extra_kwargs = {"external_id": {"validators": []}}
        validators = []

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["connector_settings"] = plain_settings(instance)  # never a secret, whatever is stored
        return data

    def validate_connector_settings(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object of named settings.")
        return value


class ConnectionCheckSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="What was tried.")
    ok = serializers.BooleanField(help_text="Whether it worked.")
    detail = serializers.CharField(help_text="What was seen, in plain words (never a secret).")


class ConnectionTestSerializer(serializers.Serializer):
    """The outcome of a system's connection test: every check, and whether all passed."""

    ok = serializers.BooleanField()
    checks = ConnectionCheckSerializer(many=True)


class EntitlementSerializer(NamesPeopleById, serializers.ModelSerializer):
    max_duration_seconds = serializers.SerializerMethodField()
    # Automatic approval's conditions (governance.auto_approval); the service checks them as a whole.
    auto_approve_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=IdentityKind.choices),
        required=False,
        help_text="Identity kinds whose requests may be approved automatically.",
    )
    auto_approve_intent_fields = serializers.ListField(
        child=serializers.ChoiceField(choices=IntentPart.choices),
        required=False,
        help_text="Parts of the declared intent a request must give to be approved automatically.",
    )

    class Meta:
        model = Entitlement
        fields = [
            "id",
            "external_id",
            "system",
            "name",
            "target_name",
            "owner",
            "business_purpose",
            "risk_tier",
            "requestable",
            "max_duration",
            "max_duration_seconds",
            "approval_stages",
            "auto_approve_machines",
            "auto_approve_kinds",
            "auto_approve_max_risk",
            "auto_approve_max_finding_severity",
            "auto_approve_max_minutes",
            "auto_approve_intent_fields",
            "auto_approve_max_per_hour",
            "break_glass_eligible",
            "justification_required",
            "ticket_required",
            "allowed_identity_kinds",
            "review_cadence_days",
            "status",
            "retired_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "retired_at", "created_at", "updated_at"]
        extra_kwargs = {"external_id": {"validators": []}}
        validators = []

    def get_max_duration_seconds(self, entitlement) -> int:
        return int(entitlement.effective_max_duration.total_seconds())


class GrantSerializer(serializers.ModelSerializer):
    in_force = serializers.SerializerMethodField()
    time_left_seconds = serializers.SerializerMethodField()

    class Meta:
        model = Grant
        fields = [
            "id",
            "identity",
            "entitlement",
            "kind",
            "status",
            "granted_at",
            "expires_at",
            "approved_duration",
            "revoked_at",
            "reason",
            "end_reason",
            "renewal_of",
            "no_renew",
            "in_force",
            "time_left_seconds",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_in_force(self, grant) -> bool:
        """A grant past its expiry is not in force, even before the sweep has moved it."""
        return grant.is_in_force()

    def get_time_left_seconds(self, grant) -> int | None:
        if grant.expires_at is None:
            return None
        now = clock.now()
        return max(int((grant.expires_at - now).total_seconds()), 0) if grant.is_in_force(now) else 0


class GrantCreateSerializer(serializers.Serializer):
    """The identity is looked up among those the caller may see (`visible_identities` in the
    context): a hidden one and an unknown one get the same answer."""

    identity = serializers.PrimaryKeyRelatedField(
        queryset=Identity.objects.none(), error_messages={"does_not_exist": "No identity you may see has this id."}
    )
    entitlement = serializers.PrimaryKeyRelatedField(queryset=Entitlement.objects.all())
    kind = serializers.ChoiceField(choices=[GrantKind.STANDING, GrantKind.JIT], default=GrantKind.STANDING)
    duration_seconds = serializers.IntegerField(
        min_value=60, max_value=366 * 24 * 3600, required=False, allow_null=True, default=None
    )
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=FREE_TEXT_MAX_LENGTH)

    def __init__(self, *args, visible_identities=None, **kwargs):
        super().__init__(*args, **kwargs)
        if visible_identities is not None:
            self.fields["identity"].queryset = visible_identities

    def service_kwargs(self) -> dict:
        data = dict(self.validated_data)
        seconds = data.pop("duration_seconds")
        return {**data, "duration": timedelta(seconds=seconds) if seconds else None}


class FindingSerializer(serializers.ModelSerializer):
    class Meta:
        model = Finding
        fields = [
            "id",
            "kind",
            "severity",
            "status",
            "identity",
            "entitlement",
            "grant",
            "owner_to_act",
            "details",
            "first_seen_at",
            "last_seen_at",
            "resolved_at",
        ]
        read_only_fields = fields


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=FREE_TEXT_MAX_LENGTH)


class OptionalReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=FREE_TEXT_MAX_LENGTH, required=False, allow_blank=True, default="")


class PolicyChangeSerializer(serializers.ModelSerializer):
    class Meta:
        from ..models import PolicyChange

        model = PolicyChange
        fields = ["id", "entitlement", "before", "after", "loosens", "status", "requested_by", "requested_at"]
        read_only_fields = fields


class HeldPolicyChangeSerializer(serializers.Serializer):
    """An edit whose loosening waits for a second admin (202): the entitlement as it is now, and what waits."""

    detail = serializers.CharField()
    entitlement = EntitlementSerializer()
    policy_change = PolicyChangeSerializer()
