"""The review after break-glass: who may record it, what it needs, what the reviewer sees, and the chasing."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from audit.choices import AuditAction
from audit.models import AuditEvent
from audit.services import audit_event_record
from audit.verify import verify_chain
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import Notification
from jit.choices import ReviewOutcome
from jit.models import BreakGlassActivation
from jit.services.break_glass_reviews import (
    HOLDER_REFUSAL,
    break_glass_remind_and_escalate,
    break_glass_review_chase,
    break_glass_review_record,
)
from jit.tasks import break_glass_chase_task
from tests.concurrency import race
from tests.factories.governance import MachineFactory

from .break_glass_helpers import REVIEWERS, activation_row, eligibility_for, person

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) + timedelta(days=1)


def at(hours: float):
    return time_machine.travel(T0 + timedelta(hours=hours), tick=False)


@pytest.fixture
def holder(db):
    return person("Holly", REVIEWERS)  # in the reviewer group too: still never her own reviewer


@pytest.fixture
def reviewer(db):
    return person("Rita", REVIEWERS)


@pytest.fixture
def activation(holder, reviewer):
    with at(0):
        return activation_row(eligibility_for(holder), at=T0)


def review(activation, user, outcome=ReviewOutcome.JUSTIFIED, notes="Outage INC-7 confirmed.", hours=2):
    with at(hours):
        return break_glass_review_record(activation_id=activation.pk, actor=user, outcome=outcome, notes=notes)


def events(activation, action) -> int:
    return AuditEvent.objects.for_target(activation).filter(action=action).count()


def untouched(activation) -> bool:
    activation.refresh_from_db()
    return (
        activation.outcome == ""
        and activation.reviewed_by_id is None
        and activation.reviewed_at is None
        and events(activation, AuditAction.BREAK_GLASS_REVIEWED) == 0
    )


#
# Who may review
#
def test_a_reviewer_records_the_outcome_once_the_window_is_over(activation, reviewer):
    done = review(activation, reviewer.user, ReviewOutcome.FOLLOW_UP, notes="Rotate the root password.")
    activation.refresh_from_db()
    assert (activation.outcome, activation.outcome_notes) == (ReviewOutcome.FOLLOW_UP, "Rotate the root password.")
    assert activation.reviewed_by == reviewer.user and activation.reviewed_at == T0 + timedelta(hours=2)
    assert done.pk == activation.pk
    event = AuditEvent.objects.for_target(activation).get(action=AuditAction.BREAK_GLASS_REVIEWED)
    assert event.actor_user_id == reviewer.user.pk and event.data["outcome"] == "follow_up"
    assert verify_chain().ok


def test_the_holder_cannot_review_even_in_the_reviewer_group(activation, holder):
    with pytest.raises(PermissionRefused) as refused:
        review(activation, holder.user)
    assert refused.value.message == HOLDER_REFUSAL
    assert untouched(activation)


def test_whoever_broke_glass_for_a_machine_and_its_owner_cannot_review(reviewer):
    owner = person("Owen", REVIEWERS)
    operator = person("Opal", REVIEWERS)
    bot = MachineFactory(name="incident-bot", owner=owner)
    with at(0):
        activation = activation_row(eligibility_for(bot), at=T0, activated_by=operator.user)
    for user in (owner.user, operator.user):
        with pytest.raises(PermissionRefused):
            review(activation, user)
    assert untouched(activation)
    review(activation, reviewer.user)  # someone else in the group may


def test_someone_who_is_not_a_reviewer_is_refused(activation):
    stranger = person("Stan")
    with pytest.raises(PermissionRefused):
        review(activation, stranger.user)
    assert untouched(activation)


def test_the_named_reviewer_reviews_when_no_group_does(holder):
    owner = person("Olga")
    with at(0):
        activation = activation_row(eligibility_for(holder, reviewer_group=""), at=T0, reviewer=owner.user)
    with pytest.raises(PermissionRefused):
        review(activation, person("Rita", REVIEWERS).user)
    review(activation, owner.user)
    activation.refresh_from_db()
    assert activation.reviewed_by == owner.user


def test_admins_review_only_once_the_review_is_escalated(activation, holder):
    admin = person("Ada", roles=["admin"])
    with pytest.raises(PermissionRefused):
        review(activation, admin.user)
    with at(24):
        assert break_glass_remind_and_escalate() == {"reminded": 0, "escalated": 1}
    review(activation, admin.user, hours=25)
    activation.refresh_from_db()
    assert activation.reviewed_by == admin.user


def test_an_auditor_in_the_group_only_reads(activation):
    auditor = person("Audrey", REVIEWERS, roles=["auditor"])
    with pytest.raises(PermissionRefused):
        review(activation, auditor.user)
    assert untouched(activation)


#
# What a review needs
#
@pytest.mark.parametrize("outcome", [ReviewOutcome.NOT_JUSTIFIED, ReviewOutcome.FOLLOW_UP])
def test_notes_are_required_unless_justified(activation, reviewer, outcome):
    with pytest.raises(ValidationFailed) as failed:
        review(activation, reviewer.user, outcome, notes="   ")
    assert "notes" in failed.value.field_errors
    assert untouched(activation)


def test_an_unknown_outcome_is_refused(activation, reviewer):
    with pytest.raises(ValidationFailed) as failed:
        review(activation, reviewer.user, "fine")
    assert "outcome" in failed.value.field_errors
    assert untouched(activation)


def test_a_justified_review_needs_no_notes(activation, reviewer):
    review(activation, reviewer.user, ReviewOutcome.JUSTIFIED, notes="")
    activation.refresh_from_db()
    assert activation.outcome == ReviewOutcome.JUSTIFIED


def test_no_review_while_the_access_still_runs(activation, reviewer):
    with pytest.raises(InvalidTransition):
        review(activation, reviewer.user, hours=0.5)
    assert untouched(activation)


def test_an_activation_is_reviewed_once(activation, reviewer):
    review(activation, reviewer.user)
    other = person("Remy", REVIEWERS)
    with pytest.raises(InvalidTransition) as conflict:
        review(activation, other.user, ReviewOutcome.NOT_JUSTIFIED, notes="No incident.")
    assert conflict.value.status_code == 409
    activation.refresh_from_db()
    assert activation.outcome == ReviewOutcome.JUSTIFIED and activation.reviewed_by == reviewer.user
    assert events(activation, AuditAction.BREAK_GLASS_REVIEWED) == 1


#
# Chasing: reminders every BREAK_GLASS_REMIND_EVERY, escalation past the due time, until reviewed
#
def chase(hours: float) -> dict[str, int]:
    with at(hours):
        return break_glass_remind_and_escalate()


def test_reminders_then_repeated_escalation_until_reviewed(activation, reviewer, holder, settings):
    admin = person("Ada", roles=["admin"])
    assert timedelta(hours=4) == settings.BREAK_GLASS_REMIND_EVERY
    assert chase(3.9) == {"reminded": 0, "escalated": 0}
    assert chase(4) == {"reminded": 1, "escalated": 0}
    assert chase(4) == {"reminded": 0, "escalated": 0}  # a second beat at once: nothing again
    assert chase(7.9) == {"reminded": 0, "escalated": 0}
    assert chase(8) == {"reminded": 1, "escalated": 0}
    reminders = Notification.objects.filter(kind="break_glass.review_reminder")
    assert set(reminders.values_list("recipient", flat=True)) == {reviewer.user.pk}  # never the holder
    assert reminders.count() == 2
    # due at 24 h: escalated to the admins at once, then again every interval
    assert chase(23.9) == {"reminded": 1, "escalated": 0}  # the next reminder (due from 12 h) goes now
    assert chase(24) == {"reminded": 0, "escalated": 1}
    assert chase(27) == {"reminded": 0, "escalated": 0}
    assert chase(28) == {"reminded": 0, "escalated": 1}
    activation.refresh_from_db()
    assert activation.escalation_level == 2
    escalations = Notification.objects.filter(kind="break_glass.review_escalated")
    assert set(escalations.filter(recipient=admin.user).values_list("key", flat=True)) == {
        f"break-glass:{activation.pk}:escalation:1",
        f"break-glass:{activation.pk}:escalation:2",
    }
    assert not escalations.filter(recipient=holder.user).exists()
    assert events(activation, AuditAction.BREAK_GLASS_ESCALATED) == 2
    # reviewed: the chasing stops
    review(activation, reviewer.user, hours=29)
    assert chase(40) == {"reminded": 0, "escalated": 0}
    assert verify_chain().ok


def test_escalated_at_once_when_nobody_but_the_holder_could_review(holder):
    admin = person("Ada", roles=["admin"])
    with at(0):
        activation = activation_row(eligibility_for(holder, reviewer_group="lonely"), at=T0)
    person("Holly2")  # not in the group
    assert chase(4) == {"reminded": 0, "escalated": 1}
    assert Notification.objects.filter(recipient=admin.user, kind="break_glass.review_escalated").count() == 1
    review(activation, admin.user, hours=5)


def test_the_beat_task_chases(activation, reviewer):
    with at(4):
        assert break_glass_chase_task() == {"reminded": 1, "escalated": 0, "drills_missed": 0}


def test_a_chase_chosen_before_a_review_does_nothing_after_it(activation, reviewer):
    review(activation, reviewer.user)
    with at(30):
        assert break_glass_review_chase(activation_id=activation.pk) == ""
    assert events(activation, AuditAction.BREAK_GLASS_ESCALATED) == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_beats_at_once_remind_and_escalate_once():
    holder, reviewer = person("Holly", REVIEWERS), person("Rita", REVIEWERS)
    person("Ada", roles=["admin"])
    with at(0):
        reminded = [activation_row(eligibility_for(holder), at=T0, incident_reference=f"INC-{i}") for i in range(3)]
    with at(-20):
        overdue = [activation_row(eligibility_for(holder), at=T0 - timedelta(hours=20)) for _ in range(3)]
    for _ in range(3):
        with at(4.5):
            results = race(break_glass_remind_and_escalate, break_glass_remind_and_escalate)
        assert all(isinstance(r, dict) for r in results), results
    for activation in reminded:
        assert events(activation, AuditAction.BREAK_GLASS_REMINDED) == 1
    for activation in overdue:
        assert events(activation, AuditAction.BREAK_GLASS_ESCALATED) == 1
        activation.refresh_from_db()
        assert activation.escalation_level == 1
    assert Notification.objects.filter(recipient=reviewer.user, kind="break_glass.review_reminder").count() == 3
    assert verify_chain().ok


#
# The pages
#
def test_review_page_shows_the_window_and_records_the_outcome(client, activation, reviewer, holder):
    stranger = person("Stan")
    with at(0.25):
        audit_event_record(actor=holder.user, action=AuditAction.GRANT_RELEASED, target=stranger, data={"in": "window"})
    with at(5):
        audit_event_record(actor=holder.user, action=AuditAction.GRANT_RELEASED, target=stranger, data={"after": 1})
        audit_event_record(actor=stranger.user, action=AuditAction.GRANT_RELEASED, target=stranger, data={"other": 1})
    url = reverse("jit:break_glass_review_detail", args=[activation.pk])
    with at(2):
        client.force_login(reviewer.user)
        page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "INC-7" in html and "The ledger is down." in html and "password" in html
    assert "{&#x27;in&#x27;: &#x27;window&#x27;}" in html
    assert "&#x27;after&#x27;" not in html  # the holder's later doings are not the window's
    assert "&#x27;other&#x27;" not in html
    assert "Record the review" in html
    # notes missing: the error beside the field, nothing written
    with at(2):
        refused = client.post(url, {"outcome": "not_justified", "notes": ""})
    assert refused.status_code == 400
    assert 'id="id_notes_error"' in refused.content.decode()
    assert untouched(activation)
    with at(2):
        done = client.post(url, {"outcome": "justified", "notes": "Confirmed outage."}, follow=True)
    assert done.redirect_chain[-1][0] == reverse("jit:break_glass_review_list")
    assert "Review recorded" in done.content.decode()
    activation.refresh_from_db()
    assert activation.outcome == ReviewOutcome.JUSTIFIED


def test_holder_and_strangers_cannot_reach_the_review(client, activation, holder):
    url = reverse("jit:break_glass_review_detail", args=[activation.pk])
    with at(2):
        client.force_login(person("Stan").user)
        assert client.get(url).status_code == 404
        assert client.post(url, {"outcome": "justified"}).status_code == 404
        # the holder, in the reviewer group: sees it listed nowhere, and may not post
        client.force_login(holder.user)
        assert client.post(url, {"outcome": "justified", "notes": "fine"}).status_code in (403, 404)
        listing = client.get(reverse("jit:break_glass_review_list"))
    assert "INC-7" not in listing.content.decode()
    assert untouched(activation)


def test_an_auditor_reads_the_review_without_a_form(client, activation):
    auditor = person("Audrey", roles=["auditor"])
    url = reverse("jit:break_glass_review_detail", args=[activation.pk])
    with at(2):
        client.force_login(auditor.user)
        page = client.get(url)
        refused = client.post(url, {"outcome": "justified", "notes": "x"})
    assert page.status_code == 200 and "Record the review" not in page.content.decode()
    assert refused.status_code == 403
    assert untouched(activation)


def test_the_review_list_costs_the_same_for_one_row_or_many(client, holder, reviewer, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    eligibility = eligibility_for(holder)
    with at(0):
        activation_row(eligibility, at=T0)
    with at(2):
        client.force_login(reviewer.user)
    url = reverse("jit:break_glass_review_list")
    with at(2), CaptureQueriesContext(connection) as one:
        assert client.get(url).status_code == 200
    others = [person(f"Holder{i}") for i in range(6)]
    for i, other in enumerate(others):
        with at(0):
            activation_row(eligibility_for(other), at=T0 + timedelta(minutes=i), is_drill=i % 2 == 0)
    with at(2), CaptureQueriesContext(connection) as many:
        page = client.get(url)
    assert page.content.decode().count("Review<span") == 7
    assert len(one) == len(many), (len(one), len(many))
    # and the list of all activations for an admin
    admin = person("Ada", roles=["admin"])
    with at(2):
        client.force_login(admin.user)
    with at(2), CaptureQueriesContext(connection) as every:
        assert client.get(url, {"scope": "all", "state": "any"}).status_code == 200
    assert BreakGlassActivation.objects.count() == 7
    assert len(every) <= len(many) + 2


#
# The dashboard panel: an unreviewed activation stays in sight
#
def render_panel(user) -> str:
    from django.template import Context, Template
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    template = Template("{% load break_glass_review_tags %}{% break_glass_reviews_panel %}")
    return template.render(Context({"request": request}))


def test_the_dashboard_panel_keeps_unreviewed_activations_in_sight(activation, reviewer, holder):
    auditor = person("Audrey", roles=["auditor"])
    with at(2):
        assert "INC-7" in render_panel(reviewer.user) and "due in" in render_panel(reviewer.user)
        assert render_panel(holder.user).strip() == ""  # never one's own
        assert render_panel(person("Stan").user).strip() == ""
    with at(30):
        html = render_panel(auditor.user)
        assert "1</strong> activation not reviewed" in html and "1 overdue" in html
        assert "overdue" in render_panel(reviewer.user)
    review(activation, reviewer.user, hours=31)
    with at(32):
        assert render_panel(reviewer.user).strip() == ""
        assert "Every break-glass activation has been reviewed." in render_panel(auditor.user)
