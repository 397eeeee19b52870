"""Refuse text the database cannot store before any view sees it; the admin's writes as one state change;
sessions that end by themselves; signed-in pages that no cache keeps; times in the viewer's zone;
the portal's own 404 and 403 pages even with DEBUG on."""

import time
import zoneinfo

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from audit.kernel.zones import COOKIE, known_zone
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
            if request.path.startswith("/api/"):  # in the API's error shape, as its schema says
                return JsonResponse({"detail": MESSAGE, "code": "invalid"}, status=400)
            return HttpResponseBadRequest(MESSAGE, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def _has_nul(params) -> bool:
    return any("\x00" in key or any("\x00" in value for value in params.getlist(key)) for key in params)


class AdminWritesAreStateChangesMiddleware:
    """An admin form that saves (an outbox message sent again) is one `state_change`: one transaction whose audit
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


SESSION_SIGNED_IN_AT = "portal_signed_in_at"
SESSION_LAST_SEEN_AT = "portal_last_seen_at"
SESSION_EXPIRED_MESSAGE = "Your session expired, sign in again."
# The last request's time is written at most this often (a session write per request is wasted
# work), so an idle session may end up to this much earlier than the timeout.
LAST_SEEN_RESOLUTION_SECONDS = 60


def session_mark_signed_in(session) -> None:
    """Called at sign-in (portal.signals): the absolute lifetime counts from here."""
    now = int(time.time())
    session[SESSION_SIGNED_IN_AT] = now
    session[SESSION_LAST_SEEN_AT] = now


class SessionLifetimeMiddleware:
    """Signs a person out after SESSION_IDLE_TIMEOUT_SECONDS without a request, and at the latest
    SESSION_ABSOLUTE_LIFETIME_SECONDS after they signed in, however busy: a session left open on a
    shared machine, or stolen, does not stay good for as long as the cookie does.

    Times are this process's clock: nothing is recorded by them, and a few seconds of skew between
    web nodes only moves the end of a session by as much.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            self._check(request)
        return self.get_response(request)

    def _check(self, request) -> None:
        session = request.session
        now = int(time.time())
        signed_in_at = session.get(SESSION_SIGNED_IN_AT)
        last_seen_at = session.get(SESSION_LAST_SEEN_AT, signed_in_at)
        if signed_in_at is not None and (
            now - signed_in_at >= settings.SESSION_ABSOLUTE_LIFETIME_SECONDS
            or now - last_seen_at >= settings.SESSION_IDLE_TIMEOUT_SECONDS
        ):
            request.session_end_reason = "session expired"  # in the sign-out's audit event
            logout(request)  # the page asked for then sends them to sign in
            messages.info(request, SESSION_EXPIRED_MESSAGE)
            return
        if signed_in_at is None:
            # A session from before these limits: its lifetime starts now.
            session[SESSION_SIGNED_IN_AT] = now
        if last_seen_at is None or now - last_seen_at >= LAST_SEEN_RESOLUTION_SECONDS:
            session[SESSION_LAST_SEEN_AT] = now


class NoStoreForSignedInMiddleware:
    """Whatever a signed-in person sees (their grants, the audit trail, an export) is never kept by the
    browser or a cache in between: the Back button after signing out on a shared machine shows nothing."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if getattr(request, "user", None) is not None and request.user.is_authenticated:
            add_never_cache_headers(response)
        return response


class TimeZoneMiddleware:
    """Every page shows (and its forms read) times in the viewer's zone: the one they chose on their profile
    (kept in the session at sign-in, so this costs no query), else their browser's (the `tz` cookie
    static/js/browser-time-zone.js keeps), else the portal's TIME_ZONE.

    The API is left in the portal's zone: its answers do not change with a browser's cookie.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from .profiles import SESSION_TIME_ZONE

        session = getattr(request, "session", None)
        chosen = known_zone(session.get(SESSION_TIME_ZONE)) if session is not None else None
        request.profile_time_zone = chosen or ""
        name = chosen or known_zone(request.COOKIES.get(COOKIE))
        if name is None or request.path.startswith("/api/"):
            timezone.deactivate()
            return self.get_response(request)
        timezone.activate(zoneinfo.ZoneInfo(name))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


class FriendlyErrorPagesMiddleware:
    """A missing object (Http404) or a refusal (PermissionDenied) on a page people see renders the portal's
    own templates/404.html and 403.html, in its design, even with DEBUG on (`make run`), where Django would
    otherwise show its debug page with the URL patterns and the traceback.

    The API keeps its JSON errors (its own exception handler); the admin keeps Django's.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.skip: tuple[str, ...] | None = None

    def __call__(self, request):
        response = self.get_response(request)
        if (
            settings.DEBUG
            and response.status_code == 404
            and getattr(request, "resolver_match", None) is None
            and not self._skipped(request)
        ):
            # No page at this address: Django's debug 404 would list every URL pattern.
            return self._page(request, "404.html", 404, None)
        return response

    def _skipped(self, request) -> bool:
        if self.skip is None:
            self.skip = ("/api/", reverse("admin:index"), f"/{settings.STATIC_URL.strip('/')}/")
        return request.path.startswith(self.skip)

    def process_exception(self, request, exception):
        if self._skipped(request):
            return None
        if isinstance(exception, Http404):
            return self._page(request, "404.html", 404, None)
        if isinstance(exception, PermissionDenied):
            return self._page(request, "403.html", 403, exception)
        return None

    @staticmethod
    def _page(request, template: str, status: int, exception) -> TemplateResponse:
        message = str(exception) if exception is not None and str(exception) else ""
        response = TemplateResponse(request, template, {"exception": message}, status=status)
        response.render()
        return response
