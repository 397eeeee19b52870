"""The audit chain is taken when a state change commits, not while it works.

A service collects its events; the outermost `state_change` writes them (chain, head, hash, insert)
as its last step. These tests pin what that promises: the same chain as before, events of a rolled
back savepoint gone, nested services writing once, no wait on the chain while a service works, and a
deadlock run again instead of surfacing.
"""

import hashlib
import json
import threading
from datetime import UTC

import pytest
from django.db import connection, transaction

from audit.choices import AuditAction
from audit.models import GENESIS_HASH, AuditEvent
from audit.services import (
    HASHED_FIELDS,
    audit_event_record,
    audit_events_record_many,
    compute_hash,
    data_json,
    state_change,
)
from audit.verify import verify_chain
from governance.locks import lock_ids
from governance.models import Identity
from tests.concurrency import race
from tests.factories.governance import PersonFactory


def _record(note: str) -> None:
    audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD, data={"note": note})


def notes() -> list[str]:
    return list(AuditEvent.objects.order_by("seq").values_list("data__note", flat=True))


@pytest.mark.django_db
class TestCollectedEvents:
    def test_a_service_writes_its_events_when_it_is_done_in_order(self):
        @state_change
        def service():
            _record("first")
            assert AuditEvent.objects.count() == 0  # collected, not yet on the chain
            _record("second")

        service()

        assert notes() == ["first", "second"]
        assert verify_chain().ok

    def test_a_nested_service_joins_the_outer_one(self):
        @state_change
        def inner():
            _record("inner")

        @state_change
        def outer():
            _record("outer")
            inner()
            _record("after")

        outer()

        assert notes() == ["outer", "inner", "after"]
        assert verify_chain().ok

    def test_events_of_a_rolled_back_savepoint_are_dropped_with_it(self):
        @state_change
        def service():
            _record("kept")
            try:
                with transaction.atomic():
                    _record("undone")
                    raise ValueError("changed my mind")
            except ValueError:
                pass
            _record("also kept")

        service()

        assert notes() == ["kept", "also kept"]
        assert verify_chain().ok

    def test_a_failing_service_leaves_no_event(self):
        @state_change
        def service():
            _record("never")
            raise ValueError("refused")

        with pytest.raises(ValueError):
            service()

        assert AuditEvent.objects.count() == 0

    def test_an_unknown_action_is_refused_when_recorded_not_at_commit(self):
        @state_change
        def service():
            with pytest.raises(ValueError):
                audit_event_record(actor=None, action="no.such.action")
            _record("fine")

        service()
        assert notes() == ["fine"]

    def test_the_hashes_are_the_canonical_form_as_before(self):
        # An event written by the collecting path hashes exactly as the published canonical form says,
        # so a trail written before this change and after it verifies as one chain.
        _record("written at once")  # the old path, outside any service

        @state_change
        def service():
            assert audit_events_record_many(actor=None, events=[]) == []
            _record("collected")

        service()
        first, second = AuditEvent.objects.order_by("seq")
        for event, prev in ((first, GENESIS_HASH), (second, first.hash)):
            when = event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
            header = [when if name == "occurred_at" else getattr(event, name) for name in HASHED_FIELDS]
            text = json.dumps(header, separators=(",", ":"), ensure_ascii=False) + "\n" + data_json(event.data)
            assert event.prev_hash == prev
            assert event.hash == hashlib.sha256(text.encode()).hexdigest() == compute_hash(event)
        assert verify_chain().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_service_at_work_does_not_hold_the_chain():
    # given a service that has recorded an event and is still working (holding its rows)
    working, finish = threading.Event(), threading.Event()

    @state_change
    def slow_service():
        _record("slow")
        working.set()
        finish.wait(10)

    @state_change
    def quick_service():
        _record("quick")

    def slow():
        try:
            slow_service()
        finally:
            connection.close()

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        assert working.wait(10)
        # when another service records and commits meanwhile
        done = threading.Event()

        def quick():
            try:
                quick_service()
                done.set()
            finally:
                connection.close()

        other = threading.Thread(target=quick)
        other.start()
        # then it does not wait for the first one to finish
        assert done.wait(5), "the quick service waited for the slow one: the chain was held while it worked"
        other.join()
    finally:
        finish.set()
        thread.join(10)
    assert notes() == ["quick", "slow"]
    assert verify_chain().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_deadlock_runs_the_loser_again_and_both_changes_happen():
    # given two services that lock the same two identities in opposite orders
    first, second = PersonFactory(), PersonFactory()
    both_hold_one = threading.Barrier(2, timeout=10)
    attempts = {"a": 0, "b": 0}

    def crossing(name: str, mine: Identity, theirs: Identity):
        @state_change
        def service():
            attempts[name] += 1
            lock_ids(Identity, [mine.pk])
            if attempts[name] == 1:  # meet the other only on the first try
                both_hold_one.wait()
            lock_ids(Identity, [theirs.pk])
            Identity.objects.filter(pk=mine.pk).update(description=f"by {name}")
            _record(name)

        return service

    # when they run at once and PostgreSQL breaks the deadlock by failing one of them
    results = race(crossing("a", first, second), crossing("b", second, first))

    # then neither fails: the loser ran again, and each change and event is there once
    assert results == [None, None], results
    assert sorted(attempts.values()) == [1, 2]
    assert sorted(notes()) == ["a", "b"]
    assert set(Identity.objects.filter(pk__in=[first.pk, second.pk]).values_list("description", flat=True)) == {
        "by a",
        "by b",
    }
    assert verify_chain().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_many_services_at_once_make_one_valid_chain():
    people = [PersonFactory() for _ in range(6)]

    def change(person):
        @state_change
        def service():
            lock_ids(Identity, [person.pk])
            for n in range(3):
                _record(f"{person.pk}-{n}")

        return service

    results = race(*[change(p) for p in people])

    assert results == [None] * len(people)
    assert AuditEvent.objects.count() == 18
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 19))
    assert verify_chain().ok
