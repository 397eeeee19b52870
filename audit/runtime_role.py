"""Two PostgreSQL roles: an owner that migrates, and the runtime role the web and the workers use.

The append-only triggers on the audit table stop a role that may only write rows; they do not stop
its owner, who may disable them (`ALTER TABLE ... DISABLE TRIGGER`), or a superuser. So the portal
connects as a role that owns nothing: it reads and writes the application's tables, but on the
audit trail it may only SELECT and INSERT. `verify_audit` catches a rewritten trail after the fact;
this keeps the web and the workers, and whoever takes them over, from rewriting it at all.
"""

import re

from django.db import DEFAULT_DB_ALIAS, connections, transaction

AUDIT_TABLE = "audit_auditevent"
# Read by the runtime (`migrate --check`, runserver's unapplied-migrations notice), written only by migrate.
READ_ONLY_TABLES = ("django_migrations",)
_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")


class RuntimeRoleError(Exception):
    """The role cannot be made the runtime role (unknown, a superuser, or the one granting)."""


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def runtime_role_statements(role: str, schema: str) -> list[str]:
    """The grants, in order: everything on the application's tables, then the audit table narrowed.

    Every statement is idempotent, and the audit table is narrowed after the broad grant (REVOKE
    ALL first), so running it again, or over grants made by hand, always leaves the same rights.
    Default privileges cover tables that later migrations create (as the role running this).
    """
    who, where = quote_identifier(role), quote_identifier(schema)
    audit = f"{where}.{quote_identifier(AUDIT_TABLE)}"
    statements = [
        f"GRANT USAGE ON SCHEMA {where} TO {who}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {where} TO {who}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {where} TO {who}",
        # audit_take_chain (audit/migrations/0005) takes an advisory lock and reads the head: EXECUTE
        # here, SELECT on the audit table above; it runs with the caller's rights, no SECURITY DEFINER.
        f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {where} TO {who}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {where} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {who}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {where} GRANT USAGE, SELECT ON SEQUENCES TO {who}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {where} GRANT EXECUTE ON FUNCTIONS TO {who}",
        # The audit trail: read and append, nothing else (no UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES).
        f"REVOKE ALL ON {audit} FROM {who}",
        f"GRANT SELECT, INSERT ON {audit} TO {who}",
    ]
    for table in READ_ONLY_TABLES:
        statements += [
            f"REVOKE ALL ON {where}.{quote_identifier(table)} FROM {who}",
            f"GRANT SELECT ON {where}.{quote_identifier(table)} TO {who}",
        ]
    return statements


def runtime_role_grant(role: str, *, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Give `role` what the portal needs at run time, as the connected role (the tables' owner).

    Returns the statements it ran. Refuses a role that does not exist, a superuser (no grant can
    narrow one) and the connected role or a member of it (an owner keeps every right on its tables).
    """
    if not _ROLE_NAME.match(role):
        raise RuntimeRoleError(f"{role!r} is not a plain role name.")
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.rolsuper, pg_has_role(r.oid, current_user, 'MEMBER'), current_schema()"
            " FROM pg_roles r WHERE r.rolname = %s",
            [role],
        )
        row = cursor.fetchone()
        if row is None:
            raise RuntimeRoleError(f"There is no role {role!r}: CREATE ROLE {role} LOGIN PASSWORD '...' first.")
        superuser, owns_what_we_own, schema = row
        if superuser:
            raise RuntimeRoleError(f"{role!r} is a superuser: the runtime role must be an ordinary role.")
        if owns_what_we_own:
            raise RuntimeRoleError(
                f"{role!r} is, or is a member of, the role running this (the owner): "
                "run it as the owner (MIGRATE_DATABASE_URL) and name another role."
            )
        statements = runtime_role_statements(role, schema)
        for statement in statements:
            cursor.execute(statement)
    return statements
