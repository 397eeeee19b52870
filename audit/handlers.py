"""Outbox handlers owned by the bottom layer: email, which every feature uses for notifications."""

from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage

from .outbox import outbox_handler

EMAIL = "email.send"


@outbox_handler(EMAIL)
def send_email(payload: dict[str, Any], idempotency_key: str) -> None:
    EmailMessage(
        subject=payload["subject"],
        body=payload["body"],
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=payload["to"],
        headers={"X-Portal-Message-Id": idempotency_key},
    ).send(fail_silently=False)
