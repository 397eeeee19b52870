import threading
from datetime import UTC

import pytest
from django.db import DatabaseError, close_old_connections, connection, transaction

from audit.choices import AuditAction
from audit.context import clear_context, set_context
from audit.models import GENESIS_HASH, AuditEvent, AuditTrailIsAppendOnly
from audit.services import EventSpec, Target, audit_event_record, audit_events_record_many
from audit.verify import verify_chain

pytestmark = pytest.mark.django_db


def test_events_chain_each_to_the_one_before(make_user):
    # given
    user = make_user("alice")
    # when
    first = audit_event_record(actor=user, action=AuditAction.USER_LOGGED_IN, target=user)
    second = audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD, data={"kind": "email.send"})
    # then
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert (first.seq, second.seq) == (1, 2)
    assert first.actor_label == "alice" and first.actor_type == "user"
    assert second.actor_label == "system" and second.actor_type == "system"
    assert verify_chain().ok


def test_event_carries_the_context_set_for_the_request(make_user):
    set_context(channel="api", correlation_id="req-123", client_ip="10.0.0.7")
    try:
        event = audit_event_record(actor=make_user(), action=AuditAction.USER_LOGGED_IN)
    finally:
        clear_context()
    assert (event.channel, event.correlation_id, event.client_ip) == ("api", "req-123", "10.0.0.7")


def test_batch_writes_a_valid_chain_in_one_insert(django_assert_max_num_queries):
    specs = [
        EventSpec(AuditAction.GRANT_EXPIRING, Target("governance.grant", str(i), f"grant {i}")) for i in range(500)
    ]
    # lock + head read + one COPY on PostgreSQL; SQLite caps variables per INSERT, so a few more
    with django_assert_max_num_queries(3 if connection.vendor == "postgresql" else 12):
        audit_events_record_many(actor=None, events=specs)
    assert AuditEvent.objects.count() == 500
    assert list(AuditEvent.objects.order_by("seq").values_list("target_id", flat=True)[:3]) == ["0", "1", "2"]
    assert verify_chain().ok


def test_data_is_stored_as_the_json_it_was_hashed_as(make_user):
    from datetime import datetime
    from decimal import Decimal

    event = audit_event_record(
        actor=None,
        action=AuditAction.IMPORT_APPLIED,
        data={
            "when": datetime(2026, 1, 2, tzinfo=UTC),
            "amount": Decimal("1.50"),
            "nested": {"b": 1, "a": [1]},
        },
    )
    event.refresh_from_db()
    assert event.data["when"] == "2026-01-02T00:00:00Z"
    assert verify_chain().ok


def test_model_and_queryset_refuse_changes():
    event = audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD)
    event.actor_label = "mallory"
    with pytest.raises(AuditTrailIsAppendOnly):
        event.save()
    with pytest.raises(AuditTrailIsAppendOnly):
        event.delete()
    with pytest.raises(AuditTrailIsAppendOnly):
        AuditEvent.objects.filter(pk=event.pk).update(actor_label="mallory")
    with pytest.raises(AuditTrailIsAppendOnly):
        AuditEvent.objects.all().delete()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET actor_label = 'mallory'",
        "DELETE FROM audit_auditevent",
        "SET LOCAL portal.audit_maintenance = 'off'; TRUNCATE audit_auditevent",
    ],
    ids=["update", "delete", "truncate"],
)
def test_database_trigger_refuses_update_delete_truncate(statement):
    audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert AuditEvent.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_produce_one_valid_chain():
    # given: eight threads, each with its own connection, writing singles and batches at once
    writers, per_writer = 8, 15
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_writer):
                with transaction.atomic():
                    if i % 3 == 0:
                        audit_events_record_many(
                            actor=None,
                            events=[
                                EventSpec(AuditAction.GRANT_EXPIRING, Target("t", f"{n}-{i}-{k}")) for k in range(3)
                            ],
                        )
                    else:
                        audit_event_record(actor=None, action=AuditAction.OUTBOX_DEAD, data={"writer": n, "i": i})
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    # when
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert not errors
    expected = writers * (per_writer // 3 * 3 + (per_writer - per_writer // 3))
    assert AuditEvent.objects.count() == expected
    report = verify_chain()
    assert report.ok, report
    assert report.checked == expected


@pytest.mark.postgres
@pytest.mark.parametrize("batch", [1, 150], ids=["insert", "copy"])
def test_floats_in_data_survive_verification(batch):
    # jsonb writes 1e20 back as 100000000000000000000 and -0.0 as 0.0; the chain must still verify
    data = {"f": 1e20, "g": 0.1, "h": -0.0, "nested": [{"ratio": 1.5e-7}]}
    audit_events_record_many(actor=None, events=[EventSpec(AuditAction.IMPORT_APPLIED, None, data)] * batch)
    report = verify_chain()
    assert report.ok and report.checked == batch, report
    stored = AuditEvent.objects.order_by("seq").first().data
    assert stored == {"f": "1e+20", "g": "0.1", "h": "-0.0", "nested": [{"ratio": "1.5e-07"}]}


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_numbers_json_cannot_hold_are_refused(number):
    with pytest.raises(ValueError, match="Audit data cannot hold"):
        audit_event_record(actor=None, action=AuditAction.IMPORT_APPLIED, data={"x": number})
    assert not AuditEvent.objects.exists()


@pytest.mark.postgres
def test_outside_a_test_database_even_the_maintenance_setting_cannot_truncate_the_trail():
    # given a database named as a real one, with the audit trigger of the migrations on a table
    import importlib

    import psycopg

    trigger_sql = importlib.import_module("audit.migrations.0004_truncate_only_in_test_databases").FORWARD
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("options", None)
    server = {**params, "dbname": "postgres", "autocommit": True}
    with psycopg.connect(**server) as admin:
        admin.execute("DROP DATABASE IF EXISTS portal_truncate_probe")
        admin.execute("CREATE DATABASE portal_truncate_probe")
    try:
        with psycopg.connect(**{**server, "dbname": "portal_truncate_probe"}) as probe:
            probe.execute("CREATE TABLE audit_auditevent (id int)")
            probe.execute(trigger_sql)
            probe.execute(
                "CREATE TRIGGER no_truncate BEFORE TRUNCATE ON audit_auditevent "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_refuse_change()"
            )
            probe.execute("INSERT INTO audit_auditevent VALUES (1)")
            probe.execute("SET portal.audit_maintenance = 'on'")

            # when someone sets the test suite's exemption and truncates
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                probe.execute("TRUNCATE audit_auditevent")

            # then the row is still there
            assert probe.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0] == 1
    finally:
        with psycopg.connect(**server) as admin:
            admin.execute("DROP DATABASE IF EXISTS portal_truncate_probe")
