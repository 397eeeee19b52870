"""The portal's URLs plus a real OpenID provider (django-oauth-toolkit) and its own sign-in page, for SSO tests.

One Django serves both: the provider on one live server (127.0.0.1) and the portal on another (localhost),
or the provider on the live server and the portal in Django's test client.
"""

from csp.decorators import csp_exempt
from django import forms
from django.contrib.auth import login
from django.http import HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.urls import include, path
from django.utils.html import escape
from django.utils.http import url_has_allowed_host_and_scheme
from oauth2_provider import views as oauth2_views

from portal.urls import urlpatterns as portal_urlpatterns

IDP_LOGIN_PAGE = """<!doctype html><html lang="en"><head><title>Test IdP</title></head><body>
<main><h1>Test IdP sign-in</h1>{errors}
<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="{csrf}">
<label for="u">IdP username</label><input id="u" name="username" autocomplete="username">
<label for="p">IdP password</label><input id="p" name="password" type="password">
<button type="submit">Continue</button></form></main></body></html>"""


class _IdpLogin(forms.Form):
    username = forms.CharField()
    password = forms.CharField()


@csp_exempt()  # the provider's page, not the portal's: the portal's CSP (form-action 'self') is not its
def idp_login(request):
    """The provider's own sign-in page (not the portal's): who the person is at the provider."""
    from django.contrib.auth import authenticate

    errors = ""
    if request.method == "POST":
        form = _IdpLogin(request.POST)
        user = form.is_valid() and authenticate(request, **form.cleaned_data)
        if user:
            login(request, user, backend="identity_sources.sso.backends.LocalPasswordBackend")
            target = request.GET.get("next", "/")
            if not url_has_allowed_host_and_scheme(target, {request.get_host()}):
                target = "/"
            return HttpResponseRedirect(target)
        errors = '<p role="alert">Wrong username or password.</p>'
    return HttpResponse(IDP_LOGIN_PAGE.format(errors=errors, csrf=escape(get_token(request))))


urlpatterns = [
    # The provider's authorization endpoint sends people who are not signed in there to its own page.
    path("o/authorize/", oauth2_views.AuthorizationView.as_view(login_url="/idp/login/"), name="idp_authorize"),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("idp/login/", idp_login, name="idp_login"),
    *portal_urlpatterns,
]
