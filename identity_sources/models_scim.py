"""SCIM 2.0 provisioning: the sources that push people and groups, and what each pushed.

The inventory's `Identity` stays the record the portal governs; a `ScimUser` is the identity
provider's view of one person (what it last sent, under the ids it knows), linked to that Identity.
Keeping the two apart means a source can round-trip its own attributes (title, userName, groups)
without the portal inventing fields for them, and an offboarded Identity keeps its record as it was
when the person left while the source's record may still change.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower


def _new_scim_id() -> str:
    return str(uuid.uuid4())


class ScimSource(models.Model):
    """An identity provider allowed to push people and groups over SCIM, with its own bearer credential.

    The credential is not an API token: it reaches `/scim/v2/` and nothing else, and the SCIM layer
    only creates, changes and offboards identities, so a source can never grant access. Only a keyed
    hash of the token is kept (as for API tokens); its public prefix finds the row.
    """

    name = models.SlugField("name", max_length=50, unique=True)
    prefix = models.CharField("token prefix", max_length=16, unique=True)
    digest = models.CharField("token keyed hash", max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="created by", null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField("created", auto_now_add=True)
    token_rotated_at = models.DateTimeField("token issued", null=True, blank=True)
    last_used_at = models.DateTimeField("last used", null=True, blank=True)
    revoked_at = models.DateTimeField("revoked", null=True, blank=True)

    class Meta:
        verbose_name = "SCIM source"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ScimUser(models.Model):
    """A person as one source provisioned them: the SCIM attributes it sent and the Identity they became.

    `identity` points at the person's current Identity; a rehire (active again after offboarding)
    links a new one, and the old Identity stays offboarded with its history.
    """

    source = models.ForeignKey(ScimSource, verbose_name="source", on_delete=models.PROTECT, related_name="users")
    identity = models.OneToOneField(
        "governance.Identity", verbose_name="identity", on_delete=models.PROTECT, related_name="scim_user"
    )
    scim_id = models.CharField("SCIM id", max_length=64, unique=True, default=_new_scim_id, editable=False)
    scim_external_id = models.CharField("external id", max_length=254, blank=True, default="")
    user_name = models.CharField("user name", max_length=254)
    given_name = models.CharField("given name", max_length=150, blank=True)
    family_name = models.CharField("family name", max_length=150, blank=True)
    display_name = models.CharField("display name", max_length=200, blank=True)
    email = models.CharField("primary e-mail", max_length=254, blank=True)
    emails = models.JSONField("e-mails as sent", default=list, blank=True)
    title = models.CharField("title", max_length=200, blank=True)
    department = models.CharField("department", max_length=120, blank=True)
    manager = models.ForeignKey(
        "self", verbose_name="manager", null=True, blank=True, on_delete=models.SET_NULL, related_name="reports"
    )
    # None: the source stopped saying (a PATCH removed it); neither offboards nor rehires anyone.
    active = models.BooleanField("active", null=True, default=True)
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    class Meta:
        verbose_name = "SCIM user"
        ordering = ["id"]
        constraints = [
            # userName is the person's unique, case-insensitive key at the source (RFC 7643 §4.1.1).
            models.UniqueConstraint("source", Lower("user_name"), name="%(app_label)s_%(class)s_unique_user_name"),
        ]
        indexes = [models.Index(fields=["source", "scim_external_id"], name="scim_user_external_idx")]

    def __str__(self) -> str:
        return self.user_name


class ScimGroup(models.Model):
    """A group as a source pushed it: a name and members, kept for the source's sake.

    Membership never grants access (access comes only through requests and their approvals); it is
    recorded and audited so the portal shows what the provider says, nothing more.
    """

    source = models.ForeignKey(ScimSource, verbose_name="source", on_delete=models.PROTECT, related_name="groups")
    scim_id = models.CharField("SCIM id", max_length=64, unique=True, default=_new_scim_id, editable=False)
    scim_external_id = models.CharField("external id", max_length=254, blank=True, default="")
    display_name = models.CharField("display name", max_length=200)
    members = models.ManyToManyField(ScimUser, verbose_name="members", blank=True, related_name="groups")
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    class Meta:
        verbose_name = "SCIM group"
        ordering = ["id"]
        constraints = [
            # A display name names one group per source (RFC 7643 §4.2 lets a provider require it).
            models.UniqueConstraint(
                "source", Lower("display_name"), name="%(app_label)s_%(class)s_unique_display_name"
            ),
        ]

    def __str__(self) -> str:
        return self.display_name


__all__ = ["ScimGroup", "ScimSource", "ScimUser"]
