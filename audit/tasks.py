import logging

from celery import shared_task

from .checkpoints import CheckpointError, checkpoint_record
from .outbox import outbox_dispatch
from .retention import outbox_purge_delivered

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def outbox_dispatch_task() -> dict[str, int]:
    result = outbox_dispatch()
    return {"delivered": result.delivered, "failed": result.failed, "dead": result.dead}


@shared_task(acks_late=True)
def audit_checkpoint_task() -> dict:
    """Sign the chain's head into the checkpoint store (every run, so the newest one's age shows liveness).

    A missing key or a trail that no longer matches is logged as an error, not retried: /health/
    turns red on the stale or failing checkpoint and says why.
    """
    try:
        checkpoint = checkpoint_record()
    except CheckpointError as exc:
        logger.error("Audit checkpoint not written: %s", exc)
        return {"error": str(exc)}
    if checkpoint is None:
        return {"seq": 0}
    return {"seq": checkpoint.seq, "name": checkpoint.name}


@shared_task(acks_late=True)
def outbox_purge_task() -> dict[str, int]:
    """Delete delivered outbox rows past OUTBOX_RETENTION_DAYS, in batches."""
    return {"deleted": outbox_purge_delivered()}
