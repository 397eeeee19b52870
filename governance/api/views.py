"""The inventory API. Reads come from the selectors (so a user sees what the pages show them, and
anything else is 404); writes parse input and call exactly one service."""

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audit.kernel.pagination import NewestFirst
from governance import selectors
from governance.filters import EntitlementFilter, IdentityFilter, SystemFilter
from governance.services import catalogue, connections, grants, identities

from .authentication import MachinePrincipal
from .filters import FindingFilter, GrantFilter
from .schema import or_handed_over
from .serializers import (
    ConnectionTestSerializer,
    EntitlementSerializer,
    FindingSerializer,
    GrantCreateSerializer,
    GrantSerializer,
    HeldPolicyChangeSerializer,
    IdentityCreateSerializer,
    IdentitySerializer,
    ReasonSerializer,
    SystemSerializer,
)


def _reason(request, serializer=ReasonSerializer) -> str:
    payload = serializer(data=request.data)
    payload.is_valid(raise_exception=True)
    return payload.validated_data["reason"]


class ReadUpdateViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    http_method_names = ["get", "post", "patch", "head", "options"]
    token_area = "inventory"  # a person's token with inventory:read / inventory:write

    def _fresh(self, obj, code=status.HTTP_200_OK) -> Response:
        """The object as the caller now sees it; one they just handed over may be out of their sight."""
        visible = self.get_queryset().filter(pk=obj.pk).first()
        if visible is None:
            return Response({"id": obj.pk, "detail": "Done; it is no longer yours to see."}, status=code)
        return Response(self.get_serializer(visible).data, status=code)


class IdentityViewSet(ReadUpdateViewSet):
    serializer_class = IdentitySerializer
    pagination_class = NewestFirst
    filterset_class = IdentityFilter

    def get_queryset(self):
        identities = selectors.identity_list(user=self.request.user)
        if self.action == "list":
            # A list names each identity's owner; the backup owner and manager go out as ids (no join).
            return identities.select_related(None).select_related("owner")
        return identities

    @extend_schema(request=IdentityCreateSerializer, responses={201: IdentitySerializer})
    def create(self, request, *args, **kwargs):
        payload = IdentityCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        created = identities.identity_create(actor=request.user, kind=data.pop("kind"), name=data.pop("name"), **data)
        return self._fresh(created, status.HTTP_201_CREATED)

    @extend_schema(request=IdentitySerializer, responses=or_handed_over(IdentitySerializer))
    def partial_update(self, request, *args, **kwargs):
        identity = self.get_object()
        payload = IdentityCreateSerializer(identity, data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        data.pop("kind", None)
        # One PATCH, one outcome: if the edit is refused, the owner change before it is undone too.
        with transaction.atomic():
            owner, backup_owner = data.pop("owner", identity.owner), data.pop("backup_owner", identity.backup_owner)
            # Sent back as read, the owners are no change (a delegate's PUT must not ask to hand it over).
            if (owner, backup_owner) != (identity.owner, identity.backup_owner):
                identities.identity_change_owner(
                    identity_id=identity.pk, actor=request.user, owner=owner, backup_owner=backup_owner
                )
            if data:
                identities.identity_update(identity_id=identity.pk, actor=request.user, changes=data)
        return self._fresh(identity)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    @extend_schema(request=ReasonSerializer, responses=IdentitySerializer)
    @action(detail=True, methods=["post"])
    def offboard(self, request, pk=None, version=None):
        identity = self.get_object()
        identities.identity_offboard(identity_id=identity.pk, actor=request.user, reason=_reason(request))
        return self._fresh(identity)

    @extend_schema(request=ReasonSerializer, responses=IdentitySerializer)
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None, version=None):
        identity = self.get_object()
        identities.identity_suspend(identity_id=identity.pk, actor=request.user, reason=_reason(request))
        return self._fresh(identity)


class SystemViewSet(ReadUpdateViewSet):
    serializer_class = SystemSerializer
    filterset_class = SystemFilter

    def get_queryset(self):
        return selectors.system_list(user=self.request.user).order_by("name", "id")

    def create(self, request, *args, **kwargs):
        payload = SystemSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        system = catalogue.system_create(actor=request.user, name=data.pop("name"), owner=data.pop("owner"), **data)
        return self._fresh(system, status.HTTP_201_CREATED)

    @extend_schema(responses=or_handed_over(SystemSerializer))
    def partial_update(self, request, *args, **kwargs):
        system = self.get_object()
        payload = SystemSerializer(system, data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        catalogue.system_update(system_id=system.pk, actor=request.user, changes=dict(payload.validated_data))
        return self._fresh(system)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    @extend_schema(request=ReasonSerializer, responses=SystemSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None, version=None):
        system = self.get_object()
        catalogue.system_retire(system_id=system.pk, actor=request.user, reason=_reason(request))
        return self._fresh(system)

    @extend_schema(request=None, responses=ConnectionTestSerializer)
    @action(detail=True, methods=["post"], url_path="test-connection")
    def test_connection(self, request, pk=None, version=None):
        """Ask the connector to try its target (the system's owner or an admin): each check in plain words."""
        system = self.get_object()
        checks = connections.system_test_connection(system_id=system.pk, actor=request.user)
        return Response(ConnectionTestSerializer({"ok": all(c.ok for c in checks), "checks": checks}).data)


class EntitlementViewSet(ReadUpdateViewSet):
    serializer_class = EntitlementSerializer
    filterset_class = EntitlementFilter

    def get_queryset(self):
        return selectors.entitlement_list(user=self.request.user).order_by("system__name", "name", "id")

    def create(self, request, *args, **kwargs):
        payload = EntitlementSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        entitlement = catalogue.entitlement_create(
            actor=request.user, system=data.pop("system"), name=data.pop("name"), owner=data.pop("owner"), **data
        )
        return self._fresh(entitlement, status.HTTP_201_CREATED)

    @extend_schema(
        request=EntitlementSerializer,
        responses={200: or_handed_over(EntitlementSerializer), 202: HeldPolicyChangeSerializer},
    )
    def partial_update(self, request, *args, **kwargs):
        entitlement = self.get_object()
        payload = EntitlementSerializer(entitlement, data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        changes = dict(payload.validated_data)
        changes.pop("system", None)
        updated = catalogue.entitlement_update(entitlement_id=entitlement.pk, actor=request.user, changes=changes)
        held = getattr(updated, "held_policy_change", None)
        if held is None:
            return self._fresh(entitlement)
        return Response(
            HeldPolicyChangeSerializer(
                {
                    "detail": "The change loosens a high or critical entitlement's policy: it applies once another "
                    "admin approves it; the rest of the change applied.",
                    "entitlement": self.get_queryset().get(pk=entitlement.pk),
                    "policy_change": held,
                }
            ).data,
            status=status.HTTP_202_ACCEPTED,
        )

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    @extend_schema(request=ReasonSerializer, responses=EntitlementSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None, version=None):
        entitlement = self.get_object()
        catalogue.entitlement_retire(entitlement_id=entitlement.pk, actor=request.user, reason=_reason(request))
        return self._fresh(entitlement)


class GrantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    serializer_class = GrantSerializer
    pagination_class = NewestFirst
    filterset_class = GrantFilter
    service_field_names = {"duration": "duration_seconds"}
    token_area = "grants"
    machines_allowed = frozenset({"list", "retrieve"})  # a machine reads its own grants

    def get_queryset(self):
        if isinstance(self.request.user, MachinePrincipal):
            grants = selectors.grant_list_of(identity=self.request.user.identity)
        else:
            grants = selectors.grant_list(user=self.request.user)
        # GrantSerializer sends the grant's own columns (its identity and entitlement as ids): the
        # selector's five joined rows a grant were built for nothing (~290 model instances a page).
        return grants.select_related(None)

    def _fresh(self, grant) -> Response:
        return Response(GrantSerializer(self.get_queryset().get(pk=grant.pk)).data)

    @extend_schema(request=GrantCreateSerializer, responses={201: GrantSerializer})
    def create(self, request, *args, **kwargs):
        payload = GrantCreateSerializer(
            data=request.data, visible_identities=selectors.identity_list(user=request.user)
        )
        payload.is_valid(raise_exception=True)
        grant = grants.grant_create(actor=request.user, **payload.service_kwargs())
        return Response(GrantSerializer(grant).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ReasonSerializer, responses=GrantSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None, version=None):
        grant = self.get_object()
        return self._fresh(grants.grant_revoke(grant_id=grant.pk, actor=request.user, reason=_reason(request)))

    @extend_schema(request=None, responses=GrantSerializer)
    @action(detail=True, methods=["post"], url_path="confirm-provisioned")
    def confirm_provisioned(self, request, pk=None, version=None):
        grant = self.get_object()
        return self._fresh(grants.grant_confirm_provisioned(grant_id=grant.pk, actor=request.user))

    @extend_schema(request=None, responses=GrantSerializer)
    @action(detail=True, methods=["post"], url_path="confirm-revoked")
    def confirm_revoked(self, request, pk=None, version=None):
        grant = self.get_object()
        return self._fresh(grants.grant_confirm_revoked(grant_id=grant.pk, actor=request.user))


class FindingViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = FindingSerializer
    token_area = "inventory"
    pagination_class = NewestFirst
    filterset_class = FindingFilter

    def get_queryset(self):
        # FindingSerializer sends the finding's own columns (related objects as ids): no joins.
        return selectors.finding_list(user=self.request.user).select_related(None)
