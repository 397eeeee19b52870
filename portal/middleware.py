"""Refuse text the database cannot store before any view sees it; the admin's writes as one state change."""

from django.http import HttpResponseBadRequest
from django.urls import reverse

from audit.services import state_change

MESSAGE = "Text may not contain NUL characters (\\x00); remove them and try again."


class RejectNulCharactersMiddleware:
    """A NUL in a query string or form field is a clear 400, never a database error half-way through.

    PostgreSQL text and jsonb columns refuse NUL; forms and DRF serializers already reject it in
    the fields they declare, this covers the raw parameters (reasons, notes, filters) too.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _has_nul(request.GET) or (request.method == "POST" and _has_nul(request.POST)):
            return HttpResponseBadRequest(MESSAGE, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def _has_nul(params) -> bool:
    return any("\x00" in key or any("\x00" in value for value in params.getlist(key)) for key in params)


class AdminWritesAreStateChangesMiddleware:
    """An admin form that saves (a login, its roles) is one `state_change`: one transaction whose audit
    events (written by signals) go onto the chain at commit, like every service's.

    Without it such a form would take the chain at its first event and hold it while it writes more
    rows, which a service holding one of those rows and waiting for the chain could deadlock with.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.prefix: str | None = None

    def __call__(self, request):
        if self.prefix is None:
            self.prefix = reverse("admin:index")
        if request.method == "POST" and request.path.startswith(self.prefix):
            # Not run again on a deadlock: the view may have queued messages for the person.
            return state_change(self.get_response, retry=False)(request)
        return self.get_response(request)
