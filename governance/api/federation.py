"""POST /api/v1/token/exchange/: a workload trades a signed JWT from an issuer its identity trusts for a
short-lived bearer token (governance.services.federation). The caller holds no portal credential yet, so
the view takes none; it is throttled per client address like any anonymous call."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.middleware import client_ip
from governance.services.credentials import TokenRefused
from governance.services.federation import api_token_exchange

from .throttling import AnonRateThrottle

REFUSAL_CODES = (
    "invalid_request",
    "invalid_token",
    "untrusted_issuer",
    "wrong_audience",
    "expired",
    "no_trust",
    "identity_inactive",
    "replayed",
)


class TokenExchangeRequestSerializer(serializers.Serializer):
    subject_token = serializers.CharField(
        max_length=16384,
        trim_whitespace=True,
        help_text="The workload's JWT, signed by a configured issuer (e.g. a Kubernetes service-account "
        "token or a CI system's OIDC token), with the portal's audience.",
    )

    class Meta:
        ref_name = "TokenExchangeRequest"


class TokenExchangeResponseSerializer(serializers.Serializer):
    access_token = serializers.CharField(help_text="Send it as `Authorization: Bearer <access_token>`.")
    token_type = serializers.ChoiceField(choices=["Bearer"])
    expires_at = serializers.DateTimeField(
        help_text="The least of the trust's lifetime, the issuer's cap and the JWT's exp."
    )
    scopes = serializers.ListField(child=serializers.CharField())

    class Meta:
        ref_name = "TokenExchangeResponse"


class TokenExchangeErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="Why the exchange was refused, in words.")
    # Not an enum: input the portal refuses before this view reads it (a NUL character, say) answers with
    # the portal-wide `invalid`.
    code = serializers.CharField(help_text="Why, for a program: " + ", ".join(REFUSAL_CODES) + ", or invalid.")
    errors = serializers.DictField(child=serializers.JSONField(), required=False, help_text="Bad input, by field.")

    class Meta:
        ref_name = "TokenExchangeError"


class TokenExchangeView(APIView):
    authentication_classes = []  # the JWT is the credential; a session or token is not needed
    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle]

    @extend_schema(
        operation_id="token_exchange",
        tags=["token"],
        auth=[],
        summary="Exchange a workload's JWT for a short-lived API token",
        description="Workload federation: the JWT's issuer must be configured (WORKLOAD_ISSUERS), its "
        "signature, `aud`, `exp` (and `nbf`/`iat` when present) valid, and an active machine identity must "
        "trust its `iss` and `sub`. A JWT with a `jti` is exchanged once.",
        request=TokenExchangeRequestSerializer,
        responses={
            201: TokenExchangeResponseSerializer,
            400: TokenExchangeErrorSerializer,
            401: TokenExchangeErrorSerializer,
        },
        examples=[
            OpenApiExample(
                "Request", value={"subject_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0..."}, request_only=True
            ),
            OpenApiExample(
                "Issued",
                value={
                    "access_token": "gp_0123456789ab_...",
                    "token_type": "Bearer",
                    "expires_at": "2026-12-03T00:15:00Z",
                    "scopes": ["grants:read", "requests:write"],
                },
                response_only=True,
                status_codes=["201"],
            ),
            OpenApiExample(
                "Refused",
                value={"detail": "The JWT has expired.", "code": "expired"},
                response_only=True,
                status_codes=["401"],
            ),
        ],
    )
    def post(self, request, *args, **kwargs):
        try:
            data = request.data
        except ParseError as error:
            return Response(
                {"detail": str(error.detail), "code": "invalid_request"}, status=status.HTTP_400_BAD_REQUEST
            )
        payload = TokenExchangeRequestSerializer(data=data)
        if not payload.is_valid():
            return Response(
                {"detail": "Send the JWT as subject_token.", "code": "invalid_request", "errors": payload.errors},
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            issued = api_token_exchange(
                subject_token=payload.validated_data["subject_token"], client_ip=client_ip(request)
            )
        except TokenRefused as refusal:
            return Response(
                {"detail": str(refusal), "code": refusal.code},
                status=status.HTTP_401_UNAUTHORIZED,
                headers={"WWW-Authenticate": 'Bearer realm="api", error="invalid_token"'},
            )
        body = {
            "access_token": issued.secret,
            "token_type": "Bearer",
            "expires_at": issued.token.expires_at,
            "scopes": issued.token.scopes,
        }
        return Response(
            TokenExchangeResponseSerializer(body).data,
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )
