"""A database that drops the connection (a failover, a restart, a network blip) is a 503 "try again".

The service that was running is gone with its transaction, so nothing it did was written; the person
or the client only needs to send the request again. The answer is made without the database: the
page is rendered without the request's context (no user, no navigation, no session lookups).
"""

import logging

from django.db import InterfaceError, OperationalError, connections
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MESSAGE = "The service is briefly unavailable, try again in a few seconds."


class DatabaseUnavailableMiddleware:
    """Answer OperationalError and InterfaceError from a view with 503 and Retry-After instead of a 500.

    Pages get templates/503.html; htmx requests the message alone, put in the page's message area;
    the API (/api/) a JSON body like its other errors. Connections the error left unusable are closed,
    so the next request opens a fresh one.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.error("Database unavailable during %s %s", request.method, request.path, exc_info=exception)
        _close_broken_connections()
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": MESSAGE, "code": "unavailable"}, status=503)
        elif request.headers.get("HX-Request") == "true":
            response = HttpResponse(render_to_string("includes/unavailable.html", {"message": MESSAGE}), status=503)
            # In the page's message area, whatever element asked (base.html swaps a 503's answer).
            response["HX-Retarget"], response["HX-Reswap"] = "#messages", "innerHTML"
        else:
            response = HttpResponse(render_to_string("503.html", {"message": MESSAGE}), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        response["Cache-Control"] = "no-store"
        return response


def _close_broken_connections() -> None:
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:  # a transaction still open is its owner's to end
            conn.close_if_unusable_or_obsolete()
