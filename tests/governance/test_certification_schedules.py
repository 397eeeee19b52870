"""Certification on a clock and on events: reminders, escalation, closing on time, recurring campaigns,
the cadence review, micro-reviews after a change, and two beats at once changing nothing twice."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from audit.models import AuditEvent, OutboxMessage
from governance.choices import GrantStatus, RiskTier
from governance.models import Campaign, CampaignStatus, Grant, Notification, ReviewItem
from governance.models.certification import CampaignKind
from governance.services.catalogue import entitlement_update
from governance.services.certification import campaign_close, campaign_create, campaign_launch, review_decide
from governance.services.certification_schedules import (
    cadence_review_launch,
    campaign_schedule_next,
    reviews_escalate,
    reviews_remind,
)
from governance.services.identities import identity_change_owner, identity_update
from governance.tasks_certification import (
    certification_cadence_task,
    certification_chase_task,
    certification_close_due_task,
)
from tests.concurrency import race
from tests.factories.governance import EntitlementFactory, GrantFactory, MachineFactory, PersonFactory, with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin():
    return with_role(PersonFactory(name="Ada Admin"), "admin").user


@pytest.fixture
def ent_owner():
    return PersonFactory(name="Eve Owner")


def launched(admin, *, days: float = 14, **fields):
    fields.setdefault("name", "Q4 review")
    campaign = campaign_create(actor=admin, due_at=timezone.now() + timedelta(days=days), **fields)
    return campaign_launch(campaign_id=campaign.pk, actor=admin)


def later(**delta):
    return time_machine.travel(timezone.now() + timedelta(**delta), tick=False)


def notices(user, kind):
    return list(Notification.objects.filter(recipient=user, kind=kind).order_by("pk"))


def items_of(campaign):
    return ReviewItem.objects.filter(campaign=campaign).order_by("grant_id")


#
# Reminders
#
def test_a_reviewer_is_reminded_once_a_day_of_all_their_items_never_once_per_item(admin, ent_owner):
    entitlement = EntitlementFactory(owner=ent_owner)
    for _ in range(3):
        GrantFactory(entitlement=entitlement)
    first = launched(admin, name="first", scope={"entitlements": [entitlement.pk]})
    second_entitlement = EntitlementFactory(owner=ent_owner)
    GrantFactory(entitlement=second_entitlement)
    second = launched(admin, name="second", scope={"entitlements": [second_entitlement.pk]})

    # not before the cadence
    with later(hours=47):
        assert reviews_remind()["items"] == 0
    assert notices(ent_owner.user, "review.reminder") == []

    # after it: one notice for the four items of both campaigns, and once only that day
    with later(hours=49):
        assert reviews_remind() == {"items": 4, "notified": 1}
        assert reviews_remind()["items"] == 0
    with later(hours=53):
        assert reviews_remind()["items"] == 0
    [notice] = notices(ent_owner.user, "review.reminder")
    assert notice.subject == "4 access reviews waiting for you"
    assert all(item.reminded_at is not None for item in ReviewItem.objects.all())
    for campaign in (first, second):
        assert AuditEvent.objects.for_target(campaign).filter(action="review.reminded").count() == 1

    # two days on, the items still open: reminded again, minus what was decided
    review_decide(item_ids=[items_of(first).first().pk], actor=ent_owner.user, decision="certify")
    with later(hours=98):
        assert reviews_remind() == {"items": 3, "notified": 1}
    assert [n.subject for n in notices(ent_owner.user, "review.reminder")][-1] == "3 access reviews waiting for you"


def test_a_group_item_reminds_each_active_member_of_the_group(admin, make_user):
    GrantFactory(entitlement=EntitlementFactory(owner=PersonFactory(status="offboarded")))  # goes to "admin"
    other_admin = make_user("admin2", roles=("admin",))
    gone_admin = make_user("admin3", roles=("admin",), is_active=False)
    launched(admin)

    with later(hours=49):
        reviews_remind()

    assert len(notices(admin, "review.reminder")) == len(notices(other_admin, "review.reminder")) == 1
    assert notices(gone_admin, "review.reminder") == []


def test_closed_campaigns_remind_nobody(admin, ent_owner):
    GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    campaign = launched(admin)
    campaign_close(campaign_id=campaign.pk, actor=admin)

    with later(hours=49):
        assert reviews_remind()["items"] == 0


#
# Escalation
#
def test_items_undecided_near_the_due_date_are_escalated_once_to_the_fallback_group(admin, ent_owner, make_user):
    entitlement = EntitlementFactory(owner=ent_owner)
    GrantFactory(entitlement=entitlement)
    GrantFactory(entitlement=entitlement)
    campaign = launched(admin, days=3)
    decided = items_of(campaign).first()
    review_decide(item_ids=[decided.pk], actor=ent_owner.user, decision="certify")
    bystander = make_user("bystander", roles=("owner",))

    with later(hours=40):  # more than a day left
        assert reviews_escalate() == {"to_admins": 0, "to_fallback": 0}
    with later(hours=50):  # less than a day left
        assert reviews_escalate() == {"to_admins": 0, "to_fallback": 1}
        assert reviews_escalate() == {"to_admins": 0, "to_fallback": 0}

    assert dict(items_of(campaign).values_list("pk", "escalation_level"))[decided.pk] == 0
    assert sorted(items_of(campaign).values_list("escalation_level", flat=True)) == [0, 1]
    [notice] = notices(admin, "review.escalation")  # "admin" is the campaign's fallback group
    assert "undecided, due soon" in notice.subject
    assert notices(bystander, "review.escalation") == []
    event = AuditEvent.objects.for_target(campaign).get(action="review.escalated")
    assert event.data["level"] == 1 and event.data["items"] == 1


def test_an_item_whose_reviewer_left_goes_to_the_admins_at_once(admin, ent_owner):
    GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    campaign = launched(admin, days=30)
    item = items_of(campaign).get()
    assert item.reviewer == ent_owner.user
    ent_owner.user.is_active = False
    ent_owner.user.save()

    assert reviews_escalate() == {"to_admins": 1, "to_fallback": 0}
    assert reviews_escalate() == {"to_admins": 0, "to_fallback": 0}

    item.refresh_from_db()
    assert item.escalation_level == 2
    [notice] = notices(admin, "review.escalation")
    assert "nobody to decide" in notice.subject
    assert AuditEvent.objects.for_target(campaign).get(action="review.escalated").data["level"] == 2


#
# Closing on time
#
def test_the_beat_closes_a_campaign_at_its_due_date_and_the_rule_revokes_undecided_critical_access(admin, ent_owner):
    critical = GrantFactory(entitlement=EntitlementFactory(owner=ent_owner, risk_tier=RiskTier.CRITICAL))
    low = GrantFactory(entitlement=EntitlementFactory(owner=ent_owner, risk_tier=RiskTier.LOW))
    campaign = launched(admin, days=14)

    with later(days=13, hours=23):
        certification_close_due_task()
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.ACTIVE

    with later(days=14, minutes=1):
        result = certification_close_due_task()

    assert result["closed"] == 1
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.CLOSED
    by_grant = {item.grant_id: item for item in items_of(campaign)}
    assert (by_grant[critical.pk].decision, by_grant[critical.pk].decided_by_rule) == ("revoke", True)
    assert by_grant[low.pk].decision == "certify"
    assert Grant.objects.get(pk=critical.pk).status == GrantStatus.REVOKING
    assert Grant.objects.get(pk=low.pk).status == GrantStatus.ACTIVE
    closed = AuditEvent.objects.for_target(campaign).get(action="campaign.closed")
    assert closed.actor_type == "system"


#
# Recurring campaigns
#
def test_a_recurring_campaign_starts_its_next_round_by_itself(admin, ent_owner):
    GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    campaign = launched(admin, days=14, recurrence_days=30, name="Monthly review")
    first_start = campaign.starts_at

    with later(days=15):
        certification_close_due_task()
        certification_close_due_task()

    successor = Campaign.objects.get(previous=campaign)
    assert successor.status == CampaignStatus.DRAFT  # its start is still to come
    assert (successor.name, successor.recurrence_days) == ("Monthly review", 30)
    assert successor.starts_at == first_start + timedelta(days=30)
    assert successor.due_at == campaign.due_at + timedelta(days=30)
    assert AuditEvent.objects.for_target(successor).filter(action="campaign.created").count() == 1

    with later(days=30, minutes=1):
        certification_close_due_task()
    successor.refresh_from_db()
    assert successor.status == CampaignStatus.ACTIVE and items_of(successor).count() == 1
    assert Campaign.objects.filter(previous=campaign).count() == 1


def test_a_round_whose_start_has_passed_is_launched_at_once_and_made_only_once(admin, ent_owner):
    GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    campaign = launched(admin, days=5, recurrence_days=3)
    campaign_close(campaign_id=campaign.pk, actor=admin)  # closed by an admin, early

    with later(days=4):
        successor = campaign_schedule_next(campaign_id=campaign.pk)
        again = campaign_schedule_next(campaign_id=campaign.pk)

    assert again == successor and successor.status == CampaignStatus.ACTIVE
    assert successor.due_at == campaign.due_at + timedelta(days=3)


def test_a_cancelled_campaign_ends_its_series(admin, ent_owner):
    from governance.services.certification import campaign_cancel

    GrantFactory(entitlement=EntitlementFactory(owner=ent_owner))
    campaign = launched(admin, days=5, recurrence_days=3)
    campaign_cancel(campaign_id=campaign.pk, actor=admin, reason="wrong scope")

    with later(days=6):
        certification_close_due_task()
    assert not Campaign.objects.filter(previous=campaign).exists()


#
# The cadence review
#
def test_the_cadence_review_picks_exactly_the_grants_past_their_cadence(admin, ent_owner):
    now = timezone.now()

    def grant(days_ago, cadence=90, **kwargs):
        return GrantFactory(
            entitlement=EntitlementFactory(owner=ent_owner, review_cadence_days=cadence),
            granted_at=now - timedelta(days=days_ago),
            **kwargs,
        )

    never_certified = grant(100)
    recent = grant(10)
    short_cadence = grant(10, cadence=7)
    certified_lately = grant(200)
    certified_long_ago = grant(300)
    under_review = grant(200)
    gone = grant(300, status=GrantStatus.REVOKED)
    for certified, days_ago in ((certified_lately, 30), (certified_long_ago, 120)):
        with time_machine.travel(now - timedelta(days=days_ago), tick=False):
            past = launched(admin, name="past", scope={"entitlements": [certified.entitlement_id]})
            review_decide(item_ids=[items_of(past).get().pk], actor=ent_owner.user, decision="certify")
            campaign_close(campaign_id=past.pk, actor=admin)
    launched(admin, name="running", scope={"entitlements": [under_review.entitlement_id]})

    campaign = cadence_review_launch()

    assert campaign.kind == CampaignKind.CADENCE and campaign.status == CampaignStatus.ACTIVE
    assert set(items_of(campaign).values_list("grant_id", flat=True)) == {
        never_certified.pk,
        short_cadence.pk,
        certified_long_ago.pk,
    }
    assert campaign.items_total == 3
    assert {recent, certified_lately, gone}  # not due: too recent, certified within the cadence, not in force
    # a second run the same day finds every overdue grant under review already
    assert certification_cadence_task() == {"campaign": None, "items": 0}


#
# Micro-reviews after a change
#
def event_campaigns():
    return Campaign.objects.filter(kind=CampaignKind.EVENT)


def test_a_move_to_another_team_opens_a_review_of_the_access_held_for_the_new_manager(admin):
    old_manager, new_manager = PersonFactory(name="Old Boss"), PersonFactory(name="New Boss")
    person = PersonFactory(name="Mo Mover", team="Payments", manager=old_manager)
    held = [GrantFactory(identity=person), GrantFactory(identity=person)]
    GrantFactory(identity=person, status=GrantStatus.REVOKED)

    identity_update(identity_id=person.pk, actor=admin, changes={"team": "Data", "manager": new_manager})

    [campaign] = event_campaigns()
    assert campaign.status == CampaignStatus.ACTIVE and "Payments → Data" in campaign.description
    assert "Old Boss → New Boss" in campaign.description
    assert sorted(items_of(campaign).values_list("grant_id", flat=True)) == sorted(g.pk for g in held)
    assert {item.reviewer for item in items_of(campaign)} == {new_manager.user}


def test_an_edit_that_is_no_move_opens_nothing_and_access_under_review_is_not_asked_twice(admin, ent_owner):
    person = PersonFactory(team="Payments")
    grant = GrantFactory(identity=person, entitlement=EntitlementFactory(owner=ent_owner))

    identity_update(identity_id=person.pk, actor=admin, changes={"description": "Works on refunds"})
    assert not event_campaigns().exists()

    running = launched(admin)
    identity_update(identity_id=person.pk, actor=admin, changes={"team": "Data"})
    assert not event_campaigns().exists()
    assert ReviewItem.objects.filter(grant=grant).count() == 1
    assert items_of(running).get().grant == grant


def test_a_machine_handed_to_a_new_owner_is_attested_by_that_owner(admin, ent_owner):
    machine = MachineFactory(name="billing-bot")
    GrantFactory(identity=machine)
    new_owner = PersonFactory(name="Nia New")

    identity_change_owner(identity_id=machine.pk, actor=admin, owner=new_owner, reason="team change")

    [campaign] = event_campaigns()
    assert campaign.name == "Change review: billing-bot has a new owner"
    assert items_of(campaign).get().reviewer == new_owner.user


def test_raising_an_entitlements_tier_reviews_its_holders_and_lowering_it_does_not(admin, ent_owner):
    entitlement = EntitlementFactory(owner=ent_owner, risk_tier=RiskTier.LOW)
    holders = [GrantFactory(entitlement=entitlement) for _ in range(2)]

    entitlement_update(entitlement_id=entitlement.pk, actor=admin, changes={"business_purpose": "Read logs"})
    assert not event_campaigns().exists()
    entitlement_update(entitlement_id=entitlement.pk, actor=admin, changes={"risk_tier": RiskTier.MEDIUM})

    [campaign] = event_campaigns()
    assert sorted(items_of(campaign).values_list("grant_id", flat=True)) == sorted(g.pk for g in holders)
    assert {item.reviewer for item in items_of(campaign)} == {ent_owner.user}
    assert {item.risk_tier for item in items_of(campaign)} == {RiskTier.MEDIUM}

    campaign_close(campaign_id=campaign.pk, actor=admin)
    entitlement_update(entitlement_id=entitlement.pk, actor=admin, changes={"risk_tier": RiskTier.LOW})
    assert event_campaigns().count() == 1


def test_a_change_that_touches_no_access_opens_no_campaign(admin):
    person = PersonFactory(team="Payments")
    identity_update(identity_id=person.pk, actor=admin, changes={"team": "Data"})
    assert not Campaign.objects.exists()


#
# Two beats at once
#
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_beats_at_once_close_and_open_the_cadence_review_once():
    admin = with_role(PersonFactory(name="Ada Admin"), "admin").user
    ent_owner = PersonFactory(name="Eve Owner")
    critical = [
        GrantFactory(entitlement=EntitlementFactory(owner=ent_owner, risk_tier=RiskTier.CRITICAL)) for _ in range(3)
    ]
    closing = launched(admin, days=1, name="closing", scope={"entitlements": [g.entitlement_id for g in critical]})
    other = EntitlementFactory(owner=ent_owner, review_cadence_days=30)
    GrantFactory(entitlement=other, granted_at=timezone.now() - timedelta(days=40))
    GrantFactory(entitlement=EntitlementFactory(owner=ent_owner), granted_at=timezone.now() - timedelta(days=100))

    with later(hours=49):
        results = race(certification_close_due_task, certification_close_due_task)
        assert not [r for r in results if isinstance(r, Exception)], results
        chased = race(certification_chase_task, certification_chase_task)
        assert not [r for r in chased if isinstance(r, Exception)], chased
        reviews = race(cadence_review_launch, cadence_review_launch)
        assert not [r for r in reviews if isinstance(r, Exception)], reviews

    assert AuditEvent.objects.for_target(closing).filter(action="campaign.closed").count() == 1
    assert AuditEvent.objects.filter(action="review.revoked").count() == 3
    assert OutboxMessage.objects.filter(kind="connector.revoke").count() == 3
    assert Campaign.objects.filter(kind=CampaignKind.CADENCE).count() == 1
    assert ReviewItem.objects.filter(campaign__kind=CampaignKind.CADENCE).count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_chases_at_once_escalate_and_remind_each_item_once():
    admin = with_role(PersonFactory(name="Ada Admin"), "admin").user
    ent_owner = PersonFactory(name="Eve Owner")
    entitlement = EntitlementFactory(owner=ent_owner)
    for _ in range(20):
        GrantFactory(entitlement=entitlement)
    campaign = launched(admin, days=2.5)

    with later(hours=49):
        results = race(certification_chase_task, certification_chase_task)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r["items"] for r in results) == 20  # each item claimed by one run or the other
    assert sum(r["to_fallback"] for r in results) == 20
    assert len(notices(ent_owner.user, "review.reminder")) == 1
    assert AuditEvent.objects.for_target(campaign).filter(action="review.reminded").count() <= 2
    assert all(item.reminded_at is not None for item in items_of(campaign))
    assert set(items_of(campaign).values_list("escalation_level", flat=True)) == {1}
    assert len(notices(admin, "review.escalation")) == 1


def test_the_beat_schedule_names_certification_tasks_a_fresh_worker_knows():
    """As a worker starts (a fresh process, nothing imported by this test): it imports the apps' task
    modules, then beat sends each certification task by name."""
    import os
    import subprocess
    import sys

    script = (
        "import django; django.setup(); from portal.celery import BEAT_SCHEDULE, app; "
        "app.loader.import_default_modules(); "
        "names = [e['task'] for e in BEAT_SCHEDULE.values() if 'certification' in e['task']]; "
        "print(len(names), sorted(set(names) - set(app.tasks)))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings.test"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == "4 []", out.stdout + out.stderr
