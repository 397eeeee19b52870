"""Logins, logouts and failed logins go to the audit trail like every other decision."""

from django.contrib.auth import signals
from django.dispatch import receiver

from audit.choices import AuditAction
from audit.services import audit_event_record


@receiver(signals.user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    audit_event_record(actor=user, action=AuditAction.USER_LOGGED_IN, target=user)


@receiver(signals.user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit_event_record(actor=user, action=AuditAction.USER_LOGGED_OUT, target=user)


@receiver(signals.user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    # Only the username typed: never the password Django already masked.
    audit_event_record(
        actor=None, action=AuditAction.USER_LOGIN_FAILED, data={"username": str(credentials.get("username", ""))[:150]}
    )
