"""A prepared query gives the rows its queryset gives, with its SQL built once per process."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.kernel.prepared import PreparedQuery
from audit.models import OutboxMessage

pytestmark = pytest.mark.django_db


def outbox_rows(kind, key_prefix):
    return (
        OutboxMessage.objects.filter(kind=kind, idempotency_key__startswith=key_prefix)
        .order_by("idempotency_key")
        .values_list("idempotency_key", "payload")
    )


@pytest.fixture
def messages():
    for key, kind, payload in [
        ("a:1", "mail", {"to": "ann"}),
        ("a:2", "mail", {"to": ["bob", "eve"]}),
        ("b:1", "mail", {}),
        ("a:3", "connector", {"ask": "revoke"}),
    ]:
        OutboxMessage.objects.create(idempotency_key=key, kind=kind, payload=payload)


def test_rows_are_the_querysets_rows_for_each_run_values(messages):
    prepared = PreparedQuery(outbox_rows)
    for kind, prefix in [("mail", "a:"), ("mail", "b:"), ("connector", "a:"), ("mail", "zz")]:
        assert prepared.rows(kind, prefix) == list(outbox_rows(kind, prefix))


def test_json_comes_back_decoded_as_django_gives_it(messages):
    assert PreparedQuery(outbox_rows).rows("mail", "a:")[1] == ("a:2", {"to": ["bob", "eve"]})


def test_the_sql_is_built_once_and_each_run_is_one_query(messages):
    built = []

    def build(kind, prefix):
        built.append((kind, prefix))
        return outbox_rows(kind, prefix)

    prepared = PreparedQuery(build)
    with CaptureQueriesContext(connection) as queries:
        prepared.rows("mail", "a:")
        prepared.rows("connector", "a:")
    assert len(built) == (1 if connection.vendor == "postgresql" else 2)
    assert len(queries.captured_queries) == 2


def test_rows_by_key_read_the_same_off_postgresql(messages, monkeypatch):
    # The trail's names are read by key (`= ANY(ids)` on PostgreSQL); elsewhere as `IN (ids)`, built each time:
    # `make run`'s SQLite has no ANY (its audit page failed so once).
    from governance.audit_names import batch_rows

    names = batch_rows(OutboxMessage, "idempotency_key", key="kind")
    on_postgres = sorted(names.rows(["mail"]))
    monkeypatch.setattr(connection, "vendor", "other")
    with CaptureQueriesContext(connection) as queries:
        assert sorted(names.rows(["mail"])) == on_postgres == [("a:1",), ("a:2",), ("b:1",)]
    (sql,) = [query["sql"] for query in queries.captured_queries]
    assert "ANY(" not in sql and " IN (" in sql, sql
