"""How list pages answer htmx: the whole page, or only the results the filter form swaps in place."""

from django.shortcuts import render
from django.utils.cache import patch_vary_headers


def render_list(request, template: str, results: str, context: dict):
    """The results partial for an htmx request, the page otherwise.

    A history restore (htmx missing its cache on Back) gets the whole page, and the answer varies
    on HX-Request so a browser never shows a cached fragment as the page.
    """
    partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, results if partial else template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response
