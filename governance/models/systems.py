from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from audit.kernel.text import FREE_TEXT_MAX_LENGTH, clean_names, free_text_field_constraints

from ..choices import Connector, Criticality, LifecycleStatus


class System(models.Model):
    """A target application or resource that grants are provisioned into, through its connector."""

    external_id = models.CharField("external id", max_length=200, unique=True, null=True, blank=True)
    name = models.CharField("name", max_length=200)
    description = models.TextField("description", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    owner = models.ForeignKey(
        "governance.Identity", verbose_name="owner", on_delete=models.PROTECT, related_name="owned_systems"
    )
    criticality = models.CharField(
        "criticality", max_length=16, choices=Criticality.choices, default=Criticality.MEDIUM
    )
    connector = models.CharField("connector", max_length=32, choices=Connector.choices, default=Connector.MANUAL)
    connector_settings = models.JSONField("connector settings", default=dict, blank=True)
    # The connector's secret settings as one Fernet token (connectors.secrets): never shown back.
    connector_secrets = models.TextField("connector secrets (encrypted)", blank=True, db_default="", editable=False)
    last_reconciled_at = models.DateTimeField("last reconciled", null=True, blank=True)
    status = models.CharField(
        "status", max_length=16, choices=LifecycleStatus.choices, default=LifecycleStatus.ACTIVE, db_index=True
    )
    retired_at = models.DateTimeField("retired", null=True, blank=True)
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    # The history keeps its primary key, `id` (`system.history`) and `history_user_id` (deleting a login):
    # no copies of the system's indexes (see governance.models.Grant).
    history = HistoricalRecords(
        excluded_fields=["connector_settings", "connector_secrets", "last_reconciled_at"],
        no_db_index=["external_id", "status", "owner"],
    )

    class Meta:
        verbose_name = "system"
        ordering = ["name", "id"]
        constraints = [
            # A retired system keeps its name; a new one with that name is a new system, reviving nothing.
            models.UniqueConstraint(
                fields=["name"], condition=Q(status="active"), name="%(app_label)s_%(class)s_unique_live_name"
            ),
            *free_text_field_constraints("description"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        clean_names(self, ("name",))
