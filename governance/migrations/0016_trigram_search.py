"""Trigram indexes for the text people search by (PostgreSQL only).

Every search box of the inventory is a case-insensitive substring match (`icontains`), which
Django writes on PostgreSQL as `UPPER("col"::text) LIKE UPPER('%text%')`: no B-tree can serve a
leading `%`, so each search read the whole table (two full scans at 100,000 identities, ~200 ms).
A GIN index of `pg_trgm` trigrams answers `LIKE '%text%'` when it is built on the very expression
the query compares, so each index here is on `UPPER(col::text)`: the searches stay plain
`icontains`, the same on SQLite, and PostgreSQL serves them from these indexes (checked with
EXPLAIN in tests/governance/test_search_trigram.py). Text of fewer than three characters has no
trigram to look up; the planner then reads the table as before.

The indexes are not in the models' state: they are a PostgreSQL detail (SQLite has neither GIN nor
pg_trgm), like the audit trail's triggers. pg_trgm is a trusted extension: the owner role that runs
migrations (README, "Two database roles") may create it in a database it owns; one created
earlier by a superuser is left as it is, and is not dropped when this migration is reversed.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

# (index, table, column): what each search box compares.
SEARCHED = [
    # Identities: the list's search (name, email, team), its owner filter and every "identity
    # named ..." search (findings, certification reports, the audit trail's actor) go by name.
    ("gov_identity_name_trgm", "governance_identity", "name"),
    ("gov_identity_email_trgm", "governance_identity", "email"),
    ("gov_identity_team_trgm", "governance_identity", "team"),
    # The catalogue (page and API): entitlement name or business purpose, or the system's name.
    ("gov_entitlement_name_trgm", "governance_entitlement", "name"),
    ("gov_entitlement_purpose_trgm", "governance_entitlement", "business_purpose"),
    ("gov_system_name_trgm", "governance_system", "name"),
    # The logins page: username or email (or the identity's name, above); an index serves them only
    # when the search unites the two sets rather than ORing across the join to the identity.
    ("gov_auth_user_username_trgm", "auth_user", "username"),
    ("gov_auth_user_email_trgm", "auth_user", "email"),
]


class KeepTrigramExtension(TrigramExtension):
    """Created if missing (trusted: the owner role may); never dropped on the way back, since it
    may have been there before and other objects may use it."""

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for index, table, column in SEARCHED:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for index, _table, _column in SEARCHED:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{index}"')


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("governance", "0015_connectors"),
    ]

    operations = [
        KeepTrigramExtension(),
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
