"""Deploy checks (`manage.py check --deploy`) of the audit app."""

from django.core.checks import Info, Tags, Warning, register
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from .runtime_role import AUDIT_TABLE

_ROLE_RIGHTS = """
SELECT current_user,
       r.rolsuper,
       c.oid IS NOT NULL,
       c.oid IS NOT NULL AND pg_has_role(current_user, c.relowner, 'MEMBER'),
       c.oid IS NOT NULL AND (has_table_privilege(c.oid, 'UPDATE') OR has_table_privilege(c.oid, 'DELETE')
                              OR has_table_privilege(c.oid, 'TRUNCATE'))
  FROM pg_roles r LEFT JOIN pg_class c ON c.oid = to_regclass(%s)
 WHERE r.rolname = current_user
"""
_HINT = 'Connect as a runtime role: see the README, "Two database roles" (manage.py grant_runtime_role).'


@register(Tags.security, deploy=True)
def runtime_role_cannot_rewrite_the_audit_trail(app_configs=None, **kwargs) -> list:
    """The role the portal runs as must not be able to switch the append-only triggers off or
    change events: not a superuser, not the audit table's owner (or a member of it), no UPDATE,
    DELETE or TRUNCATE on it. A database that does not answer is reported, never raised."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        return []
    try:
        with connection.cursor() as cursor:
            cursor.execute(_ROLE_RIGHTS, [AUDIT_TABLE])
            row = cursor.fetchone()
    except DatabaseError as exc:
        return [
            Info(
                f"Could not check the database role's rights on the audit trail: {exc}".strip(),
                hint="Run check --deploy again where the database answers.",
                id="audit.I001",
            )
        ]
    if row is None:
        return []
    user, superuser, table_exists, owns, may_rewrite = row
    if superuser:
        return [
            Warning(
                f"The portal connects to PostgreSQL as {user}, a superuser: it can switch off the audit "
                "trail's append-only triggers and rewrite events.",
                hint=_HINT,
                id="audit.W001",
            )
        ]
    if not table_exists:
        return []
    if owns:
        return [
            Warning(
                f"The portal connects to PostgreSQL as {user}, which owns {AUDIT_TABLE}: it can disable the "
                "append-only triggers and rewrite events.",
                hint=_HINT,
                id="audit.W002",
            )
        ]
    if may_rewrite:
        return [
            Warning(
                f"The portal connects to PostgreSQL as {user}, which may UPDATE, DELETE or TRUNCATE {AUDIT_TABLE}; "
                "it needs only SELECT and INSERT there.",
                hint=_HINT,
                id="audit.W003",
            )
        ]
    return []
