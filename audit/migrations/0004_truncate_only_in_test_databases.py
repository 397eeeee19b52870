"""TRUNCATE of the audit table is refused in every database but a test suite's own.

0002 let any session that set `portal.audit_maintenance = on` truncate the trail, and a setting
is something any session may set. The exemption now also needs a database named the way Django's
test runner names its own (`test_...`), so on a real portal's database nobody can empty the trail.
"""

from django.db import migrations

# The function of 0002, with the test-database condition added (FORWARD) or taken out again (BACKWARD).
FUNCTION = r"""
CREATE OR REPLACE FUNCTION audit_event_refuse_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('portal.audit_maintenance', true) = 'on'{only_tests} THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
FORWARD = FUNCTION.format(only_tests=r" AND current_database() LIKE 'test\_%'")
BACKWARD = FUNCTION.format(only_tests="")


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_action_registry_in_code")]
    operations = [migrations.RunPython(forward, backward)]
