"""The request API: thin views that parse input, call one service and render the result.

Domain errors map to status codes in one place (the project's DRF exception handler):
bad input 400, not allowed 403, lost race or terminal state 409.
"""

from django.db.models import Prefetch, Q
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audit.kernel.pagination import NewestFirst
from governance.api.authentication import MachinePrincipal, api_actor
from governance.errors import PermissionRefused
from jit.models import AccessRequest, Approval, ApprovalStage
from jit.selectors import requests_visible_to
from jit.services.approvals import access_request_decide
from jit.services.lifecycle import grant_release
from jit.services.requests import access_request_activate, access_request_cancel, access_request_submit

from .filters import AccessRequestFilter
from .request_rows import request_rows, request_values
from .schema_examples import SUBMIT_EXAMPLES
from .serializers import (
    AccessRequestSerializer,
    BreakGlassActivateSerializer,
    BreakGlassActivationSerializer,
    BreakGlassEligibilitySerializer,
    DecisionSerializer,
    NoteSerializer,
    SubmitSerializer,
    SubmittedRequestSerializer,
)

# What a request shows of the people and entitlement it names, and of each approval (AccessRequestSerializer):
# read without the rest of their rows (an entitlement's four JSON settings, a login's password hash).
NAMED = ("requester__username", "beneficiary__name", "entitlement__name")
APPROVAL_SHOWN = ("stage", "approver__username", "decision", "comment", "decided_at")


def requests_seen_by(user):
    """The requests this user may see (`jit.selectors.requests_visible_to`).

    A machine signed in by its token sees the requests it made and those for itself."""
    if isinstance(user, MachinePrincipal):
        machine = user.identity
        return AccessRequest.objects.filter(Q(requester_identity=machine) | Q(beneficiary=machine))
    return requests_visible_to(user)


def visible_requests(user):
    """The requests this user may see, with what the API shows of one (`AccessRequestSerializer`)."""
    found = requests_seen_by(user)
    own = [field.name for field in AccessRequest._meta.concrete_fields]
    approvals = Approval.objects.select_related("approver").only(*APPROVAL_SHOWN)
    # As lists (`to_attr`, what the serializer reads): a related manager's queryset cloned for each request
    # and each stage was a sixth of a page's time.
    stages = ApprovalStage.objects.prefetch_related(
        Prefetch("approvals", queryset=approvals, to_attr="approvals_shown")
    )
    return (
        found.select_related("requester", "beneficiary", "entitlement")
        .only(*own, *NAMED)
        .prefetch_related(Prefetch("stages", queryset=stages, to_attr="stages_shown"))
    )


class AccessRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = AccessRequestSerializer
    pagination_class = NewestFirst
    filterset_class = AccessRequestFilter
    service_field_names = {"duration": "duration_seconds"}
    token_area = "requests"
    machines_allowed = True

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return AccessRequest.objects.none()
        return visible_requests(self.request.user)

    def list(self, request, *args, **kwargs):
        """A page of requests, read as values and written as the serializer writes them (`request_rows`)."""
        rows = request_values(self.filter_queryset(requests_seen_by(request.user)))
        return self.get_paginated_response(request_rows(self.paginate_queryset(rows)))

    def _done(self, request_obj, code=status.HTTP_200_OK) -> Response:
        return Response(AccessRequestSerializer(self.get_queryset().get(pk=request_obj.pk)).data, status=code)

    @extend_schema(request=SubmitSerializer, responses={201: SubmittedRequestSerializer}, examples=SUBMIT_EXAMPLES)
    def create(self, request, *args, **kwargs):
        payload = SubmitSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        created = access_request_submit(actor=api_actor(request), **payload.to_service_kwargs())
        answer = AccessRequestSerializer(self.get_queryset().get(pk=created.pk)).data
        if secret := getattr(created, "callback_secret", None):
            answer["callback_secret"] = secret
        return Response(answer, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @extend_schema(request=DecisionSerializer, responses=AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None, version=None):
        return self._decide(request, "approve")

    @extend_schema(request=DecisionSerializer, responses=AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def deny(self, request, pk=None, version=None):
        return self._decide(request, "deny")

    def _decide(self, request, decision: str) -> Response:
        if isinstance(request.user, MachinePrincipal):
            raise PermissionRefused("Machines do not approve access: people do.")
        target = self.get_object()
        payload = DecisionSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        decided = access_request_decide(
            request_id=target.pk,
            approver=request.user,
            decision=decision,
            comment=payload.validated_data["comment"],
            stage_position=payload.validated_data["stage"],
            **payload.narrowing(),
        )
        return self._done(decided)

    @extend_schema(request=NoteSerializer, responses=AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None, version=None):
        target = self.get_object()
        payload = NoteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        return self._done(
            access_request_cancel(
                request_id=target.pk, actor=api_actor(request), reason=payload.validated_data["reason"]
            )
        )

    @extend_schema(request=None, responses=AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None, version=None):
        target = self.get_object()
        return self._done(access_request_activate(request_id=target.pk, actor=api_actor(request)))


class GrantActionsViewSet(viewsets.GenericViewSet):
    """Actions a holder takes on their JIT grant."""

    serializer_class = NoteSerializer
    token_area = "grants"
    machines_allowed = True

    def get_queryset(self):
        from governance.models import Grant
        from governance.selectors import grant_list

        if getattr(self, "swagger_fake_view", False):
            return Grant.objects.none()
        if isinstance(self.request.user, MachinePrincipal):
            return Grant.objects.filter(identity=self.request.user.identity)
        return grant_list(user=self.request.user)

    @extend_schema(request=NoteSerializer, responses={200: None})
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None, version=None):
        grant = self.get_object()
        payload = NoteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        released = grant_release(grant_id=grant.pk, actor=api_actor(request), reason=payload.validated_data["reason"])
        return Response({"id": released.pk, "status": released.status, "end_reason": released.end_reason})


class BreakGlassEligibilityViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The break-glass eligibilities in force for the caller."""

    serializer_class = BreakGlassEligibilitySerializer
    pagination_class = None
    filter_backends = []
    token_area = "break_glass"
    machines_allowed = True  # automated incident response: a machine named by an eligibility

    def get_queryset(self):
        from jit.models import BreakGlassEligibility
        from jit.selectors_break_glass import eligible_entitlements

        if getattr(self, "swagger_fake_view", False):
            return BreakGlassEligibility.objects.none()
        user = self.request.user
        return eligible_entitlements(user.identity if isinstance(user, MachinePrincipal) else user)


class BreakGlassActivationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Break-glass activations the caller may see; POST breaks glass (step-up in the body)."""

    serializer_class = BreakGlassActivationSerializer
    pagination_class = NewestFirst
    filter_backends = []
    token_area = "break_glass"
    machines_allowed = True

    def get_queryset(self):
        from jit.models import BreakGlassActivation
        from jit.selectors_break_glass import ACTIVATION_JOINS, activations_visible_to

        if getattr(self, "swagger_fake_view", False):
            return BreakGlassActivation.objects.none()
        if isinstance(self.request.user, MachinePrincipal):
            return BreakGlassActivation.objects.filter(identity=self.request.user.identity).select_related(
                *ACTIVATION_JOINS
            )
        return activations_visible_to(self.request.user).select_related(*ACTIVATION_JOINS)

    @extend_schema(request=BreakGlassActivateSerializer, responses={201: BreakGlassActivationSerializer})
    def create(self, request, *args, **kwargs):
        from jit.services.break_glass import break_glass_activate

        payload = BreakGlassActivateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        machine = isinstance(request.user, MachinePrincipal)
        activation = break_glass_activate(
            actor=api_actor(request),
            # A machine re-authenticated with its own token on this very call; a person gives a password.
            step_up_verified_by="api_token" if machine else None,
            eligibility_id=data["eligibility"],
            incident_reference=data["incident_reference"],
            reason=data["reason"],
            password=data["password"],
            otp_token=data["otp_token"],
        )
        shown = self.get_queryset().get(pk=activation.pk)
        return Response(BreakGlassActivationSerializer(shown).data, status=status.HTTP_201_CREATED)
