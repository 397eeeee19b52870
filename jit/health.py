"""The expiry sweep's health: red when it stopped running or grants are overdue."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Min

from audit.kernel import clock
from governance.choices import GrantStatus
from governance.models import Grant

from .models import Heartbeat
from .services.expiry import SWEEP

OVERDUE_TOLERANCE = timedelta(minutes=2)


def check_expiry_sweep() -> tuple[bool, str]:
    """Compares database times only: the heartbeat was stamped by the database's clock, so the web
    node's own clock (which may run ahead or behind) has no say in whether the sweep stopped."""
    now = clock.database_now()
    last_run_at = Heartbeat.objects.filter(name=SWEEP).values_list("last_run_at", flat=True).first()
    if last_run_at is None:
        return False, "the expiry sweep has never run"
    age = f"last sweep {int((now - last_run_at).total_seconds())} s ago"
    if last_run_at < now - 3 * settings.EXPIRY_SWEEP_INTERVAL:
        return False, age
    # Whether any, not how many: the earliest expiry of an active grant, the first entry of the partial
    # index on active expiries. A count walked every overdue row; EXISTS let a stale estimate ("most
    # active grants are overdue", right after a sweep) choose a full, parallel scan of every grant
    # that expected to stop at once and found nothing. MIN is read from that index whatever the estimate.
    earliest = Grant.objects.filter(status=GrantStatus.ACTIVE).aggregate(earliest=Min("expires_at"))["earliest"]
    if earliest is not None and earliest < now - OVERDUE_TOLERANCE:
        return False, "grants are overdue for expiry (the sweep is failing or behind)"
    return True, age
