"""`migrate` as the tables' owner when MIGRATE_DATABASE_URL is set (README, "Two database roles").

The web and the workers connect with DATABASE_URL as a role that owns nothing (audit/runtime_role.py);
only migrations need the owner. With MIGRATE_DATABASE_URL set, this connects the default database as
that role for the run, then grants the DATABASE_URL role its runtime rights again (idempotent), so a
migration that adds a table never leaves the runtime role without it. Without it, Django's migrate.
"""

import dj_database_url
from django.conf import settings
from django.core.management.commands import migrate
from django.db import DEFAULT_DB_ALIAS, connections

from audit.runtime_role import runtime_role_grant

CONNECTION_KEYS = ("NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")


class Command(migrate.Command):
    help = (
        migrate.Command.help + " With MIGRATE_DATABASE_URL set, runs as that (owner) role and then grants the "
        "DATABASE_URL role its runtime rights (grant_runtime_role)."
    )

    def handle(self, *args, **options):
        url = getattr(settings, "MIGRATE_DATABASE_URL", "")
        if not url or options["database"] != DEFAULT_DB_ALIAS:
            return super().handle(*args, **options)
        connection = connections[DEFAULT_DB_ALIAS]
        runtime = {key: connection.settings_dict.get(key) for key in CONNECTION_KEYS}
        owner = dj_database_url.parse(url)
        connection.close()
        connection.settings_dict.update({key: owner.get(key) or runtime[key] for key in CONNECTION_KEYS})
        try:
            super().handle(*args, **options)
            runtime_user = runtime["USER"]
            if connection.vendor == "postgresql" and runtime_user and runtime_user != owner.get("USER"):
                runtime_role_grant(runtime_user)
                if options["verbosity"]:
                    self.stdout.write(f"Granted {runtime_user} its runtime rights (grant_runtime_role).")
        finally:
            connection.close()
            connection.settings_dict.update(runtime)
