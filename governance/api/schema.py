"""The OpenAPI schema's error answers, documented once for every operation (DEFAULT_SCHEMA_CLASS).

Every refusal has the shape `governance.api.exceptions.exception_handler` gives it: `detail` in words,
`code` for a program, for bad input `errors` by field, and for a policy refusal its `reasons`. Which codes an operation documents follows from what it is, so a
new endpoint gets them without repeating them: 403 (not allowed) and 429 (over the rate, with
Retry-After) on all; 401 only where an authentication class answers it (DRF turns a missing session
into 403); 404 on one object, or where a query names a page or format that does not exist; 400 where
input is parsed (a body, filters); 409 (lost race, terminal state) on every change; 415 where a body is
read.
"""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, safe to show to a person.")
    errors = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        help_text="Bad input only: the messages by field (a list of strings, or nested by item or key).",
    )
    code = serializers.CharField(
        help_text="Why, for a program to branch on: invalid (bad input), policy_refused (the access policy "
        "said no: see `reasons`), permission_denied, insufficient_scope (the token lacks the scope), "
        "machine_not_allowed, token_not_accepted, not_authenticated, a refused token's token_invalid, "
        "token_expired, token_revoked, identity_inactive or network_not_allowed, not_found, conflict, "
        "unsupported_media_type, throttled.",
    )
    reasons = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="A policy refusal only: every reason the policy gave, `detail` being the first.",
    )

    class Meta:
        ref_name = "Error"


ERROR_DESCRIPTIONS = {
    "400": "Bad input, or the access policy said no (`code: policy_refused`, every one of its `reasons`): "
    "nothing was changed (`errors` by field).",
    "401": "Not signed in.",
    "403": "Not signed in, or not allowed to do this.",
    "404": "No such object among those you may see, or no such page.",
    "409": "The object's state does not allow this (a lost race, a terminal state); nothing was changed.",
    "415": "The body's Content-Type is not one this operation reads.",
    "429": "Too many requests: come back after Retry-After seconds.",
}


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                responses[code]["description"] = ERROR_DESCRIPTIONS[code]
        if "429" in responses:
            responses["429"].setdefault("headers", {})["Retry-After"] = {
                "schema": {"type": "integer"},
                "description": "Seconds to wait before the next request.",
            }
        return responses

    def _error_codes(self) -> list[str]:
        view = self.view
        codes = ["403"]
        if any(getattr(auth, "authenticate_header", lambda request: None)(None) for auth in view.get_authenticators()):
            codes.append("401")
        has_path_parameters = "{" in self.path
        has_query_parameters = any(parameter.get("in") == "query" for parameter in self._get_parameters())
        if self.method in UNSAFE_METHODS or has_query_parameters:
            codes.append("400")
        if has_path_parameters or has_query_parameters:
            codes.append("404")
        if self.method in UNSAFE_METHODS:
            codes.append("409")
        if self.method in UNSAFE_METHODS and self.method != "DELETE":
            codes.append("415")
        if view.get_throttles():
            codes.append("429")
        return sorted(codes)


class HandedOverSerializer(serializers.Serializer):
    """What an edit answers when it handed the object to someone else, out of the caller's sight."""

    id = serializers.IntegerField()
    detail = serializers.CharField()

    class Meta:
        ref_name = "HandedOver"


def or_handed_over(serializer_class: type[serializers.Serializer]) -> PolymorphicProxySerializer:
    """The object as the caller now sees it, or `HandedOver` when they no longer may (ReadUpdateViewSet._fresh)."""
    name = serializer_class.__name__.removesuffix("Serializer")
    return PolymorphicProxySerializer(
        component_name=f"{name}OrHandedOver",
        serializers=[serializer_class, HandedOverSerializer],
        resource_type_field_name=None,
    )
