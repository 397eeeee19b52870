"""Beat tasks of certification: thin and idempotent (the services claim, lock and key their work)."""

from celery import shared_task

from .services import certification_schedules as schedules


@shared_task(acks_late=True)
def certification_close_due_task() -> dict:
    """Close campaigns at their due date (the non-response rule decides the rest), then schedule and
    launch the next round of recurring ones."""
    closed = schedules.campaigns_close_due()
    scheduled = schedules.campaigns_schedule_next()
    launched = schedules.campaigns_launch_scheduled()
    return {**closed, **scheduled, **launched}


@shared_task(acks_late=True)
def certification_chase_task() -> dict:
    """Escalate what nobody can decide or is about to lapse; remind reviewers, once a day at most."""
    return schedules.reviews_chase()


@shared_task(acks_late=True)
def certification_cadence_task() -> dict:
    """Open today's cadence review for access not certified within its entitlement's cadence."""
    campaign = schedules.cadence_review_launch()
    return {"campaign": campaign.pk if campaign else None, "items": campaign.items_total if campaign else 0}


@shared_task(acks_late=True)
def certification_remediation_sync_task() -> dict:
    """Show each revoke decision's result as its grant is removed or its connector gives up."""
    from .services.certification import remediation_sync

    return {"synced": remediation_sync()}
