"""The chain's head is planned at each call, not once per session.

PL/pgSQL caches a statement's plan for the session. A worker whose first `audit_take_chain` ran on an
empty, freshly analysed trail kept that plan, a sequential scan, after the trail grew: measured after
100,000 events, 55 ms for that session's head read against 0.48 ms in a new session, paid under the
chain's lock by every state change of that worker until it reconnected. `RETURN QUERY EXECUTE` plans
the one-row read each time (a few microseconds), so it always walks the `seq` index backwards.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION audit_take_chain(lock_key bigint) RETURNS TABLE (head_seq bigint, head_hash varchar)
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY EXECUTE 'SELECT seq, hash FROM audit_auditevent ORDER BY seq DESC LIMIT 1';
END;
$$ LANGUAGE plpgsql VOLATILE;
"""
BACKWARD = r"""
CREATE OR REPLACE FUNCTION audit_take_chain(lock_key bigint) RETURNS TABLE (head_seq bigint, head_hash varchar)
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY SELECT seq, hash FROM audit_auditevent ORDER BY seq DESC LIMIT 1;
END;
$$ LANGUAGE plpgsql VOLATILE;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0008_channels_sso_and_scim")]
    operations = [migrations.RunPython(forward, backward)]
