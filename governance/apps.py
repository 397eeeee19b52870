from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Inventory and governance"

    def ready(self) -> None:
        from audit.filters import ACTOR_NAME_SEARCHES

        from . import checks, handlers  # noqa: F401  registers start-up checks and the connector outbox handlers
        from .selectors import audit_actors_named
        from .services import reconciliation  # noqa: F401  registers the reconciliation outbox handlers

        if audit_actors_named not in ACTOR_NAME_SEARCHES:
            ACTOR_NAME_SEARCHES.append(audit_actors_named)
