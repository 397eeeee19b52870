from celery import shared_task

from .outbox import outbox_dispatch


@shared_task(acks_late=True)
def outbox_dispatch_task() -> dict[str, int]:
    result = outbox_dispatch()
    return {"delivered": result.delivered, "failed": result.failed, "dead": result.dead}
