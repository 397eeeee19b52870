"""One round trip to take the audit chain and read its head.

A service writes its events as its last step, holding the chain from here to its commit; every round
trip under the chain is time every other writer waits. The function takes the lock, then reads the
head in a statement of its own (a VOLATILE plpgsql function gives each statement a fresh snapshot
under READ COMMITTED), so the head it returns includes whatever the previous holder committed.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION audit_take_chain(lock_key bigint) RETURNS TABLE (head_seq bigint, head_hash varchar)
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY SELECT seq, hash FROM audit_auditevent ORDER BY seq DESC LIMIT 1;
END;
$$ LANGUAGE plpgsql VOLATILE;
"""
BACKWARD = "DROP FUNCTION IF EXISTS audit_take_chain(bigint);"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_truncate_only_in_test_databases")]
    operations = [migrations.RunPython(forward, backward)]
