"""One place that turns domain errors into HTTP answers for every API view.

Every refusal has one shape: `detail` in words for a person, `code` for a program to branch on, `errors`
by field for bad input, and `reasons` (every one the policy gave) when the access policy refused.
"""

import math

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from governance.errors import DomainError


def exception_handler(exc, context):
    """ValidationFailed and bad fields 400 (`errors` by field), PermissionRefused 403, InvalidTransition 409,
    missing 404, over the rate 429 with Retry-After; each with its `code`."""
    if isinstance(exc, DomainError):
        body = {"detail": exc.message, "code": exc.code}
        if exc.reasons:
            body["reasons"] = exc.reasons
        if exc.field_errors:
            # A service names its own fields; the view says what the API calls them (duration_seconds).
            renamed = getattr(context.get("view"), "service_field_names", {})
            body["errors"] = {renamed.get(name, name): errors for name, errors in exc.field_errors.items()}
        return Response(body, status=exc.status_code)
    if isinstance(exc, (ObjectDoesNotExist, Http404)):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.Throttled):
        # Retry-After (whole seconds) tells a client when to come back; the body says it in words.
        wait = math.ceil(exc.wait) if exc.wait is not None else None
        detail = f"Too many requests: try again in {wait} seconds." if wait is not None else "Too many requests."
        response = Response({"detail": detail, "code": "throttled"}, status=status.HTTP_429_TOO_MANY_REQUESTS)
        if wait is not None:
            response["Retry-After"] = str(wait)
        return response
    if isinstance(exc, exceptions.ValidationError):
        # The same shape as a service's refusal: a client reads field errors from one place.
        errors = exc.detail if isinstance(exc.detail, dict) else {api_settings.NON_FIELD_ERRORS_KEY: exc.detail}
        return Response({"detail": "Check the fields.", "code": "invalid", "errors": errors}, status=exc.status_code)
    response = drf_exception_handler(exc, context)  # keeps WWW-Authenticate, Allow, ...
    if response is not None and isinstance(exc, exceptions.APIException):
        # A refused token says why as a code a program can act on (token_expired, insufficient_scope, ...).
        codes = exc.get_codes()
        response.data = {
            "detail": str(exc.detail) if not isinstance(exc.detail, list | dict) else "Refused.",
            "code": codes if isinstance(codes, str) else exc.default_code,
        }
    return response
