"""The login page's single sign-on button and what it says about passwords."""

from django import template
from django.conf import settings

from ..sso.config import sso_enabled

register = template.Library()


@register.inclusion_tag("identity_sources/_sso_sign_in.html", takes_context=True)
def sso_sign_in(context):
    return {
        "sso_enabled": sso_enabled(),
        "provider_name": settings.OIDC_PROVIDER_NAME,
        "next": context.get("next", ""),
        "local_passwords": settings.LOCAL_PASSWORDS,
    }


@register.simple_tag
def local_passwords_on() -> bool:
    return settings.LOCAL_PASSWORDS
