"""History tables carry only the indexes a portal query uses (issue 17, item 3; governance 0018, jit 0010).

simple-history copies every index, unique field and foreign key of a model onto its history, with
text-pattern twins: the identity's history carried 18 indexes. Each kept one, with what reads it:
"""

import pytest
from django.db import connection

from governance.models import Entitlement, Grant, Identity, SodRule, System
from jit.models import BreakGlassEligibility

pytestmark = pytest.mark.django_db

# The primary key; `id`: an object's own history (obj.history, the identity page's change history, a
# grant's connector job keys and the held-access report); `history_user_id`: deleting a login sets it to NULL.
KEPT = {"history_id", "id", "history_user_id"}
HISTORIES = [Grant, Identity, System, Entitlement, SodRule, BreakGlassEligibility]


def _indexed_columns(table: str) -> dict[str, str]:
    """Each index of `table` by its columns, e.g. {"id": "btree (id)"}."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT string_agg(a.attname, ',' ORDER BY k.n), pg_get_indexdef(i.indexrelid)"
            " FROM pg_index i CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            " WHERE i.indrelid = %s::regclass GROUP BY i.indexrelid",
            [table],
        )
        return dict(cursor.fetchall())


@pytest.mark.postgres  # the catalogue read is PostgreSQL's
@pytest.mark.parametrize("model", HISTORIES, ids=lambda model: model.__name__)
def test_a_history_table_keeps_its_key_the_objects_id_and_the_user(model):
    indexes = _indexed_columns(model.history.model._meta.db_table)
    assert set(indexes) == KEPT
    assert not [definition for definition in indexes.values() if "pattern_ops" in definition]


@pytest.mark.postgres  # the catalogue read is PostgreSQL's
def test_a_rules_past_entitlements_are_read_through_the_rules_history_row():
    m2m_history = SodRule.history.model._meta.get_field("historicalsodrule_entitlements").related_model
    assert set(_indexed_columns(m2m_history._meta.db_table)) == {"m2m_history_id", "history_id", "id"}


@pytest.mark.parametrize("model", HISTORIES, ids=lambda model: model.__name__)
def test_no_history_field_but_the_kept_ones_asks_for_an_index(model):
    fields = model.history.model._meta.concrete_fields
    assert {field.column for field in fields if field.db_index or field.unique or field.primary_key} == KEPT
    assert not model.history.model._meta.indexes
