"""The expiry sweep: set-based, by the database clock, safe to run late, twice, or in parallel."""

from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models.functions import Now
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import OutboxMessage
from audit.outbox import enqueue_many
from audit.services import Actor, EventSpec, Target, audit_events_record_many
from governance.choices import GrantStatus
from governance.models import Grant
from governance.services.grants import REVOKE

from ..models import Heartbeat

SWEEP = "jit.expiry_sweep"
_DUE_SQL = """
    SELECT id, identity_id, entitlement_id, expires_at FROM governance_grant
    WHERE status = 'active' AND expires_at <= {now}
    ORDER BY expires_at, id
    LIMIT %s {lock}
"""


def _take_due_batch(now: datetime | None, batch_size: int) -> list[tuple]:
    """Lock up to `batch_size` due grants that no other sweep holds (the partial index serves this)."""
    lock = "FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    sql = _DUE_SQL.format(now="%s" if now is not None else "CURRENT_TIMESTAMP", lock=lock)
    params = [now, batch_size] if now is not None else [batch_size]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _expire_batch(rows: list[tuple]) -> None:
    ids = [row[0] for row in rows]
    Grant.objects.filter(pk__in=ids, status=GrantStatus.ACTIVE).update(
        status=GrantStatus.REVOKING, end_reason="expired", updated_at=Now()
    )
    audit_events_record_many(
        actor=Actor.system(),
        events=[
            EventSpec(
                AuditAction.GRANT_EXPIRING,
                Target("governance.grant", str(pk), f"Grant #{pk}"),
                {"identity": identity_id, "entitlement": entitlement_id, "expires_at": expires_at},
            )
            for pk, identity_id, entitlement_id, expires_at in rows
        ],
    )
    enqueue_many(
        [OutboxMessage(kind=REVOKE, payload={"grant_id": pk}, idempotency_key=f"grant:{pk}:expired") for pk in ids]
    )


def grants_expire_due(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    """Move every active grant past its expiry to `revoking`, batch by batch; return how many.

    `now` defaults to the database clock. Each batch is one transaction: one UPDATE, one chained
    bulk insert of audit events, one bulk insert of connector calls into the outbox. Rows another
    sweep holds are skipped, so two beats never expire a grant twice.
    """
    batch_size = batch_size or settings.JIT_SWEEP_BATCH_SIZE
    total = 0
    while True:
        with transaction.atomic():
            rows = _take_due_batch(now, batch_size)
            if rows:
                _expire_batch(rows)
        total += len(rows)
        if len(rows) < batch_size:
            break
    Heartbeat.objects.update_or_create(name=SWEEP, defaults={"last_run_at": timezone.now(), "last_count": total})
    return total
