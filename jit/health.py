"""The expiry sweep's health: red when it stopped running or grants are overdue."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from governance.models import Grant

from .models import Heartbeat
from .services.expiry import SWEEP

OVERDUE_TOLERANCE = timedelta(minutes=2)


def check_expiry_sweep() -> tuple[bool, str]:
    now = timezone.now()
    beat = Heartbeat.objects.filter(name=SWEEP).first()
    if beat is None:
        return False, "the expiry sweep has never run"
    if beat.last_run_at < now - 3 * settings.EXPIRY_SWEEP_INTERVAL:
        return False, f"last sweep {int((now - beat.last_run_at).total_seconds())} s ago"
    overdue = Grant.objects.filter(status="active", expires_at__lt=now - OVERDUE_TOLERANCE).count()
    if overdue:
        return False, f"{overdue} grants overdue for expiry"
    return True, f"last sweep {int((now - beat.last_run_at).total_seconds())} s ago"
