"""Demo campaigns for `manage.py seed_demo`: a running review with some decisions made and a closed one,
so a new user sees reviews at once. Made by the real services after the demo organisation, so items,
reviewers, recommendations, the audit trail and notifications are exactly what a real review leaves.

Idempotent: a second run finds the campaigns by name and changes nothing.
"""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction

from audit.kernel import clock

from .models import Campaign, CampaignStatus, ReviewItem, System
from .selectors_certification import campaign_progress
from .services.certification import campaign_close, campaign_create, campaign_launch, review_decide

RUNNING = "Quarterly access review: production"
CLOSED = "Access review: sales and support tools (last quarter)"
RUNNING_SYSTEMS = ["AWS production", "Kubernetes prod", "Datadog", "GitHub"]
CLOSED_SYSTEMS = ["Salesforce", "Jira"]


def _systems(names: list[str]) -> list[int]:
    return list(System.objects.filter(name__in=names).order_by("pk").values_list("pk", flat=True))


def _open_items_of(campaign: Campaign, reviewer=None, group: str = ""):
    items = ReviewItem.objects.filter(campaign=campaign, decision="").order_by("pk")
    if reviewer is not None:
        return items.filter(reviewer=reviewer)
    return items.filter(reviewer__isnull=True, reviewer_group=group)


def _decide(items, limit: int, actor, decision: str, comment: str) -> int:
    """Decide the first `limit` of `items` in one go, as a reviewer selecting them in the queue would."""
    ids = list(items.values_list("pk", flat=True)[:limit])
    if ids:
        review_decide(item_ids=ids, actor=actor, decision=decision, comment=comment)
    return len(ids)


@transaction.atomic
def demo_campaigns_build() -> dict[str, int | bool]:
    """Launch the running campaign and decide part of it; run the closed one to its end."""
    users = {u.username: u for u in get_user_model().objects.filter(username__in=["admin", "owner"])}
    running_systems, closed_systems = _systems(RUNNING_SYSTEMS), _systems(CLOSED_SYSTEMS)
    if Campaign.objects.filter(name__in=[RUNNING, CLOSED]).exists() or len(users) < 2 or not running_systems:
        return {"skipped": True}
    admin, owner = users["admin"], users["owner"]
    now = clock.database_now()

    # Last quarter's review of the sales and support tools: some decided, the rest by the rule.
    closed = campaign_create(
        actor=admin,
        name=CLOSED,
        description="Who may use the CRM and the ticket system, confirmed by their owners.",
        scope={"systems": closed_systems},
        starts_at=now - timedelta(days=45),
        due_at=now - timedelta(days=1),
    )
    closed = campaign_launch(campaign_id=closed.pk, actor=admin)
    # The tools' owners have no login: their items went to the fallback group, the admins.
    fallback = _open_items_of(closed, group=closed.fallback_group).exclude(identity__user=admin)
    _decide(fallback.filter(recommendation="certify", risk_tier__in=["low", "medium"]), 6, admin, "certify", "In use.")
    campaign_close(campaign_id=closed.pk, actor=admin)

    # This quarter's review of production: the owners are part-way through.
    running = campaign_create(
        actor=admin,
        name=RUNNING,
        description="Every standing and just-in-time grant on the production systems, reviewed by its owner; "
        "and every service account, API key, workload and agent, which its owner confirms is still needed.",
        scope={"systems": running_systems},
        review_identities=True,
        remediation="close",
        starts_at=now - timedelta(days=4),
        due_at=now + timedelta(days=10),
    )
    running = campaign_launch(campaign_id=running.pk, actor=admin)
    mine = _open_items_of(running, reviewer=owner)
    _decide(mine.filter(recommendation="certify"), 3, owner, "certify", "Needed for on-call.")
    _decide(mine.filter(recommendation="revoke"), 1, owner, "revoke", "Not used any more.")
    _decide(_open_items_of(running, reviewer=admin), 2, admin, "certify", "Still needed.")

    progress = campaign_progress(running)
    return {
        "skipped": False,
        "running_items": progress["total"],
        "running_decided": progress["decided"],
        "closed_items": Campaign.objects.get(pk=closed.pk).items_total,
        "closed": Campaign.objects.filter(pk=closed.pk, status=CampaignStatus.CLOSED).exists(),
    }
