import pytest
from django.core.management import CommandError, call_command

from audit.choices import AuditAction
from audit.services import audit_event_record
from tests.audit.tampering import tamper as _tamper

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_events():
    return [audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD, data={"n": n}) for n in range(3)]


def test_intact_chain_passes(three_events, capsys):
    call_command("verify_audit")
    assert "3 events verified" in capsys.readouterr().out


def test_edited_row_is_reported_with_its_position(three_events):
    _tamper("UPDATE audit_auditevent SET data = %s WHERE seq = 2", ['{"n": 99}'])
    with pytest.raises(CommandError, match=r"broken at event #2: content does not match"):
        call_command("verify_audit")


def test_deleted_row_is_reported(three_events):
    _tamper("DELETE FROM audit_auditevent WHERE seq = 2", [])
    with pytest.raises(CommandError, match=r"event #2 is missing"):
        call_command("verify_audit")


def test_rehashed_row_still_breaks_the_next_link(three_events):
    # An attacker who recomputes the edited row's own hash still breaks the link after it.
    from audit.models import AuditEvent
    from audit.services import compute_hash

    event = AuditEvent.objects.get(seq=2)
    event.actor_label = "mallory"
    new_hash = compute_hash(event)
    _tamper("UPDATE audit_auditevent SET actor_label = 'mallory', hash = %s WHERE seq = 2", [new_hash])
    with pytest.raises(CommandError, match=r"broken at event #3: previous-hash link"):
        call_command("verify_audit")


def test_events_cut_from_the_end_are_caught_by_the_head_kept_from_an_earlier_run(three_events, capsys):
    # given a head printed by a run and kept outside the database
    call_command("verify_audit")
    head = capsys.readouterr().out.split("Head: ")[1].split()[0]
    assert head == f"3:{three_events[-1].hash}"

    # when the newest event is removed (the rest still chains)
    _tamper("DELETE FROM audit_auditevent WHERE seq = 3", [])
    call_command("verify_audit")  # alone, a shorter chain looks whole

    # then checking against the kept head finds the cut
    with pytest.raises(CommandError, match=r"the trail ends at #2: events up to #3 were removed"):
        call_command("verify_audit", expect=head)


def test_a_kept_head_that_no_longer_matches_is_reported(three_events):
    with pytest.raises(CommandError, match=r"broken at event #2: not the event recorded"):
        call_command("verify_audit", expect=f"2:{'0' * 64}")
    with pytest.raises(CommandError, match="SEQ:HASH"):
        call_command("verify_audit", expect="two")
