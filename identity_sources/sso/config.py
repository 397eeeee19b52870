"""The provider's configuration: settings first, then its discovery document (fetched once, cached).

mozilla-django-oidc wants each endpoint as a setting; a deployment names only the issuer, and the
endpoints and signing keys are read from `<issuer>/.well-known/openid-configuration` when first needed
(not at start-up: a provider that is down must not stop the portal, only SSO sign-ins).
"""

import threading
import time
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# mozilla-django-oidc setting -> discovery document key
_DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
    "OIDC_OP_END_SESSION_ENDPOINT": "end_session_endpoint",
}

_lock = threading.Lock()
_documents: dict[str, tuple[float, dict[str, Any]]] = {}
_key_sets: dict[str, tuple[float, dict[str, Any]]] = {}


class ProviderUnavailable(Exception):
    """The provider's discovery document or keys could not be read."""


def sso_enabled() -> bool:
    return bool(settings.OIDC_ISSUER and settings.OIDC_RP_CLIENT_ID)


def issuer() -> str:
    return settings.OIDC_ISSUER.rstrip("/")


def _fetch_json(url: str) -> dict[str, Any]:
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        return response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"Could not read {url}: {exc}") from exc


def _cached(store: dict, key: str, fetch, *, refresh: bool = False) -> dict[str, Any]:
    with _lock:
        hit = store.get(key)
        if hit and not refresh and hit[0] > time.monotonic():
            return hit[1]
    value = fetch()
    with _lock:
        store[key] = (time.monotonic() + settings.OIDC_DISCOVERY_CACHE_SECONDS, value)
    return value


def discovery(*, refresh: bool = False) -> dict[str, Any]:
    """The issuer's discovery document; its `issuer` must be the configured one (OpenID Discovery 4.3)."""
    if not sso_enabled():
        raise ImproperlyConfigured("Single sign-on is not configured: set OIDC_ISSUER and OIDC_RP_CLIENT_ID.")

    def fetch():
        document = _fetch_json(f"{issuer()}/.well-known/openid-configuration")
        if str(document.get("issuer", "")).rstrip("/") != issuer():
            raise ProviderUnavailable(
                f"The discovery document names issuer {document.get('issuer')!r}, not {issuer()!r}."
            )
        return document

    return _cached(_documents, issuer(), fetch, refresh=refresh)


def setting(name: str, *default: Any) -> Any:
    """A mozilla-django-oidc setting; an endpoint not set explicitly comes from discovery."""
    if hasattr(settings, name):
        return getattr(settings, name)
    if name in _DISCOVERED and sso_enabled():
        value = discovery().get(_DISCOVERED[name])
        if value:
            return value
    if default:
        return default[0]
    raise ImproperlyConfigured(f"Setting {name} not found and the provider does not publish it.")


def signing_keys(*, refresh: bool = False) -> dict[str, Any]:
    """The provider's JWKS, cached like the discovery document; `refresh` after a key rotation (unknown kid)."""
    url = setting("OIDC_OP_JWKS_ENDPOINT")
    return _cached(_key_sets, url, lambda: _fetch_json(url), refresh=refresh)


def forget() -> None:
    """Drop the cached documents and keys (tests; a provider that rotated everything)."""
    with _lock:
        _documents.clear()
        _key_sets.clear()
