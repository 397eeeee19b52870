"""POST /api/v1/connectors/webhook/callback/: a webhook target that finishes its work later says how a job
ended (governance.connectors.webhook.webhook_callback_accept). The target holds no portal credential: the
signature with its system's signing secret is the authentication, so the view takes no session or token
(and so no CSRF check) and is throttled per client address like any anonymous call."""

from django.http.request import RawPostDataException
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from governance.connectors.webhook import CALLBACK_EVENTS, webhook_callback_accept

from .schema import ErrorSerializer
from .throttling import AnonRateThrottle

DEFAULT_RATE = "6000/minute"  # a target confirming a mass expiry one grant at a time


class CallbackThrottle(AnonRateThrottle):
    """Per client address; its own rate (`connector_callback` in DEFAULT_THROTTLE_RATES, else 100/s), since a
    target confirming thousands of revocations is one address."""

    scope = "connector_callback"

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope) or DEFAULT_RATE


class WebhookCallbackSerializer(serializers.Serializer):
    grant = serializers.IntegerField(help_text="The grant's id, as the portal's event sent it (grant.id).")
    event = serializers.ChoiceField(choices=list(CALLBACK_EVENTS))
    error = serializers.CharField(
        required=False, allow_blank=True, help_text="With grant.failed: why, for the people who fix it."
    )

    class Meta:
        ref_name = "WebhookCallback"


class WebhookCallbackAnswerSerializer(serializers.Serializer):
    grant = serializers.IntegerField()
    status = serializers.CharField(help_text="The grant's status after the callback.")
    changed = serializers.BooleanField(help_text="False for a repeat or a replay: it had no second effect.")

    class Meta:
        ref_name = "WebhookCallbackAnswer"


SIGNATURE_HEADERS = [
    OpenApiParameter(
        "X-Portal-Timestamp", str, OpenApiParameter.HEADER, required=True, description="Unix time, seconds."
    ),
    OpenApiParameter(
        "X-Portal-Signature",
        str,
        OpenApiParameter.HEADER,
        required=True,
        description="v1=<hex HMAC-SHA256 of '<timestamp>.<body>' with the system's signing secret>.",
    ),
]


class WebhookCallbackView(APIView):
    authentication_classes = []  # the signature is the credential
    permission_classes = [AllowAny]
    throttle_classes = [CallbackThrottle]
    parser_classes = [JSONParser]  # documents the one body it reads; the view checks the raw bytes itself

    @extend_schema(
        operation_id="connector_webhook_callback",
        tags=["connectors"],
        auth=[],
        summary="A webhook target confirms (or fails) a job it accepted earlier",
        description="For webhook systems set to confirm later: the body is signed with the system's signing "
        "secret like the portal's own events; a timestamp more than 5 minutes off, a bad signature or an unknown "
        "grant answer 401 with nothing done; a replay or a repeat answers 200 with `changed: false`.",
        parameters=SIGNATURE_HEADERS,
        request=WebhookCallbackSerializer,
        responses={
            200: WebhookCallbackAnswerSerializer,
            401: OpenApiResponse(
                ErrorSerializer,
                description="Not signed by the grant's system (`signature_missing`, `signature_invalid`, "
                "`timestamp_out_of_range`): nothing was done.",
            ),
        },
        examples=[
            OpenApiExample("Done", value={"grant": 42, "event": "grant.provisioned"}, request_only=True),
            OpenApiExample(
                "Failed", value={"grant": 42, "event": "grant.failed", "error": "no such group"}, request_only=True
            ),
        ],
    )
    def post(self, request, *args, **kwargs):
        if request.content_type.split(";")[0].strip().lower() != "application/json":
            raise UnsupportedMediaType(request.content_type)
        try:
            body = request.body  # the exact bytes the target signed
        except RawPostDataException:
            raise ParseError("The body was read before it could be checked: send it as application/json.") from None
        outcome = webhook_callback_accept(
            body=body,
            timestamp=request.headers.get("X-Portal-Timestamp", ""),
            signature=request.headers.get("X-Portal-Signature", ""),
        )
        return Response(
            {"grant": outcome.grant.pk, "status": outcome.grant.status, "changed": outcome.changed},
            status=status.HTTP_200_OK,
        )
