"""The audit table keeps six indexes, each serving a query of the portal (named in `AuditEvent.Meta`).

Kept: the primary key; `seq` (unique: the chain's order, every page and timeline, the writer's head,
verify_audit); (target_type, target_id) (timelines and history panels); `action` and `correlation_id`
(the audit page's filters); `occurred_at` (since/until, a break-glass window; renamed here). Dropped:
the btrees on `actor_user_id` and `actor_identity_id`. The audit page's actor filter ORs them with a
text match on `actor_label`, which no btree serves, so no plan used them; nothing else reads events
by actor. The hash has had no index since 0006: verification walks `seq` and compares in Python.

Measured 2026-12-03 on the 2-core machine shared with other sessions (load 7-13, so times move by a
third between rounds; bench/README.md "The audit table's indexes" has every number). Copies of the
table holding the same 1M events, 100,000 more inserted into each:

    indexes                                   pages touched (EXPLAIN BUFFERS)   one INSERT of 100k
    pk + seq alone (the floor)                   0.72M   1.0x                    4.5 s
    0006's eight                                 2.54M   3.5x                   23.4 s
    these six                                    1.94M   2.7x                   17.2 s
    pk + seq + target / + correlation            1.02M / 1.02M                  10.9 s / 7.1 s
    pk + seq + action + occurred_at              1.23M                           5.8 s

Inserted 1,000 a statement (as the writer does), three rounds interleaved: eight 16.9 s, six 10.7 s,
floor 2.6 s in one run; in a later one, on copies bloated by earlier rounds, the two within noise.
The expiry sweep of 20,000 grants on a trail of 1.0-1.1M events, against its plain UPDATE: 8.8x,
8.5x and 7.8x with the eight; 6.2x, 5.9x, 5.9x and once 9.5x with the six.

What remains is the two keys with no order, target and correlation id: each insert lands on a random
leaf. They stay because pages need them (a timeline or a correlation id without them reads the whole
trail, ~0.3 s at 1M events); `action` and `occurred_at` cost little (few values; a growing time).

Partitioning by time (declarative, by `occurred_at`) was measured and is not done. Every unique key
must then include the partition key, so `seq` would stop being unique across the trail (the chain's
guarantee) and Django's one-column primary key would have to go. Inserting 100,000 events into the
newest of eight partitions (same six indexes) took 11.1 s against 11.4 s for the one table, within
noise, while the trail's indexes fit in memory (1M events: ~130 MB); and a page newest first became
a merge over every partition (p50 13.8 ms against 10.5 ms). Worth it once the indexes outgrow memory
or old events must be dropped by the partition; not at this size.

Done like 0006, without holding the table: no transaction, `DROP INDEX CONCURRENTLY`, a rename. On
SQLite the indexes are dropped and the occurred_at one made again under its new name.
"""

from django.db import migrations, models

# Django's names for the db_index indexes of 0001 (derived from the table and columns: the same everywhere).
ACTOR_USER_INDEX = "audit_auditevent_actor_user_id_e6b6b356"
ACTOR_IDENTITY_INDEX = "audit_auditevent_actor_identity_id_33d8099b"
OCCURRED_INDEX = "audit_auditevent_occurred_at_1f007848"

POSTGRESQL = [
    f"DROP INDEX CONCURRENTLY IF EXISTS {ACTOR_USER_INDEX}",
    f"DROP INDEX CONCURRENTLY IF EXISTS {ACTOR_IDENTITY_INDEX}",
    f"ALTER INDEX IF EXISTS {OCCURRED_INDEX} RENAME TO audit_event_occurred_idx",
]
SQLITE = [
    f"DROP INDEX IF EXISTS {ACTOR_USER_INDEX}",
    f"DROP INDEX IF EXISTS {ACTOR_IDENTITY_INDEX}",
    f"DROP INDEX IF EXISTS {OCCURRED_INDEX}",
    "CREATE INDEX IF NOT EXISTS audit_event_occurred_idx ON audit_auditevent (occurred_at)",
]


def forward(apps, schema_editor):
    statements = POSTGRESQL if schema_editor.connection.vendor == "postgresql" else SQLITE
    for statement in statements:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [("audit", "0006_audit_indexes_without_pattern_copies")]

    state_changes = [
        migrations.AlterField(
            model_name="auditevent",
            name="actor_user_id",
            field=models.BigIntegerField(blank=True, null=True, verbose_name="actor user id"),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="actor_identity_id",
            field=models.BigIntegerField(blank=True, null=True, verbose_name="actor identity id"),
        ),
        migrations.AlterField(
            model_name="auditevent", name="occurred_at", field=models.DateTimeField(verbose_name="time")
        ),
        migrations.AddIndex(
            model_name="auditevent", index=models.Index(fields=["occurred_at"], name="audit_event_occurred_idx")
        ),
    ]
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forward, migrations.RunPython.noop)],
            state_operations=state_changes,
        )
    ]
