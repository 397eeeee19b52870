from datetime import timedelta

from rest_framework import serializers

from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from jit.models import AccessRequest, Approval, ApprovalStage, BreakGlassActivation, BreakGlassEligibility


class ApprovalSerializer(serializers.ModelSerializer):
    approver = serializers.CharField(source="approver.get_username")

    class Meta:
        model = Approval
        fields = ["approver", "decision", "comment", "decided_at"]


class StageSerializer(serializers.ModelSerializer):
    approvals = ApprovalSerializer(many=True, read_only=True)

    class Meta:
        model = ApprovalStage
        fields = ["position", "approver_source", "group", "quorum", "reason", "status", "decided_at", "approvals"]


class AccessRequestSerializer(serializers.ModelSerializer):
    """A request as its requester, approvers and auditors see it (read side)."""

    requester = serializers.CharField(source="requester.get_username", default=None, allow_null=True)
    beneficiary_name = serializers.CharField(source="beneficiary.name")
    entitlement_name = serializers.CharField(source="entitlement.name")
    duration_seconds = serializers.SerializerMethodField()
    stages = StageSerializer(many=True, read_only=True)

    class Meta:
        model = AccessRequest
        fields = [
            "id",
            "status",
            "requester",
            "requester_identity",
            "beneficiary",
            "beneficiary_name",
            "entitlement",
            "entitlement_name",
            "duration_seconds",
            "justification",
            "ticket",
            "intent",
            "delegation_chain",
            "start_at",
            "activation_deadline",
            "renewal_of",
            "grant",
            "policy",
            "decided_at",
            "decision_note",
            "created_at",
            "stages",
        ]

    def get_duration_seconds(self, request) -> int:
        return int(request.duration.total_seconds())


class SubmitSerializer(serializers.Serializer):
    """What a requester (person or machine) sends to ask for access."""

    beneficiary = serializers.IntegerField(help_text="Identity id: yourself or an identity you own.")
    entitlement = serializers.IntegerField()
    duration_seconds = serializers.IntegerField(min_value=60, max_value=366 * 24 * 3600, required=False)
    justification = serializers.CharField(required=False, allow_blank=True, default="", max_length=FREE_TEXT_MAX_LENGTH)
    ticket = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    intent = serializers.CharField(required=False, allow_blank=True, default="", max_length=FREE_TEXT_MAX_LENGTH)
    start_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    delegation_chain = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        default=list,
        max_length=10,
        help_text="For a machine acting for someone: who it acts for, outermost first.",
    )
    renewal_of = serializers.IntegerField(required=False, allow_null=True, default=None)

    def to_service_kwargs(self) -> dict:
        data = self.validated_data
        seconds = data.get("duration_seconds")
        return {
            "beneficiary_id": data["beneficiary"],
            "entitlement_id": data["entitlement"],
            "duration": timedelta(seconds=seconds) if seconds else None,
            "justification": data["justification"],
            "ticket": data["ticket"],
            "intent": data["intent"],
            "start_at": data["start_at"],
            "delegation_chain": data["delegation_chain"],
            "renewal_of_id": data["renewal_of"],
        }


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=FREE_TEXT_MAX_LENGTH)
    stage = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="The stage you decided on."
    )


class NoteSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=FREE_TEXT_MAX_LENGTH)


#
# Break-glass
#
class BreakGlassEligibilitySerializer(serializers.ModelSerializer):
    """An eligibility in force for the caller: what they may break glass into, for how long at most."""

    entitlement_name = serializers.CharField(source="entitlement.name")
    system_name = serializers.CharField(source="entitlement.system.name")
    max_duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = BreakGlassEligibility
        fields = [
            "id",
            "entitlement",
            "entitlement_name",
            "system_name",
            "identity",
            "group",
            "max_duration_seconds",
            "reviewer_group",
            "expires_at",
        ]

    def get_max_duration_seconds(self, eligibility) -> int:
        return int(eligibility.max_duration.total_seconds())


class BreakGlassActivationSerializer(serializers.ModelSerializer):
    entitlement_name = serializers.CharField(source="entitlement.name")
    holder_name = serializers.CharField(source="identity.name")
    grant_status = serializers.CharField(source="grant.status")
    activated_by = serializers.CharField(source="activated_by.get_username", default=None, allow_null=True)
    reviewer = serializers.CharField(source="reviewer.get_username", default=None, allow_null=True)

    class Meta:
        model = BreakGlassActivation
        fields = [
            "id",
            "eligibility",
            "identity",
            "holder_name",
            "entitlement",
            "entitlement_name",
            "grant",
            "grant_status",
            "activated_by",
            "incident_reference",
            "reason",
            "step_up",
            "is_drill",
            "activated_at",
            "ends_at",
            "review_due_at",
            "reviewer_group",
            "reviewer",
            "outcome",
            "reviewed_at",
        ]


class BreakGlassActivateSerializer(serializers.Serializer):
    """Break glass: which eligibility, the incident, why, and the re-authentication (step-up)."""

    eligibility = serializers.IntegerField(help_text="An id from GET break-glass/eligibilities/.")
    incident_reference = serializers.CharField(max_length=200)
    reason = serializers.CharField(max_length=FREE_TEXT_MAX_LENGTH)
    password = serializers.CharField(
        required=False, allow_blank=True, default="", write_only=True, style={"input_type": "password"}
    )
    otp_token = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=12,
        help_text="Required when you enrolled a second factor.",
    )
