from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from audit.kernel.text import FREE_TEXT_MAX_LENGTH, clean_names, free_text_field_constraints

from ..choices import CredentialType, IdentityKind, IdentityStatus, SecretLocation
from ..querysets import IdentityQuerySet

# What people type to name an identity: kept free of bidi controls (audit.kernel.text.clean_name).
NAME_FIELDS = ("name", "team")


class Identity(models.Model):
    """Anything that can hold access: a person, or a service account, API key, workload or AI agent.

    Non-human identities always have a human owner who answers for them; when that owner leaves,
    ownership moves to the backup owner or the identity is flagged orphaned.
    """

    external_id = models.CharField("external id", max_length=200, unique=True, null=True, blank=True)
    name = models.CharField("name", max_length=200)  # indexed with the id (Meta)
    kind = models.CharField("kind", max_length=32, choices=IdentityKind.choices)  # indexed with the name (Meta)
    status = models.CharField(
        "status", max_length=16, choices=IdentityStatus.choices, default=IdentityStatus.ACTIVE
    )  # indexed (Meta)
    email = models.EmailField("email", blank=True)
    team = models.CharField("team", max_length=120, blank=True)  # indexed (Meta)
    description = models.TextField("description", blank=True, max_length=FREE_TEXT_MAX_LENGTH)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name="login",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="identity",
    )
    owner = models.ForeignKey(
        "self",
        verbose_name="owner",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="owned_identities",
        db_index=False,  # (owner, status) serves it (Meta)
    )
    backup_owner = models.ForeignKey(
        "self",
        verbose_name="backup owner",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="backup_owned_identities",
    )
    manager = models.ForeignKey(
        "self", verbose_name="manager", null=True, blank=True, on_delete=models.PROTECT, related_name="reports"
    )
    last_used_at = models.DateTimeField("last used", null=True, blank=True)
    credential_type = models.CharField(
        "credential type", max_length=32, choices=CredentialType.choices, blank=True, default=CredentialType.NONE
    )
    secret_location = models.CharField(
        "secret location", max_length=32, choices=SecretLocation.choices, blank=True, default=SecretLocation.NONE
    )
    last_rotated_at = models.DateTimeField("last rotated", null=True, blank=True)
    rotation_period_days = models.PositiveIntegerField("rotation period (days)", null=True, blank=True)
    credentials_suspended_at = models.DateTimeField("credentials suspended", null=True, blank=True)
    may_self_request = models.BooleanField("agent may request access itself", default=False)
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    # The history keeps its primary key, `id` (the identity page's change history) and `history_user_id`
    # (deleting a login): no copies of the identity's indexes (see governance.models.Grant).
    history = HistoricalRecords(
        no_db_index=["external_id", "name", "kind", "status", "team", "user", "owner", "backup_owner", "manager"]
    )
    objects = IdentityQuerySet.as_manager()

    class Meta:
        verbose_name = "identity"
        verbose_name_plural = "identities"
        ordering = ["name", "id"]
        constraints = [
            # Someone must answer for every machine identity.
            models.CheckConstraint(
                condition=Q(kind=IdentityKind.HUMAN) | Q(owner__isnull=False),
                name="%(app_label)s_%(class)s_non_human_has_owner",
            ),
            # Only people sign in to the portal.
            models.CheckConstraint(
                condition=Q(kind=IdentityKind.HUMAN) | Q(user__isnull=True),
                name="%(app_label)s_%(class)s_only_humans_have_logins",
            ),
            models.CheckConstraint(condition=~Q(owner=models.F("id")), name="%(app_label)s_%(class)s_not_own_owner"),
            # The backup owner is there for when the owner leaves: the owner again would be nobody.
            models.CheckConstraint(
                condition=~Q(backup_owner=models.F("owner")), name="%(app_label)s_%(class)s_backup_not_owner"
            ),
            models.CheckConstraint(
                condition=~Q(backup_owner=models.F("id")), name="%(app_label)s_%(class)s_not_own_backup_owner"
            ),
            *free_text_field_constraints("description"),
        ]
        # Each index serves a query of the portal; none is a `varchar_pattern_ops` twin (a LIKE 'x%' on the raw
        # column: the searches compare UPPER(...) through the trigram indexes of migration 0016).
        indexes = [
            # The identities a person owns (my identities, offboarding), by status too; the owner alone as well
            # (the foreign key has no index of its own).
            models.Index(fields=["owner", "status"], name="gov_identity_owner_status_idx"),
            # The lists' default order (name, then id: no sort of ties), and look-ups by name.
            models.Index(fields=["name", "id"], name="gov_identity_name_idx"),
            # The few suspended or offboarded among many active.
            models.Index(fields=["status"], name="gov_identity_status_idx"),
            # The teams a campaign may be scoped to (distinct, in order), and a team's people.
            models.Index(fields=["team"], name="gov_identity_team_idx"),
            # A kind in the lists' order (by name): page 1 of "workload" walked the name index past 87,000
            # others (35 ms at 100,000 identities). It serves any filter on kind (no index on kind alone).
            models.Index(fields=["kind", "name", "id"], name="gov_identity_kind_name_idx"),
            # The lists sorted by last use (which machines sit unused?), with or without a kind: page 1 sorted
            # every identity of the kind (6 ms for 20,000 service accounts; 0.3 ms off this index).
            models.Index(fields=["last_used_at", "id"], name="gov_identity_last_used_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        clean_names(self, NAME_FIELDS)

    @property
    def is_human(self) -> bool:
        return self.kind == IdentityKind.HUMAN

    @property
    def is_active(self) -> bool:
        return self.status == IdentityStatus.ACTIVE
