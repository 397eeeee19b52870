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
    # Lists prefetched by `jit.api.views.visible_requests` (to_attr): no related manager per stage.
    approvals = ApprovalSerializer(many=True, read_only=True, source="approvals_shown")

    class Meta:
        model = ApprovalStage
        fields = ["position", "approver_source", "group", "quorum", "reason", "status", "decided_at", "approvals"]


class AccessRequestSerializer(serializers.ModelSerializer):
    """A request as its requester, approvers and auditors see it (read side)."""

    requester = serializers.CharField(source="requester.get_username", default=None, allow_null=True)
    beneficiary_name = serializers.CharField(source="beneficiary.name")
    entitlement_name = serializers.CharField(source="entitlement.name")
    duration_seconds = serializers.SerializerMethodField()
    stages = StageSerializer(many=True, read_only=True, source="stages_shown")  # as `approvals` above

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
            "intent_task",
            "intent_action",
            "intent_resource",
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
        extra_kwargs = {
            "delegation_chain": {
                "help_text": "The verified delegation chain the request was made under, from the initiator's "
                "delegation to the one naming the caller: each hop {delegation, from: {id, name, kind}, "
                "to: {id, name, kind}, expires_at}."
            }
        }

    def get_duration_seconds(self, request) -> int:
        return int(request.duration.total_seconds())


class SubmitSerializer(serializers.Serializer):
    """What a requester (person or machine) sends to ask for access."""

    beneficiary = serializers.IntegerField(help_text="Identity id: yourself or an identity you own.")
    entitlement = serializers.IntegerField()
    duration_seconds = serializers.IntegerField(min_value=60, max_value=366 * 24 * 3600, required=False)
    justification = serializers.CharField(required=False, allow_blank=True, default="", max_length=FREE_TEXT_MAX_LENGTH)
    ticket = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    intent = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=FREE_TEXT_MAX_LENGTH,
        help_text="The task in words (for a machine: it stands for a justification).",
    )
    intent_task = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=200, help_text="The task's id (T-123, INC-7781)."
    )
    intent_action = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=100, help_text="What the task does: read, restart."
    )
    intent_resource = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=300, help_text="On what: db/orders."
    )
    start_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    delegation_chain = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        default=list,
        max_length=10,
        help_text="A machine acting for someone: the ids of the delegations it acts under, from the initiator's "
        "to the one naming the caller (GET delegations/). Each is verified; a refusal's `code` says which check "
        "failed (delegation_expired, delegation_revoked, delegation_broken, delegation_too_deep, "
        "delegation_out_of_scope, initiator_inactive, initiator_not_allowed, redelegation_not_allowed, ...).",
    )
    renewal_of = serializers.IntegerField(required=False, allow_null=True, default=None)
    callback_url = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=500,
        help_text="Be told the outcome here: a signed POST (README: signed callbacks). https only, unless the "
        "portal allows http; the answer carries `callback_secret`, once.",
    )

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
            "intent_task": data["intent_task"],
            "intent_action": data["intent_action"],
            "intent_resource": data["intent_resource"],
            "start_at": data["start_at"],
            "delegation_chain": data["delegation_chain"],
            "renewal_of_id": data["renewal_of"],
            "callback_url": data["callback_url"],
        }


class SubmittedRequestSerializer(AccessRequestSerializer):
    """The answer to a submission: the request, and the callback's signing secret when one was asked for."""

    callback_secret = serializers.CharField(
        read_only=True,
        required=False,
        help_text="Only in this answer, only with callback_url: verify callbacks with it.",
    )

    class Meta(AccessRequestSerializer.Meta):
        fields = [*AccessRequestSerializer.Meta.fields, "callback_secret"]


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=FREE_TEXT_MAX_LENGTH)
    stage = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="The stage you decided on."
    )
    # An approval may be for less than asked (never more: refused); a denial takes neither.
    duration_seconds = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        help_text="Approve for this long only: at most what the request asks.",
    )
    start_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Approve from this time only: not earlier than the request asks.",
    )

    def narrowing(self) -> dict:
        seconds = self.validated_data["duration_seconds"]
        return {
            "duration": timedelta(seconds=seconds) if seconds else None,
            "start_at": self.validated_data["start_at"],
        }


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
