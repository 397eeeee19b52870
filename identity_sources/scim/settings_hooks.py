"""Callables named in SCIM_SERVICE_PROVIDER (imported lazily by django-scim2, so no model import at load)."""

from urllib.parse import urlunparse

from django.conf import settings


def user_model():
    """USER_MODEL_GETTER: a SCIM User is the source's record of a person, linked to their Identity."""
    from ..models_scim import ScimUser

    return ScimUser


def base_location(request=None, *args, **kwargs) -> str:
    """BASE_LOCATION_GETTER: `meta.location` and `$ref` on the host the caller reached."""
    if request is not None:
        return f"{request.scheme}://{request.get_host()}"
    provider = settings.SCIM_SERVICE_PROVIDER
    return urlunparse((provider["SCHEME"], provider["NETLOC"], "", "", "", ""))
