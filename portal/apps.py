from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _bootstrap_roles(sender, using="default", **kwargs) -> None:
    # After every migrate (and every test-database flush), roles exist with their permissions.
    from governance.roles import roles_bootstrap

    roles_bootstrap(using=using)


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        # Audit logins, logouts, roles, staff/superuser changes, passwords, deleted logins and groups.
        from . import signals, signals_logins  # noqa: F401

        post_migrate.connect(_bootstrap_roles, sender=self)
