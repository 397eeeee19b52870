"""One place that turns domain errors into HTTP answers for every API view."""

import math

from django.core.exceptions import ObjectDoesNotExist
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed, Throttled, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from governance.errors import DomainError


def exception_handler(exc, context):
    """ValidationFailed and bad fields 400 (`errors` by field), PermissionRefused 403, InvalidTransition 409,
    missing 404, over the rate 429 with Retry-After."""
    if isinstance(exc, DomainError):
        body = {"detail": exc.message}
        if exc.field_errors:
            # A service names its own fields; the view says what the API calls them (duration_seconds).
            renamed = getattr(context.get("view"), "service_field_names", {})
            body["errors"] = {renamed.get(name, name): errors for name, errors in exc.field_errors.items()}
        return Response(body, status=exc.status_code)
    if isinstance(exc, ObjectDoesNotExist):
        return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, Throttled):
        # Retry-After (whole seconds) tells a client when to come back; the body says it in words.
        wait = math.ceil(exc.wait) if exc.wait is not None else None
        detail = f"Too many requests: try again in {wait} seconds." if wait is not None else "Too many requests."
        response = Response({"detail": detail}, status=status.HTTP_429_TOO_MANY_REQUESTS)
        if wait is not None:
            response["Retry-After"] = str(wait)
        return response
    if isinstance(exc, AuthenticationFailed):
        # A token refused: the reason in words, and as a code a program can act on (token_expired, ...).
        response = drf_exception_handler(exc, context)
        if response is not None:
            response.data = {"detail": str(exc.detail), "code": exc.get_codes()}
        return response
    if isinstance(exc, ValidationError) and isinstance(exc.detail, dict):
        # The same shape as a service's refusal: a client reads field errors from one place.
        return Response({"detail": "Check the fields.", "errors": exc.detail}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)
