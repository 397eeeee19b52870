"""pytest: PostgreSQL when one answers (DATABASE_URL, else 127.0.0.1:5432), otherwise SQLite.

On SQLite, tests marked `postgres` are skipped with a notice; REQUIRE_POSTGRES=1 (CI) makes
them fail instead, and makes a missing PostgreSQL an error.
"""

import os
import tempfile
from pathlib import Path

from .env import env_bool

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "test-only-key")
os.environ.setdefault("CONNECTOR_SECRET_KEYS", "dqvy-TL7RfQPFRJEvK_EedpyZcuPHTSHPXplPZQaG6M=")  # test-only key

REQUIRE_POSTGRES = env_bool("REQUIRE_POSTGRES", False)
DEFAULT_TEST_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/portal"


def _postgres_answers(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


if "DATABASE_URL" not in os.environ:
    if _postgres_answers(DEFAULT_TEST_DATABASE_URL.rsplit("/", 1)[0] + "/postgres"):
        os.environ["DATABASE_URL"] = DEFAULT_TEST_DATABASE_URL
    elif REQUIRE_POSTGRES:
        raise RuntimeError("REQUIRE_POSTGRES=1 but PostgreSQL does not answer on 127.0.0.1:5432")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")

from .base import *  # noqa: E402,F403
from .base import DATABASES  # noqa: E402

USING_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if USING_POSTGRES:
    # Lets the suite's flush between transactional tests TRUNCATE the append-only audit table
    # (see audit/migrations/0002); UPDATE and DELETE stay refused.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c portal.audit_maintenance=on"
else:
    DATABASES["default"]["TEST"] = {"NAME": None}  # in memory

# The test runner migrates its own database as the connected role, never an owner URL's database.
MIGRATE_DATABASE_URL = ""
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The database clock (audit.kernel.clock.database_now) moves with time-machine, as the process clock does.
CLOCK_FOLLOWS_TIME_TRAVEL = True
# Sign-in lock-outs stay on (tests/portal/test_sign_in_throttling.py); Client.login() has no request.
AUTHENTICATION_BACKENDS = ["tests.auth_backends.AxesBackendForTestClient", *AUTHENTICATION_BACKENDS[1:]]  # noqa: F405
# No test is throttled by accident; test_api_throttling.py lowers the rates it needs.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"anon": "100000/minute", "user": "100000/minute", "token": "100000/minute"},
}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
ALLOWED_HOSTS = ["*"]
LOGGING = {"version": 1, "disable_existing_loggers": False}

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  whitenoise serves from finders here
WHITENOISE_USE_FINDERS = True

#
# Audit checkpoints: a development key kept in DATA_DIR, and a store of this test process's own (a
# test that writes checkpoints points AUDIT_CHECKPOINT_DIR at its tmp_path), so that checkpoints of
# a `make run` or of another test run never meet this run's trail.
#
AUDIT_CHECKPOINT_DEV_KEY_FILE = DATA_DIR / "audit-checkpoint-dev-key.pem"  # noqa: F405
AUDIT_CHECKPOINT_DIR = Path(tempfile.gettempdir()) / f"portal-test-{os.getpid()}" / "audit-checkpoints"

if os.environ.get("PORTAL_TEST_EMAIL_DIR"):
    # A worker process started by a test writes mail where the test can read it.
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = os.environ["PORTAL_TEST_EMAIL_DIR"]

# Single sign-on: django-oauth-toolkit (a dev-only dependency) is the real OpenID provider the SSO tests sign
# in through; tests/identity_sources/provider.py starts it with an RSA key made by the test and points the
# portal at it. Off (no OIDC_ISSUER) everywhere else.
INSTALLED_APPS = [*INSTALLED_APPS, "oauth2_provider"]  # noqa: F405
OAUTH2_PROVIDER = {"OIDC_ENABLED": False}
