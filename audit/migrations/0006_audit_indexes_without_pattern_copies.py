"""The audit table keeps the indexes its queries use and drops the ones every insert paid for in vain.

Django's `db_index` on a CharField makes a second, text-pattern (`_like`) copy on PostgreSQL that no
query here uses, and `unique=True` on the random 64-character hash made two more. The plain btrees on
`action` and `correlation_id` stay (renamed to the names the model now declares); the rest go.

Done without rebuilding anything and without holding the table: on a trail of millions of events an
index build inside the migration's transaction would stop every state change (each writes events).
So: no transaction, `DROP INDEX CONCURRENTLY`, renames, and the hash constraint dropped under a short
lock timeout. On SQLite (the embedded default) the old indexes are renamed the same way; its inline
UNIQUE on the hash stays (harmless: hashes never repeat).
"""

from django.db import migrations, models

# Django's own names for the indexes of 0001 (the same in every database: derived from the names).
ACTION_INDEX = "audit_auditevent_action_2131bb77"
CORRELATION_INDEX = "audit_auditevent_correlation_id_d114afc6"

POSTGRESQL = [
    f"DROP INDEX CONCURRENTLY IF EXISTS {ACTION_INDEX}_like",
    f"DROP INDEX CONCURRENTLY IF EXISTS {CORRELATION_INDEX}_like",
    "DROP INDEX CONCURRENTLY IF EXISTS audit_auditevent_hash_d0c402da_like",
    f"ALTER INDEX IF EXISTS {ACTION_INDEX} RENAME TO audit_event_action_idx",
    f"ALTER INDEX IF EXISTS {CORRELATION_INDEX} RENAME TO audit_event_correlation_idx",
    "SET lock_timeout = '10s'",
    "ALTER TABLE audit_auditevent DROP CONSTRAINT IF EXISTS audit_auditevent_hash_key",
    "RESET lock_timeout",
]
SQLITE = [
    f"DROP INDEX IF EXISTS {ACTION_INDEX}",
    f"DROP INDEX IF EXISTS {CORRELATION_INDEX}",
    "CREATE INDEX IF NOT EXISTS audit_event_action_idx ON audit_auditevent (action)",
    "CREATE INDEX IF NOT EXISTS audit_event_correlation_idx ON audit_auditevent (correlation_id)",
]


def forward(apps, schema_editor):
    statements = POSTGRESQL if schema_editor.connection.vendor == "postgresql" else SQLITE
    for statement in statements:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [("audit", "0005_take_the_chain_in_one_call")]

    state_changes = [
        migrations.AlterField(
            model_name="auditevent", name="action", field=models.CharField(max_length=64, verbose_name="action")
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="correlation_id",
            field=models.CharField(blank=True, max_length=64, verbose_name="correlation id"),
        ),
        migrations.AlterField(
            model_name="auditevent", name="hash", field=models.CharField(max_length=64, verbose_name="hash")
        ),
        migrations.AddIndex(
            model_name="auditevent", index=models.Index(fields=["action"], name="audit_event_action_idx")
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["correlation_id"], name="audit_event_correlation_idx"),
        ),
    ]
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forward, migrations.RunPython.noop)],
            state_operations=state_changes,
        )
    ]
