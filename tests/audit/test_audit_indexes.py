"""The audit table carries only the indexes a portal query uses (issue 17, item 3; migration 0007)."""

import pytest
from django.db import connection

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

# Each with the query it serves: AuditEvent.Meta and the `seq` field say which.
KEPT = {
    "audit_auditevent_pkey",  # the primary key
    "audit_auditevent_seq_key",  # the chain's order: every page, timeline, the writer's head, verify_audit
    "audit_event_target_idx",  # timelines and history panels, the target filter
    "audit_event_action_idx",  # the action filter
    "audit_event_correlation_idx",  # the correlation-id filter
    "audit_event_occurred_idx",  # since/until, a break-glass window
}


@pytest.mark.postgres  # the catalogue read is PostgreSQL's
def test_the_audit_table_has_six_indexes_and_none_on_the_hash():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [AuditEvent._meta.db_table])
        indexes = dict(cursor.fetchall())
    assert set(indexes) == KEPT
    assert not [name for name, definition in indexes.items() if "hash" in definition]


def test_every_declared_index_is_one_the_table_keeps():
    declared = {index.name for index in AuditEvent._meta.indexes}
    assert declared == KEPT - {"audit_auditevent_pkey", "audit_auditevent_seq_key"}
    assert not AuditEvent._meta.get_field("actor_user_id").db_index
    assert not AuditEvent._meta.get_field("actor_identity_id").db_index
    assert not AuditEvent._meta.get_field("hash").db_index and not AuditEvent._meta.get_field("hash").unique


@pytest.mark.postgres  # the catalogue read is PostgreSQL's
def test_the_chain_head_is_planned_at_each_call():
    # A plan cached on an empty trail (a sequential scan) would stay with the session as the trail grows.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef('audit_take_chain(bigint)'::regprocedure)")
        (definition,) = cursor.fetchone()
    assert "RETURN QUERY EXECUTE 'SELECT seq, hash FROM audit_auditevent ORDER BY seq DESC LIMIT 1'" in definition
