"""The request API: thin views that parse input, call one service and render the result.

Domain errors map to status codes in one place (the project's DRF exception handler):
bad input 400, not allowed 403, lost race or terminal state 409.
"""

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audit.kernel.pagination import NewestFirst
from jit.models import AccessRequest, ApprovalStage
from jit.selectors import requests_visible_to
from jit.services.approvals import access_request_decide
from jit.services.lifecycle import grant_release
from jit.services.requests import access_request_activate, access_request_cancel, access_request_submit

from .filters import AccessRequestFilter
from .serializers import AccessRequestSerializer, DecisionSerializer, NoteSerializer, SubmitSerializer


def visible_requests(user):
    """The requests this user may see (`jit.selectors.requests_visible_to`), with what the API shows."""
    return (
        requests_visible_to(user)
        .select_related("requester", "beneficiary", "entitlement")
        .prefetch_related(Prefetch("stages", queryset=ApprovalStage.objects.prefetch_related("approvals__approver")))
    )


class AccessRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = AccessRequestSerializer
    pagination_class = NewestFirst
    filterset_class = AccessRequestFilter
    service_field_names = {"duration": "duration_seconds"}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return AccessRequest.objects.none()
        return visible_requests(self.request.user)

    def _done(self, request_obj, code=status.HTTP_200_OK) -> Response:
        return Response(AccessRequestSerializer(self.get_queryset().get(pk=request_obj.pk)).data, status=code)

    @extend_schema(request=SubmitSerializer, responses={201: AccessRequestSerializer})
    def create(self, request, *args, **kwargs):
        payload = SubmitSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        created = access_request_submit(actor=request.user, **payload.to_service_kwargs())
        return self._done(created, status.HTTP_201_CREATED)

    @extend_schema(request=DecisionSerializer, responses=AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None, version=None):
        return self._decide(request, "approve")

    @extend_schema(request=DecisionSerializer, responses=AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def deny(self, request, pk=None, version=None):
        return self._decide(request, "deny")

    def _decide(self, request, decision: str) -> Response:
        target = self.get_object()
        payload = DecisionSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        decided = access_request_decide(
            request_id=target.pk,
            approver=request.user,
            decision=decision,
            comment=payload.validated_data["comment"],
            stage_position=payload.validated_data["stage"],
        )
        return self._done(decided)

    @extend_schema(request=NoteSerializer, responses=AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None, version=None):
        target = self.get_object()
        payload = NoteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        return self._done(
            access_request_cancel(request_id=target.pk, actor=request.user, reason=payload.validated_data["reason"])
        )

    @extend_schema(request=None, responses=AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None, version=None):
        target = self.get_object()
        return self._done(access_request_activate(request_id=target.pk, actor=request.user))


class GrantActionsViewSet(viewsets.GenericViewSet):
    """Actions a holder takes on their JIT grant."""

    serializer_class = NoteSerializer

    def get_queryset(self):
        from governance.models import Grant
        from governance.selectors import grant_list

        if getattr(self, "swagger_fake_view", False):
            return Grant.objects.none()
        return grant_list(user=self.request.user)

    @extend_schema(request=NoteSerializer, responses={200: None})
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None, version=None):
        grant = self.get_object()
        payload = NoteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        released = grant_release(grant_id=grant.pk, actor=request.user, reason=payload.validated_data["reason"])
        return Response({"id": released.pk, "status": released.status, "end_reason": released.end_reason})
