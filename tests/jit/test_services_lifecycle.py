from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from audit.models import AuditEvent, OutboxMessage
from audit.outbox import outbox_dispatch
from audit.verify import verify_chain
from governance.choices import GrantStatus
from governance.errors import InvalidTransition, PermissionRefused, ValidationFailed
from governance.models import Grant, Notification
from governance.services.grants import grant_confirm_revoked, grant_revoke
from jit.choices import RequestStatus
from jit.models import AccessRequest
from jit.services.approvals import access_request_decide
from jit.services.chasing import chase_pending_requests
from jit.services.expiry import grants_expire_due
from jit.services.lifecycle import grant_mark_no_renew, grant_release, grant_warn_expiry
from jit.tasks import grants_warn_expiry_task
from tests.factories.governance import GrantFactory, PersonFactory

pytestmark = pytest.mark.django_db


def jit_grant(**kw):
    return GrantFactory(kind="jit", **kw)


#
# Expiry sweep
#
def test_sweep_expires_only_due_grants_and_writes_one_event_and_one_connector_call_each():
    # given
    due = [jit_grant(expires_at=timezone.now() - timedelta(minutes=m)) for m in (1, 5, 60)]
    running = jit_grant(expires_at=timezone.now() + timedelta(hours=1))
    standing = GrantFactory()
    # when
    assert grants_expire_due(batch_size=2) == 3
    # then
    assert set(Grant.objects.filter(status=GrantStatus.REVOKING).values_list("pk", flat=True)) == {g.pk for g in due}
    assert Grant.objects.get(pk=running.pk).status == GrantStatus.ACTIVE
    assert Grant.objects.get(pk=standing.pk).status == GrantStatus.ACTIVE
    assert AuditEvent.objects.filter(action="grant.expiring").count() == 3
    assert OutboxMessage.objects.filter(kind="connector.revoke").count() == 3
    assert verify_chain().ok


def test_running_the_sweep_twice_changes_nothing_the_second_time():
    jit_grant(expires_at=timezone.now() - timedelta(minutes=1))
    assert grants_expire_due() == 1
    assert grants_expire_due() == 0
    assert AuditEvent.objects.filter(action="grant.expiring").count() == 1
    assert OutboxMessage.objects.filter(kind="connector.revoke").count() == 1


def test_sweep_catches_up_after_the_worker_was_down_for_hours():
    # given: grants that expired at different times while no worker ran
    start = timezone.now()
    grants = [jit_grant(expires_at=start + timedelta(minutes=10 * i)) for i in range(1, 13)]
    # when: the first sweep runs two hours later
    with time_machine.travel(start + timedelta(hours=2, minutes=1), tick=False):
        expired = grants_expire_due(now=timezone.now())
    # then
    assert expired == 12
    assert all(Grant.objects.get(pk=g.pk).status == GrantStatus.REVOKING for g in grants)


def test_expired_grant_ends_when_the_target_confirms():
    grant = jit_grant(expires_at=timezone.now() - timedelta(minutes=1))
    grants_expire_due()
    grant_confirm_revoked(grant_id=grant.pk, actor=None)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.EXPIRED
    assert AuditEvent.objects.filter(action="grant.expired", target_id=str(grant.pk)).count() == 1


def test_pages_treat_a_grant_past_expiry_as_inactive_before_the_sweep():
    grant = jit_grant(expires_at=timezone.now() - timedelta(seconds=1))
    assert grant.status == GrantStatus.ACTIVE
    assert not Grant.objects.in_force().filter(pk=grant.pk).exists()


def test_health_turns_red_when_the_sweep_stops_or_grants_are_overdue(client, admin_user):
    grants_expire_due()
    assert client.get("/health/").json()["checks"]["expiry_sweep"]["ok"]
    with time_machine.travel(timezone.now() + timedelta(minutes=4), tick=False):
        response = client.get("/health/")
        ready = client.get("/health/ready/")
    assert response.status_code == 503 and not response.json()["checks"]["expiry_sweep"]["ok"]
    # a stale sweep is beat's problem: the web node itself can still serve (the load balancer's probe)
    assert ready.status_code == 200 and set(ready.json()["checks"]) == {"database", "broker"}
    jit_grant(expires_at=timezone.now() - timedelta(minutes=3))
    assert client.get("/health/").json()["checks"]["expiry_sweep"] == {"ok": False}  # strangers: pass/fail only
    client.force_login(admin_user)  # staff see why
    assert "overdue" in client.get("/health/").json()["checks"]["expiry_sweep"]["detail"]


#
# Release, warnings, do-not-renew
#
def test_holder_releases_early_and_a_stranger_cannot():
    grant = jit_grant(identity=PersonFactory())
    with pytest.raises(PermissionRefused):
        grant_release(grant_id=grant.pk, actor=PersonFactory().user)
    grant_release(grant_id=grant.pk, actor=grant.identity.user, reason="done")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING and grant.end_reason == "released"
    with pytest.raises(InvalidTransition):
        grant_release(grant_id=grant.pk, actor=grant.identity.user)


def test_expiry_warning_is_sent_once_with_a_link_to_extend():
    person = PersonFactory()
    grant = jit_grant(identity=person, expires_at=timezone.now() + timedelta(minutes=30))
    assert grants_warn_expiry_task() == 1
    assert grants_warn_expiry_task() == 0
    notification = Notification.objects.get(recipient=person.user, kind="grant.expiring")
    assert notification.link == f"/access/grants/{grant.pk}/extend/"
    outbox_dispatch()
    assert len(mail.outbox) == 1


def test_do_not_renew_stops_warnings_and_refuses_renewal(submit, alice):
    grant = jit_grant(identity=alice, expires_at=timezone.now() + timedelta(minutes=30))
    owner = grant.entitlement.owner.user
    grant_mark_no_renew(grant_id=grant.pk, actor=owner, note="reviewed")
    assert grant_warn_expiry(grant_id=grant.pk) is False
    with pytest.raises(InvalidTransition, match="do-not-renew"):
        submit(grant.entitlement, renewal_of_id=grant.pk)


@pytest.mark.parametrize("ending", ["released", "reviewed, do not renew", "expired", "revoked by its owner"])
def test_a_pending_renewal_closes_when_its_grant_ends_or_may_not_be_renewed(submit, alice, entitlement, ending):
    # given a running grant with an extension waiting for its approvers
    grant = jit_grant(identity=alice, entitlement=entitlement, expires_at=timezone.now() + timedelta(minutes=30))
    renewal = submit(entitlement, renewal_of_id=grant.pk)
    approver = entitlement.owner.user
    assert Notification.objects.filter(recipient=approver, read_at__isnull=True).exists()

    # when the grant ends, or an owner decides it is not to be renewed
    if ending == "released":
        grant_release(grant_id=grant.pk, actor=alice.user)
    elif ending == "reviewed, do not renew":
        grant_mark_no_renew(grant_id=grant.pk, actor=approver, note="reviewed")
    elif ending == "expired":
        assert grants_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    else:  # the next sweep finds the renewal of a grant that ended another way
        grant_revoke(grant_id=grant.pk, actor=approver, reason="no longer needed")
        assert grants_expire_due() == 0

    # then the extension is closed, said in the trail, and nobody is asked about it any more
    renewal.refresh_from_db()
    assert renewal.status == RequestStatus.CANCELLED
    assert list(AuditEvent.objects.for_target(renewal).order_by("seq").values_list("action", flat=True))[-1] == (
        "request.closed_grant_ended"
    )
    assert not Notification.objects.filter(recipient=approver, read_at__isnull=True).exists()
    assert verify_chain().ok


#
# Renewal and step-up
#
def test_renewal_replaces_the_grant_and_repeated_renewals_need_step_up(
    submit, alice, entitlement, ent_owner, sys_owner
):
    from django.contrib.auth.models import Group

    compliance = PersonFactory().user
    compliance.groups.add(Group.objects.get(name="approver"))
    grant = jit_grant(identity=alice, entitlement=entitlement, expires_at=timezone.now() + timedelta(hours=1))
    for round_ in range(4):
        request = submit(entitlement, renewal_of_id=grant.pk, duration=timedelta(hours=2))
        stages = list(request.stages.order_by("position"))
        if round_ < 3:
            assert len(stages) == 2 and not request.policy["step_up"]
        else:
            assert request.policy["step_up"] and stages[-1].reason.startswith("Step-up")
        for stage in stages:
            approver = {"entitlement_owner": ent_owner, "system_owner": sys_owner}.get(
                stage.approver_source, compliance
            )
            access_request_decide(request_id=request.pk, approver=approver, decision="approve")
        request.refresh_from_db()
        assert request.status == RequestStatus.APPROVED
        new = request.grant
        assert new.renewal_of_id == grant.pk and new.status == GrantStatus.ACTIVE
        assert Grant.objects.get(pk=grant.pk).status == GrantStatus.EXPIRED
        grant = new
    assert AuditEvent.objects.filter(action="grant.renewed").count() == 4


def test_an_extension_cannot_carry_a_grant_past_its_maximum_from_now(submit, alice, entitlement):
    grant = jit_grant(identity=alice, entitlement=entitlement, expires_at=timezone.now() + timedelta(hours=23))
    with pytest.raises(ValidationFailed, match="extend it by at most") as refused:
        submit(entitlement, renewal_of_id=grant.pk, duration=timedelta(days=6, hours=12))
    assert "duration" in refused.value.field_errors
    assert not AccessRequest.objects.exists()


#
# Reminders, escalation, time-outs
#
def test_pending_request_is_reminded_then_escalated_then_timed_out_once_each(submit, entitlement, settings):
    from django.contrib.auth.models import Group

    fallback = PersonFactory().user
    fallback.groups.add(Group.objects.get(name="admin"))
    request = submit(entitlement)
    start = timezone.now()
    with time_machine.travel(start + timedelta(hours=1), tick=False):
        assert chase_pending_requests() == {"timed_out": 0, "escalated": 0, "reminded": 0}
    with time_machine.travel(start + timedelta(hours=5), tick=False):
        assert chase_pending_requests()["reminded"] == 1
        assert chase_pending_requests()["reminded"] == 0
    with time_machine.travel(start + timedelta(hours=25), tick=False):
        assert chase_pending_requests()["escalated"] == 1
    assert fallback in request.stages.get(position=1).eligible.all()
    with time_machine.travel(start + timedelta(hours=73), tick=False):
        assert chase_pending_requests()["timed_out"] == 1
        assert chase_pending_requests()["timed_out"] == 0
    request.refresh_from_db()
    assert request.status == RequestStatus.TIMED_OUT
    actions = list(AuditEvent.objects.for_target(request).order_by("seq").values_list("action", flat=True))
    assert actions == ["request.submitted", "request.reminded", "request.escalated", "request.timed_out"]
    with pytest.raises(InvalidTransition):
        access_request_decide(request_id=request.pk, approver=fallback, decision="approve")


def test_asks_nobody_can_answer_any_more_are_withdrawn(submit, entitlement, ent_owner, sys_owner):
    # given a two-stage request: the entitlement owner is asked first
    request = submit(entitlement)
    ask = Notification.objects.get(recipient=ent_owner, kind="request.approval_needed")
    # when they approve, their ask is done and the system owner's stands
    access_request_decide(request_id=request.pk, approver=ent_owner, decision="approve")
    ask.refresh_from_db()
    assert ask.read_at is not None
    second = Notification.objects.get(recipient=sys_owner, kind="request.approval_needed")
    assert second.read_at is None
    # when the requester cancels, nobody is asked any more
    from jit.services.requests import access_request_cancel

    access_request_cancel(request_id=request.pk, actor=request.requester)
    second.refresh_from_db()
    assert second.read_at is not None
