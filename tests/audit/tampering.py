"""Changing the trail behind the portal's back, as an attacker with database access would."""

from django.db import connection, transaction


def tamper(sql: str, params: list) -> None:
    """Run `sql` on the audit table past its append-only triggers."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")  # bypasses the triggers
        cursor.execute(sql, params)
