"""Every page carries a Content-Security-Policy that allows only the portal's own files; nothing a
signed-in person sees is kept by a cache; proxy headers are believed only when proxies are configured."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import RequestFactory
from django.urls import reverse

from audit.middleware import client_ip

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"

pytestmark = pytest.mark.django_db


def _directives(response) -> dict[str, str]:
    policy = response["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())


@pytest.mark.parametrize("path", ["/login/", "/admin/login/", "/health/"])
def test_every_page_allows_scripts_styles_and_frames_from_the_portal_only(client, path):
    directives = _directives(client.get(path))
    assert directives == {
        "default-src": "'self'",
        "img-src": "'self' data:",  # Pico's icons
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
        "object-src": "'none'",
    }


def test_signed_in_pages_are_not_kept_by_any_cache(client, requester):
    client.force_login(requester)
    for path in (reverse("dashboard"), "/api/v1/grants/"):
        assert "no-store" in client.get(path)["Cache-Control"]


def test_static_files_keep_their_own_caching_for_a_signed_in_person(client, requester):
    client.force_login(requester)
    assert "no-store" not in client.get("/static/css/portal.css").get("Cache-Control", "")


def test_no_template_holds_an_inline_script_style_or_event_handler():
    # The policy would refuse them in the browser; tests/browser/test_content_security_policy.py checks pages.
    import re

    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=", re.IGNORECASE)
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in TEMPLATES.rglob("*.html")
        for match in inline.finditer(path.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "192.0.2.1", "10.0.0.2"),  # no proxy configured: the header is the client's own words
        (1, "192.0.2.1", "192.0.2.1"),
        (1, "6.6.6.6, 192.0.2.1", "192.0.2.1"),  # the left-most entry is made up by the client
        (2, "6.6.6.6, 192.0.2.1, 10.0.0.1", "192.0.2.1"),
        (2, "192.0.2.1", "10.0.0.2"),  # shorter than the chain: it did not come through the proxies
        (1, "not-an-address", "10.0.0.2"),
        (1, "", "10.0.0.2"),
    ],
)
def test_the_client_address_is_the_right_most_hop_no_trusted_proxy_added(settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def _production_settings(**env: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'ssl_header': s.SECURE_PROXY_SSL_HEADER, 'proxies': s.TRUSTED_PROXY_COUNT, "
        "'cache': s.CACHES['default']['BACKEND']}))"
    )
    keep = {
        k: v for k, v in os.environ.items() if k not in {"BEHIND_PROXY", "AUDIT_TRUST_X_FORWARDED_FOR", "CACHE_URL"}
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**keep, "DJANGO_SETTINGS_MODULE": "portal.settings.base", "SECRET_KEY": "x" * 64, **env},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_proxy_headers_are_ignored_unless_proxies_are_configured():
    assert _production_settings() == {
        "ssl_header": None,
        "proxies": 0,
        "cache": "django.core.cache.backends.locmem.LocMemCache",
    }
    behind = _production_settings(TRUSTED_PROXY_COUNT="1")
    assert (behind["ssl_header"], behind["proxies"]) == (["HTTP_X_FORWARDED_PROTO", "https"], 1)
    # the older switch still means one proxy
    assert _production_settings(AUDIT_TRUST_X_FORWARDED_FOR="1")["proxies"] == 1
    assert _production_settings(BEHIND_PROXY="1")["ssl_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_a_cache_url_counts_api_rates_in_redis_for_every_process():
    cache = _production_settings(CACHE_URL="redis://cache.example:6379/1")["cache"]
    assert cache == "django.core.cache.backends.redis.RedisCache"
