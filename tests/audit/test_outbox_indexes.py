"""The outbox table carries only the indexes a portal query uses (audit 0010)."""

import pytest
from django.db import connection

from audit.models import OutboxMessage

pytestmark = pytest.mark.django_db

# Each with the query it serves (OutboxMessage says the same next to each).
KEPT = {
    "audit_outboxmessage_pkey": "btree (id)",  # settling, retrying, the retention purge
    # outbox_enqueue's get_or_create, ON CONFLICT of the bulk enqueues, reconciliation's last removal ask
    "audit_outboxmessage_idempotency_key_key": "btree (idempotency_key)",
    # the dispatcher's claim (pending and due, oldest first); reconciliation's pending-run check
    "audit_outbox_due_idx": "btree (next_attempt_at, id) WHERE ((status)::text = 'pending'::text)",
    # the admin's dead-letter list and its count
    "audit_outbox_dead_idx": "btree (id) WHERE ((status)::text = 'dead'::text)",
}


@pytest.mark.postgres  # the catalogue read is PostgreSQL's
def test_the_outbox_has_four_indexes_and_no_text_pattern_copies():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [OutboxMessage._meta.db_table]
        )
        indexes = dict(cursor.fetchall())
    assert {name: definition.split(" USING ")[1] for name, definition in indexes.items()} == KEPT


def test_no_outbox_field_asks_for_an_index_of_its_own():
    indexed = {field.name for field in OutboxMessage._meta.concrete_fields if field.db_index or field.unique}
    assert indexed == {"id", "idempotency_key"}
    assert {index.name for index in OutboxMessage._meta.indexes} == {"audit_outbox_due_idx", "audit_outbox_dead_idx"}


@pytest.mark.postgres  # the plan is PostgreSQL's
def test_the_admins_dead_letters_are_read_through_their_own_index():
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # an empty table would otherwise be read whole
        cursor.execute("EXPLAIN SELECT id FROM audit_outboxmessage WHERE status = 'dead' ORDER BY id DESC LIMIT 100")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "audit_outbox_dead_idx" in plan
