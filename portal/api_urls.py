"""/api/v1/: every app's API under one versioned prefix, plus the OpenAPI schema and its docs page."""

from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView


@csrf_exempt  # it changes nothing; a token's POST (no CSRF cookie) gets this 404, not the CSRF failure page
def api_not_found(request, *args, **kwargs) -> JsonResponse:
    """Any other path under the API (an id that is not one, a missing slash) answers in the API's
    shape, as its schema says, not with the HTML page."""
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


urlpatterns = [
    path("", include("governance.api.urls")),
    path("", include("jit.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file: the Content-Security-Policy refuses inline ones.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"", api_not_found),  # last: only what nothing above answers
]
