from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from audit.runtime_role import RuntimeRoleError, runtime_role_grant


class Command(BaseCommand):
    help = (
        "Run as the tables' owner (MIGRATE_DATABASE_URL): let ROLE, the role the web and the workers connect "
        "as, read and write every table but only SELECT and INSERT on the audit trail. Idempotent; "
        "tables that later migrations create are covered by default privileges."
    )

    def add_arguments(self, parser):
        parser.add_argument("role", help="the runtime role (the user of DATABASE_URL)")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="the database alias to grant on")

    def handle(self, *args, role: str, database: str, **options):
        if connections[database].vendor != "postgresql":
            raise CommandError("Database roles exist on PostgreSQL only.")
        try:
            statements = runtime_role_grant(role, using=database)
        except RuntimeRoleError as exc:
            raise CommandError(str(exc)) from exc
        if options["verbosity"] > 1:
            for statement in statements:
                self.stdout.write(statement)
        self.stdout.write(f"{role}: every table; SELECT and INSERT only on the audit trail.")
