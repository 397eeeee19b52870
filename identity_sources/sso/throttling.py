"""What django-axes counts: password guesses, not sign-ins the identity provider already vouched for."""

from django.urls import reverse


def sso_callback_exempt(request, credentials) -> bool:
    """True for the provider's callback (AXES_WHITELIST_CALLABLE).

    A refusal there is someone the provider signed in whom the portal does not know (or a forged answer that
    the token checks turn away), not a password guess; counted, a few strangers behind one office address
    would lock everyone there out of their passwords. The provider throttles its own sign-in.
    """
    return request.path == reverse("oidc_authentication_callback")
