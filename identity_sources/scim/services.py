"""What a SCIM source may do to the inventory: joiners, movers, leavers, and its groups.

Each function is one transaction (`state_change`) that calls the inventory's own identity services,
so a SCIM joiner, move or leaver is the same state change an admin makes on the page, audited with
the source named as actor (`SourceActor`) and the channel `scim` (set by the SCIM authentication).
A source never reaches a grant or request service: it cannot give anyone access. Leaving goes
through `identity_offboard` (grants revoked, owned machines handed to their backup owner, pending
requests closed by jit's offboarding hook); a move (team, manager or title) is audited as
`identity.moved` and opens an event-triggered certification review of the access the person holds.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from django.db.models.functions import Lower

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import ActorLike, acting_user, audit_event_record, state_change
from governance import policies
from governance.choices import IdentityKind, IdentityStatus
from governance.errors import InvalidTransition, ValidationFailed
from governance.models import Identity
from governance.services.certification_schedules import micro_review_identity_moved
from governance.services.common import check
from governance.services.credentials import token_digest
from governance.services.identities import identity_create, identity_offboard, identity_update

from ..models_scim import ScimGroup, ScimSource, ScimUser
from .credentials import new_secret, source_actor

MOVE_FIELDS = ("team", "manager", "title")


class Conflict(InvalidTransition):
    """The pushed value clashes with another resource of the source (SCIM scimType `uniqueness`)."""


@dataclass
class ScimUserData:
    """A person as a source describes them, parsed from the SCIM document (core + enterprise)."""

    user_name: str
    external_id: str = ""
    given_name: str = ""
    family_name: str = ""
    display_name: str = ""
    emails: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""
    department: str = ""
    manager_scim_id: str = ""
    active: bool | None = True  # None: not said (see ScimUser.active)

    @classmethod
    def of(cls, user: ScimUser) -> "ScimUserData":
        return cls(
            user_name=user.user_name,
            external_id=user.scim_external_id,
            given_name=user.given_name,
            family_name=user.family_name,
            display_name=user.display_name,
            emails=list(user.emails or []),
            title=user.title,
            department=user.department,
            manager_scim_id=user.manager.scim_id if user.manager_id else "",
            active=user.active,
        )

    @property
    def email(self) -> str:
        """The primary address (the first one when none is marked primary)."""
        chosen = next((e for e in self.emails if e.get("primary")), self.emails[0] if self.emails else {})
        return str(chosen.get("value") or "")

    @property
    def person_name(self) -> str:
        full = f"{self.given_name} {self.family_name}".strip()
        return (self.display_name or full or self.user_name).strip()[:200]


#
# Sources and their credential
#
def _require_admin(actor: ActorLike) -> None:
    """The service's own guard (the page checks too): a source's token provisions people, so only an
    admin or the system (`manage.py scim_source` acts as the system) may issue, replace or revoke one."""
    check(actor, lambda user, _obj: policies.is_admin(user), None, "Only admins manage identity sources.")


@state_change
def scim_source_create(*, actor: ActorLike, name: str) -> tuple[ScimSource, str]:
    """Register a source and issue its token (returned once, never stored)."""
    _require_admin(actor)
    name = (name or "").strip().lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,49}", name):
        raise ValidationFailed("Name the source with letters, digits, - or _ (e.g. okta), at most 50.")
    if ScimSource.objects.filter(name=name).exists():
        raise ValidationFailed(f"There is already a SCIM source {name!r}.")
    prefix, secret = new_secret()
    user = acting_user(actor)
    source = ScimSource.objects.create(
        name=name,
        prefix=prefix,
        digest=token_digest(secret),
        token_rotated_at=clock.database_now(),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    audit_event_record(actor=actor, action=AuditAction.SCIM_SOURCE_CREATED, target=source, data={"prefix": prefix})
    return source, secret


@state_change
def scim_source_rotate(*, actor: ActorLike, source_id: int) -> tuple[ScimSource, str]:
    """Replace a source's token at once: the old one stops working in this transaction."""
    _require_admin(actor)
    source = ScimSource.objects.select_for_update().get(pk=source_id)
    if source.revoked_at is not None:
        raise InvalidTransition(f"SCIM source {source} is revoked.")
    old = source.prefix
    source.prefix, secret = new_secret()
    source.digest, source.token_rotated_at = token_digest(secret), clock.database_now()
    source.save(update_fields=["prefix", "digest", "token_rotated_at"])
    audit_event_record(
        actor=actor,
        action=AuditAction.SCIM_TOKEN_ROTATED,
        target=source,
        data={"replaces": old, "prefix": source.prefix},
    )
    return source, secret


@state_change
def scim_source_revoke(*, actor: ActorLike, source_id: int) -> ScimSource:
    """Stop a source: its token no longer works; the people it provisioned stay as they are."""
    _require_admin(actor)
    source = ScimSource.objects.select_for_update().get(pk=source_id)
    if source.revoked_at is None:
        source.revoked_at = clock.database_now()
        source.save(update_fields=["revoked_at"])
        audit_event_record(actor=actor, action=AuditAction.SCIM_SOURCE_REVOKED, target=source, data={})
    return source


#
# Users: joiners, movers, leavers
#
def _clean(source: ScimSource, data: ScimUserData, *, current: ScimUser | None = None) -> ScimUser | None:
    """Check what the source sent; return the manager it names (a user of the same source), if any."""
    data.user_name = (data.user_name or "").strip()
    if not data.user_name:
        raise ValidationFailed("userName is required.", field_errors={"userName": ["Required."]})
    taken = ScimUser.objects.filter(source=source).annotate(key=Lower("user_name")).filter(key=data.user_name.lower())
    if current is not None:
        taken = taken.exclude(pk=current.pk)
    if taken.exists():
        raise Conflict(f"userName {data.user_name!r} is already provisioned by this source.")
    if not data.manager_scim_id:
        return None
    manager = ScimUser.objects.select_related("identity").filter(source=source, scim_id=data.manager_scim_id).first()
    if manager is None:
        raise ValidationFailed(f"The manager {data.manager_scim_id!r} is not a user of this source.")
    if current is not None and manager.pk == current.pk:
        raise ValidationFailed("A person cannot be their own manager.")
    return manager


def _manager_identity(manager: ScimUser | None) -> Identity | None:
    """The manager's Identity while they are active; a manager who left answers for nobody."""
    if manager is None or manager.identity.status != IdentityStatus.ACTIVE:
        return None
    return manager.identity


def _store(user: ScimUser, data: ScimUserData, manager: ScimUser | None) -> None:
    user.user_name, user.scim_external_id = data.user_name[:254], (data.external_id or "")[:254]
    user.given_name, user.family_name = data.given_name[:150], data.family_name[:150]
    user.display_name, user.email, user.emails = data.display_name[:200], data.email[:254], data.emails
    user.title, user.department = data.title[:200], data.department[:120]
    user.manager, user.active = manager, data.active


def _identity_facts(data: ScimUserData, manager: ScimUser | None) -> dict[str, Any]:
    return {
        "name": data.person_name,
        "email": data.email[:254],
        "team": data.department[:120],
        "manager": _manager_identity(manager),
    }


def _join(source: ScimSource, data: ScimUserData, manager: ScimUser | None) -> Identity:
    facts = _identity_facts(data, manager)
    return identity_create(actor=source_actor(source), kind=IdentityKind.HUMAN, **facts)


@state_change
def scim_user_create(*, source: ScimSource, data: ScimUserData) -> ScimUser:
    """A joiner: a new human Identity in the inventory, holding nothing (access comes only by request)."""
    manager = _clean(source, data)
    identity = _join(source, data, manager)
    user = ScimUser(source=source, identity=identity)
    _store(user, data, manager)
    user.save()
    if data.active is False:  # pushed as already gone: joined and left, both on the record
        identity_offboard(identity_id=identity.pk, actor=source_actor(source), reason=f"SCIM source {source}: inactive")
    return user


def _lock_user(source: ScimSource, scim_user_id: int) -> ScimUser:
    user = ScimUser.objects.select_for_update(of=("self",)).select_related("identity", "manager").get(pk=scim_user_id)
    if user.source_id != source.pk:  # the views scope by source already; this is the service's own guard
        raise ValidationFailed("Not a user of this source.")
    return user


@state_change
def scim_user_change(*, source: ScimSource, scim_user_id: int, data: ScimUserData) -> ScimUser:
    """Apply the source's new picture of a person (PUT, or PATCH applied to the current one).

    A change of team, manager or title is a move: the Identity is updated through `identity_update`
    (which reviews a team or manager change), `identity.moved` is recorded, and a title change opens
    its own event review. `active` going false offboards the person; going true again after the
    source offboarded them is a rehire: a new Identity that holds nothing, the old one stays as it left.
    Once offboarded, the Identity is not changed any more; the source's record still is.
    """
    user = _lock_user(source, scim_user_id)
    manager = _clean(source, data, current=user)
    actor = source_actor(source)
    before = ScimUserData.of(user)
    identity = user.identity
    if identity.status == IdentityStatus.OFFBOARDED and data.active is True and before.active is False:
        identity = _join(source, data, manager)  # rehire
        user.identity = identity
    elif identity.status != IdentityStatus.OFFBOARDED:
        facts = _identity_facts(data, manager)
        if before.manager_scim_id == data.manager_scim_id:
            facts.pop("manager")  # unchanged at the source: leave what the portal holds (e.g. a manager who left)
        identity_update(identity_id=identity.pk, actor=actor, changes=facts)
        moved_before = {"team": before.department, "manager": before.manager_scim_id, "title": before.title}
        moved_after = {"team": data.department, "manager": data.manager_scim_id, "title": data.title}
        changed = [name for name in MOVE_FIELDS if moved_before[name] != moved_after[name]]
        if changed:
            identity.refresh_from_db()
            move = {
                "before": {name: moved_before[name] for name in changed},
                "after": {name: moved_after[name] for name in changed},
            }
            if "manager" in changed:  # the trail names people by their Identity, not the source's ids
                move["before"]["manager"] = user.manager.identity_id if user.manager_id else None
                move["after"]["manager"] = manager.identity_id if manager else None
            audit_event_record(actor=actor, action=AuditAction.IDENTITY_MOVED, target=identity, data=move)
            if changed == ["title"]:  # a team or manager change opened its review in identity_update
                micro_review_identity_moved(identity, move)
        if data.active is False:
            identity_offboard(identity_id=identity.pk, actor=actor, reason=f"SCIM source {source}: active is false")
    _store(user, data, manager)
    user.save()
    return user


@state_change
def scim_user_delete(*, source: ScimSource, scim_user_id: int) -> None:
    """A leaver the source deletes: offboarded (if not already), then the source's record is dropped.

    The Identity stays in the inventory, offboarded, with its history; only the link goes.
    """
    user = _lock_user(source, scim_user_id)
    if user.identity.status != IdentityStatus.OFFBOARDED:
        identity_offboard(
            identity_id=user.identity_id, actor=source_actor(source), reason=f"SCIM source {source}: deleted"
        )
    ScimUser.objects.filter(manager=user).update(manager=None)
    user.groups.clear()
    user.delete()


#
# Groups: recorded for the source, never a grant
#
@dataclass
class ScimGroupData:
    display_name: str
    external_id: str = ""
    member_scim_ids: list[str] | None = None


def _members(source: ScimSource, scim_ids: list[str]) -> list[ScimUser]:
    wanted = sorted(set(scim_ids))
    found = list(ScimUser.objects.filter(source=source, scim_id__in=wanted).order_by("pk"))
    if len(found) != len(wanted):
        missing = sorted(set(wanted) - {u.scim_id for u in found})
        raise ValidationFailed(f"Not users of this source: {', '.join(missing)}.")
    return found


def _clean_group(source: ScimSource, data: ScimGroupData, current: ScimGroup | None = None) -> None:
    data.display_name = (data.display_name or "").strip()
    if not data.display_name:
        raise ValidationFailed("displayName is required.", field_errors={"displayName": ["Required."]})
    taken = ScimGroup.objects.filter(source=source).annotate(key=Lower("display_name"))
    taken = taken.filter(key=data.display_name.lower())
    if current is not None:
        taken = taken.exclude(pk=current.pk)
    if taken.exists():
        raise Conflict(f"A group named {data.display_name!r} already exists for this source.")


def _group_snapshot(group: ScimGroup, members: list[ScimUser]) -> dict[str, Any]:
    return {"display_name": group.display_name, "members": sorted(m.identity_id for m in members)}


@state_change
def scim_group_create(*, source: ScimSource, data: ScimGroupData) -> ScimGroup:
    _clean_group(source, data)
    members = _members(source, data.member_scim_ids or [])
    group = ScimGroup.objects.create(
        source=source, display_name=data.display_name[:200], scim_external_id=(data.external_id or "")[:254]
    )
    group.members.set(members)
    audit_event_record(
        actor=source_actor(source),
        action=AuditAction.SCIM_GROUP_CREATED,
        target=group,
        data={"after": _group_snapshot(group, members)},
    )
    return group


@state_change
def scim_group_change(*, source: ScimSource, group_id: int, data: ScimGroupData) -> ScimGroup:
    """Rename a group or change its members (`member_scim_ids` None: members unchanged)."""
    group = ScimGroup.objects.select_for_update().get(pk=group_id, source=source)
    _clean_group(source, data, current=group)
    old_members = list(group.members.order_by("pk"))
    before = _group_snapshot(group, old_members)
    members = old_members if data.member_scim_ids is None else _members(source, data.member_scim_ids)
    group.display_name, group.scim_external_id = data.display_name[:200], (data.external_id or "")[:254]
    group.save(update_fields=["display_name", "scim_external_id", "updated_at"])
    group.members.set(members)
    after = _group_snapshot(group, members)
    changed = [k for k in after if before[k] != after[k]]
    if changed:
        audit_event_record(
            actor=source_actor(source),
            action=AuditAction.SCIM_GROUP_CHANGED,
            target=group,
            data={"before": {k: before[k] for k in changed}, "after": {k: after[k] for k in changed}},
        )
    return group


@state_change
def scim_group_delete(*, source: ScimSource, group_id: int) -> None:
    group = ScimGroup.objects.select_for_update().get(pk=group_id, source=source)
    audit_event_record(
        actor=source_actor(source),
        action=AuditAction.SCIM_GROUP_DELETED,
        target=group,
        data={"before": _group_snapshot(group, list(group.members.all()))},
    )
    group.members.clear()
    group.delete()


__all__ = [
    "Conflict",
    "ScimGroupData",
    "ScimUserData",
    "scim_group_change",
    "scim_group_create",
    "scim_group_delete",
    "scim_source_create",
    "scim_source_revoke",
    "scim_source_rotate",
    "scim_user_change",
    "scim_user_create",
    "scim_user_delete",
]
