"""Who am I: the caller's identity and, when it came with one, its token; so that a script or an agent
learns the id it asks for itself with, and when its token runs out, from the API alone."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from governance import policies

from ..models import ApiToken
from .authentication import MachinePrincipal


class MeIdentitySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()


class MeTokenSerializer(serializers.Serializer):
    prefix = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField()


class MeSerializer(serializers.Serializer):
    identity = MeIdentitySerializer(allow_null=True, help_text="Null for a login without an identity.")
    token = MeTokenSerializer(allow_null=True, help_text="Null when signed in by session.")


class MeView(APIView):
    token_area = "requests"  # any machine token holds requests:read; a person's script may too
    machines_allowed = True

    @extend_schema(responses=MeSerializer, summary="The caller's identity and token")
    def get(self, request, *args, **kwargs):
        if isinstance(request.user, MachinePrincipal):
            identity = request.user.identity
        else:
            identity = policies.identity_of(request.user)
        token = request.auth if isinstance(request.auth, ApiToken) else None
        return Response(MeSerializer({"identity": identity, "token": token}).data)
