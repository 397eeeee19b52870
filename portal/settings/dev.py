"""`make run` (the Makefile exports it): DEBUG on, a fixed dev key, mail printed to the console."""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", "dev-only-insecure-key-never-use-in-production")
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

from .base import *  # noqa: F403

ALLOWED_HOSTS = ["*"]

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  whitenoise serves from finders here
WHITENOISE_USE_FINDERS = True
