"""What one importer may import: admins everything, an owner only rows for what they answer for.

Built once per file (a few queries), then every row is checked in memory, so an owner's file of
10,000 rows costs no query per row. A row outside the importer's scope is a bad row like any other:
it is named with its line, and nothing of the file is written.

The scope is read before the write locks anything; the write asks `answers_for` again, under its
locks, for the rows the file touches, so an owner who lost a row meanwhile writes nothing.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Q

from .. import policies
from ..models import Entitlement, Identity, System
from .specs import portal_key

# What an importer answers for, by kind: the same filter builds the scope and checks it again.
_ANSWERS_FOR: dict[type[models.Model], Callable[[Any], Q]] = {
    Identity: lambda me: Q(owner=me) | Q(backup_owner=me),  # machines they own or back up
    System: lambda me: Q(owner=me),
    Entitlement: lambda me: Q(owner=me) | Q(system__owner=me),
}
# How a row refused for a lost scope names it ("you no longer own entitlement 'e-1' or its system").
LOST = {
    Identity: "you no longer own or back up {what}",
    System: "you no longer own {what}",
    Entitlement: "you no longer own {what} or its system",
}


@dataclass(frozen=True)
class ImportScope:
    """A non-admin importer's reach: who they are and what they answer for (ids)."""

    me: int
    me_key: str
    identities: frozenset[int]  # machines they own or back up
    systems: frozenset[int]  # systems they own: they add entitlements to them
    entitlements: frozenset[int]  # entitlements they own, or whose system they own

    def identity_error(self, obj: Identity, is_new: bool) -> str | None:
        if is_new and obj.kind == "human":
            return "only an admin adds people to the inventory"
        return None if is_new else self.stored_identity_error(obj.pk)

    def stored_identity_error(self, pk: int) -> str | None:
        if pk not in self.identities:
            return "you do not own this identity: only its owner, backup owner or an admin imports it"
        return None

    def owner_error(self, owner_id, is_new: bool) -> str | None:
        """A new machine is registered to oneself, as in the portal (an admin registers it for others)."""
        if is_new and owner_id != self.me:
            return f"owner_external_id must be you ({self.me_key}): you import only what you will own"
        return None

    def system_error(self, obj: System, is_new: bool) -> str | None:
        if is_new:
            return "only an admin adds systems"
        if obj.pk not in self.systems:
            return "you do not own this system: only its owner or an admin imports it"
        return None

    def entitlement_error(self, obj: Entitlement, is_new: bool, system_id: int) -> str | None:
        if is_new and system_id not in self.systems:
            return "you do not own this system: only its owner or an admin adds entitlements to it"
        if not is_new and obj.pk not in self.entitlements:
            return "you do not own this entitlement or its system: only they or an admin import it"
        return None

    def grant_error(self, entitlement_id: int) -> str | None:
        if entitlement_id not in self.entitlements:
            return "you do not own this entitlement or its system: only they or an admin import its grants"
        return None

    def answers_for(self, model: type[models.Model], pks: Iterable[int] | models.Expression) -> set[int]:
        """Which of `pks` the importer answers for now: one query, however many rows (`pks` may be
        an array expression). The write phase asks it under its locks, so the answer holds to commit."""
        if not self.me:
            return set()
        rows = model.objects.filter(_ANSWERS_FOR[model](self.me), pk__in=pks).order_by()
        return set(rows.values_list("pk", flat=True))


def import_scope(user) -> ImportScope | None:
    """None for an admin (everything); otherwise what `user` answers for, as the portal's pages decide
    (`policies.can_manage_identity`, `can_edit_system`, `can_edit_entitlement` by ownership)."""
    if user is None or policies.is_admin(user):
        return None  # the system itself (a command, a test) or an admin: everything
    me = policies.identity_of(user)
    if me is None:
        return ImportScope(me=0, me_key="", identities=frozenset(), systems=frozenset(), entitlements=frozenset())
    identities = Identity.objects.filter(_ANSWERS_FOR[Identity](me)).values_list("pk", flat=True)
    systems = frozenset(System.objects.filter(_ANSWERS_FOR[System](me)).values_list("pk", flat=True))
    entitlements = Entitlement.objects.filter(_ANSWERS_FOR[Entitlement](me)).values_list("pk", flat=True)
    return ImportScope(
        me=me.pk,
        me_key=portal_key(me),
        identities=frozenset(identities),
        systems=systems,
        entitlements=frozenset(entitlements),
    )
