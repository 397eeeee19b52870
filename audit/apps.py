from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        # Registers the deploy check of the database role, and the outbox's email handler.
        from . import checks, handlers  # noqa: F401
