"""One place that turns domain errors into HTTP answers for every API view."""

from django.core.exceptions import ObjectDoesNotExist
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from governance.errors import DomainError


def exception_handler(exc, context):
    """ValidationFailed 400 (with field errors), PermissionRefused 403, InvalidTransition 409, missing 404."""
    if isinstance(exc, DomainError):
        body = {"detail": exc.message}
        if exc.field_errors:
            body["errors"] = exc.field_errors
        return Response(body, status=exc.status_code)
    if isinstance(exc, ObjectDoesNotExist):
        return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    return drf_exception_handler(exc, context)
