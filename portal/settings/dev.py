"""`make run` (the Makefile exports it): DEBUG on, a fixed dev key, mail written as files to DATA_DIR/mail
(EMAIL_BACKEND=django.core.mail.backends.console.EmailBackend prints it instead), and a console that shows
what a person needs: warnings and errors, not a line per request or task (WEB_LOG_LEVEL=INFO for those)."""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", "dev-only-insecure-key-never-use-in-production")
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")

from .base import *  # noqa: F403

ALLOWED_HOSTS = ["*"]

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  whitenoise serves from finders here
WHITENOISE_USE_FINDERS = True

# runserver logs every request at INFO (htmx pages poll every few seconds); 4xx are warnings, 5xx errors.
LOGGING = {
    **LOGGING,  # noqa: F405
    "loggers": {
        # One line per problem, in one format (the root's console handler): Django's own console handler off.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.request": {"level": "ERROR"},  # a 404 or 403 is the line below; a 500 comes with its traceback
        "django.server": {
            "level": os.environ.get("WEB_LOG_LEVEL") or "WARNING",
            "handlers": ["console"],
            "propagate": False,
        },
        "django.utils.autoreload": {"level": "WARNING"},
        # The embedded broker (filesystem://) has no host: kombu says so at every start.
        "kombu.connection": {"level": "ERROR"},
        # Sign-ins are in the audit trail; a failed one or a lock-out is a warning and still shows.
        "axes": {"level": "WARNING"},
    },
}
