"""The outbox keeps the indexes its queries use: the primary key, the idempotency key, the due rows, the dead ones.

Every query on the table, and what serves it (OutboxMessage says the same next to each index):
- the dispatcher's claim, due pending rows oldest first: `audit_outbox_due_idx` (partial, pending);
  reconciliation's "a run already pending for this system?" walks the same pending rows;
- enqueuing (get_or_create, ON CONFLICT DO NOTHING) and reconciliation's last removal ask: the unique
  idempotency key;
- settling, retrying, the retention purge (delivered rows by id, oldest first): the primary key;
- the admin's status filter: dead messages through the new `audit_outbox_dead_idx` (partial, dead);
  pending ones are the due index's rows; delivered ones are most of the table, which no index narrows.

Dropped: the plain btree on `status` and the text-pattern (`_like`) copies Django made of it and of the
idempotency key (nothing here matches either with LIKE). The `status` btree held an entry for every row
and took one on every insert to serve only the dead-letter filter. Measured on 300,000 messages (0.1% dead),
that list and its count read 1.1 ms and 0.4 ms through it, 20 ms and 43 ms (a sequential scan) without any
index, and 0.7 ms and 0.6 ms through the partial index, which no insert touches.

Done like 0006, without holding the table: no transaction, `DROP/CREATE INDEX CONCURRENTLY`. On SQLite
(no text-pattern copies there) the status index is dropped and the partial one made.
"""

from django.db import migrations, models

# Django's names for the indexes of 0001 (derived from the table and columns: the same everywhere).
STATUS_INDEX = "audit_outboxmessage_status_69a47998"
KEY_PATTERN_INDEX = "audit_outboxmessage_idempotency_key_cbe7460a_like"
DEAD = (
    "CREATE INDEX {concurrently} IF NOT EXISTS audit_outbox_dead_idx ON audit_outboxmessage (id) WHERE status = 'dead'"
)

POSTGRESQL = [
    f"DROP INDEX CONCURRENTLY IF EXISTS {STATUS_INDEX}_like",
    f"DROP INDEX CONCURRENTLY IF EXISTS {KEY_PATTERN_INDEX}",
    DEAD.format(concurrently="CONCURRENTLY"),  # before the status index goes: the dead list is never unserved
    f"DROP INDEX CONCURRENTLY IF EXISTS {STATUS_INDEX}",
]
SQLITE = [
    DEAD.format(concurrently=""),
    f"DROP INDEX IF EXISTS {STATUS_INDEX}",
]

# Back to 0001's indexes (the key's text-pattern copy is left out: nothing ever used it).
STATUS = "CREATE INDEX {concurrently} IF NOT EXISTS {name} ON audit_outboxmessage (status{opclass})"
POSTGRESQL_BACK = [
    STATUS.format(concurrently="CONCURRENTLY", name=STATUS_INDEX, opclass=""),
    STATUS.format(concurrently="CONCURRENTLY", name=f"{STATUS_INDEX}_like", opclass=" varchar_pattern_ops"),
    "DROP INDEX CONCURRENTLY IF EXISTS audit_outbox_dead_idx",
]
SQLITE_BACK = [
    STATUS.format(concurrently="", name=STATUS_INDEX, opclass=""),
    "DROP INDEX IF EXISTS audit_outbox_dead_idx",
]


def _run(schema_editor, postgresql: list[str], sqlite: list[str]) -> None:
    for statement in postgresql if schema_editor.connection.vendor == "postgresql" else sqlite:
        schema_editor.execute(statement, params=None)


def forward(apps, schema_editor):
    _run(schema_editor, POSTGRESQL, SQLITE)


def backward(apps, schema_editor):
    _run(schema_editor, POSTGRESQL_BACK, SQLITE_BACK)


class Migration(migrations.Migration):
    atomic = False  # DROP/CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [("audit", "0009_chain_head_planned_each_call")]

    state_changes = [
        migrations.AlterField(
            model_name="outboxmessage",
            name="status",
            field=models.CharField(
                choices=[("pending", "Pending"), ("delivered", "Delivered"), ("dead", "Dead")],
                default="pending",
                max_length=16,
                verbose_name="status",
            ),
        ),
        migrations.AddIndex(
            model_name="outboxmessage",
            index=models.Index(condition=models.Q(status="dead"), fields=["id"], name="audit_outbox_dead_idx"),
        ),
    ]
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forward, backward)],
            state_operations=state_changes,
        )
    ]
