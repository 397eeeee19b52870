"""The sign-in, callback and sign-out views: mozilla-django-oidc's, with clear pages when it goes wrong."""

import logging
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.views.generic import View
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from audit.choices import Channel
from audit.context import set_context

from . import config
from .services import SsoRefused, sso_refusal_record

logger = logging.getLogger(__name__)

# The session key marking a session begun through the provider (its ID token is kept for sign-out).
SSO_SESSION_ISSUER = "sso_issuer"


def _problem(request, *, title: str, message: str, status: int):
    return render(
        request,
        "identity_sources/sso_problem.html",
        {"title": title, "message": message, "provider_name": settings.OIDC_PROVIDER_NAME},
        status=status,
    )


def _unreachable(request, exc: Exception):
    logger.warning("single sign-on: provider unreachable: %s", exc)
    return _problem(
        request,
        title="The identity provider did not answer",
        message=f"The portal could not reach {settings.OIDC_PROVIDER_NAME}. Try again in a minute; "
        "if it keeps failing, tell a portal admin.",
        status=502,
    )


class SsoStartView(OIDCAuthenticationRequestView):
    """Sends the browser to the provider with a fresh state, nonce and PKCE challenge (kept in the session)."""

    get_settings = staticmethod(config.setting)

    def __init__(self, *args, **kwargs):
        View.__init__(self, *args, **kwargs)  # the endpoint is read per request, from discovery if need be
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID

    def get(self, request):
        if not config.sso_enabled():
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = config.setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except (config.ProviderUnavailable, ImproperlyConfigured) as exc:
            return _unreachable(request, exc)
        return super().get(request)


class SsoCallbackView(OIDCAuthenticationCallbackView):
    """The provider's answer: state and nonce checked once (then forgotten), the token checked, the person found."""

    get_settings = staticmethod(config.setting)

    def get(self, request):
        if not config.sso_enabled():
            raise Http404("Single sign-on is not configured.")
        set_context(channel=Channel.SSO)  # this sign-in and the role changes it makes are audited as `sso`
        try:
            return super().get(request)
        except SuspiciousOperation as exc:
            # An unknown or replayed state, or a token that fails its checks: refused and kept on record.
            logger.warning("single sign-on refused: %s", exc)
            sso_refusal_record(issuer=config.issuer(), refusal=SsoRefused("invalid_response", str(exc)))
            return _problem(
                request,
                title="Sign-in refused",
                message=f"The answer from {settings.OIDC_PROVIDER_NAME} could not be checked (it may be old, "
                "used already or not meant for this portal). Start again from the sign-in page.",
                status=400,
            )
        except (config.ProviderUnavailable, requests.RequestException) as exc:
            return _unreachable(request, exc)

    def login_success(self):
        response = super().login_success()
        self.request.session[SSO_SESSION_ISSUER] = config.issuer()
        return response

    def login_failure(self):
        refusal = getattr(self.request, "sso_refusal", None)
        if refusal is not None:
            return _problem(
                self.request, title="No portal access for this account", message=refusal.message, status=403
            )
        if self.request.GET.get("error"):
            messages.error(self.request, f"Signing in with {settings.OIDC_PROVIDER_NAME} did not complete.")
        else:
            messages.error(self.request, "That sign-in could not be completed. Please try again.")
        return HttpResponseRedirect(resolve_url(settings.LOGIN_REDIRECT_URL_FAILURE))


class SsoLogoutView(auth_views.LogoutView):
    """Signs out of the portal and, for a session begun through the provider, of the provider too
    (RP-initiated logout: its end_session_endpoint with the ID token as hint), where it offers that."""

    def post(self, request, *args, **kwargs):
        id_token = request.session.get("oidc_id_token") if request.session.get(SSO_SESSION_ISSUER) else None
        response = super().post(request, *args, **kwargs)
        if not id_token or not config.sso_enabled():
            return response
        try:
            endpoint = config.setting("OIDC_OP_END_SESSION_ENDPOINT", None)
        except (config.ProviderUnavailable, ImproperlyConfigured):
            endpoint = None
        if not endpoint:
            return response
        query = urlencode(
            {
                "id_token_hint": id_token,
                "client_id": settings.OIDC_RP_CLIENT_ID,
                "post_logout_redirect_uri": request.build_absolute_uri(resolve_url(settings.LOGOUT_REDIRECT_URL)),
            }
        )
        return HttpResponseRedirect(f"{endpoint}{'&' if '?' in endpoint else '?'}{query}")
