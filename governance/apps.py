from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Inventory and governance"

    def ready(self) -> None:
        from . import handlers  # noqa: F401  registers the connector outbox handlers
