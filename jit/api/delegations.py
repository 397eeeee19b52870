"""The delegation API: list the delegations one may see, delegate to a machine, revoke or decline one.

A machine with the scope `delegations:write` delegates for itself (an orchestrator handing a task to
a worker agent); a person for themself or for the machines they own. The ids it returns are what an
agent names in an access request's `delegation_chain`.
"""

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audit.kernel.pagination import NewestFirst
from audit.kernel.text import FREE_TEXT_MAX_LENGTH
from governance import policies as inventory
from governance.api.authentication import MachinePrincipal, api_actor
from governance.choices import IdentityKind, RiskTier
from governance.errors import ValidationFailed
from jit.choices import DelegationStatus
from jit.models import Delegation
from jit.selectors_delegations import delegations_visible_to
from jit.services.delegations import delegation_create, delegation_revoke

MAX_ID = 2**63 - 1


class DelegationSerializer(serializers.ModelSerializer):
    """A delegation: who lets which machine act for them, on what, until when."""

    delegator_name = serializers.CharField(source="delegator.name", read_only=True)
    delegator_kind = serializers.ChoiceField(source="delegator.kind", choices=IdentityKind.choices, read_only=True)
    delegate_name = serializers.CharField(source="delegate.name", read_only=True)
    delegate_kind = serializers.ChoiceField(source="delegate.kind", choices=IdentityKind.choices, read_only=True)
    entitlements = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="Entitlement ids it covers; empty: any up to max_risk_tier."
    )
    status = serializers.SerializerMethodField()

    class Meta:
        model = Delegation
        fields = [
            "id",
            "delegator",
            "delegator_name",
            "delegator_kind",
            "delegate",
            "delegate_name",
            "delegate_kind",
            "entitlements",
            "max_risk_tier",
            "may_redelegate",
            "purpose",
            "expires_at",
            "revoked_at",
            "created_at",
            "status",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=DelegationStatus.choices))
    def get_status(self, delegation) -> str:
        return delegation.status_at(timezone.now())


class DelegationCreateSerializer(serializers.Serializer):
    """Let a machine act for an identity (by default, the caller itself) within a scope, until an expiry."""

    delegator = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        max_value=MAX_ID,
        help_text="Identity id the delegate acts for: yourself (the default) or a machine you own.",
    )
    delegate = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, help_text="Identity id of a service account, workload or agent."
    )
    entitlements = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        required=False,
        default=list,
        max_length=100,
        help_text="Entitlement ids it covers; empty: any up to max_risk_tier.",
    )
    max_risk_tier = serializers.ChoiceField(choices=RiskTier.choices, default=RiskTier.MEDIUM)
    may_redelegate = serializers.BooleanField(default=False, help_text="The delegate may delegate further.")
    purpose = serializers.CharField(max_length=FREE_TEXT_MAX_LENGTH, help_text="What the delegate acts for you on.")
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="At most DELEGATION_MAX_DAYS (30 by default) from now; empty: 7 days from now.",
    )


class RevokeSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=FREE_TEXT_MAX_LENGTH)


CREATE_EXAMPLE = OpenApiExample(
    "A person lets an orchestrator act for them",
    value={
        "delegate": 31,
        "entitlements": [7],
        "max_risk_tier": "medium",
        "may_redelegate": True,
        "purpose": "Nightly reconciliation: the orchestrator may hand tasks to worker agents.",
        "expires_at": "2026-12-10T00:00:00Z",
    },
    request_only=True,
)


class DelegationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Delegations the caller gave or received (a person: also those of the machines they own)."""

    serializer_class = DelegationSerializer
    pagination_class = NewestFirst
    filter_backends = []
    token_area = "delegations"
    machines_allowed = True  # an orchestrator delegates to its workers; a worker declines

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Delegation.objects.none()
        user = self.request.user
        if isinstance(user, MachinePrincipal):
            return delegations_visible_to(machine=user.identity)
        return delegations_visible_to(user=user)

    def _shown(self, delegation, code=status.HTTP_200_OK) -> Response:
        return Response(DelegationSerializer(self.get_queryset().get(pk=delegation.pk)).data, status=code)

    @extend_schema(request=DelegationCreateSerializer, responses={201: DelegationSerializer}, examples=[CREATE_EXAMPLE])
    def create(self, request, *args, **kwargs):
        payload = DelegationCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        delegator_id = data["delegator"]
        if delegator_id is None:
            me = (
                request.user.identity
                if isinstance(request.user, MachinePrincipal)
                else inventory.identity_of(request.user)
            )
            if me is None:
                message = "Your login is not linked to an identity: name the delegator."
                raise ValidationFailed(message, field_errors={"delegator": [message]})
            delegator_id = me.pk
        created = delegation_create(
            actor=api_actor(request),
            delegator_id=delegator_id,
            delegate_id=data["delegate"],
            entitlement_ids=data["entitlements"],
            max_risk_tier=data["max_risk_tier"],
            may_redelegate=data["may_redelegate"],
            purpose=data["purpose"],
            expires_at=data["expires_at"],
        )
        return self._shown(created, status.HTTP_201_CREATED)

    @extend_schema(request=RevokeSerializer, responses=DelegationSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None, version=None):
        """Revoke a delegation you gave (or one of a machine you own), or decline one given to you."""
        target = self.get_object()
        payload = RevokeSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        revoked = delegation_revoke(
            actor=api_actor(request), delegation_id=target.pk, reason=payload.validated_data["reason"]
        )
        return self._shown(revoked)
