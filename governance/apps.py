from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    verbose_name = "Inventory and governance"
    name = "governance"
