"""Validate every row of an import against the inventory, in memory, and plan the writes.

Each `plan_<entity>` loads what it needs with one query per model, parses and checks every row
(collecting every error rather than stopping at the first), and returns a `Plan`: objects to
create (in levels, so that an owner defined in the same file is created before what it owns),
objects to update with their snapshot before the change, and how many rows were unchanged.
It also keeps what it read of the existing rows it decided on (`Plan.reads`: the rows it updates,
the owners, systems, identities and entitlements its rows must find active), so that the write,
which may come minutes later, can lock them and refuse the file if any changed meanwhile.
Nothing here writes; `governance.services.imports.import_apply` does.
"""

import enum
import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import Group
from django.db import models
from django.db.models import signals
from django.db.models.base import ModelState
from django.utils import timezone

from ..approval_stages import validate_approval_stages
from ..choices import (
    Connector,
    CredentialType,
    Criticality,
    GrantKind,
    GrantStatus,
    IdentityKind,
    IdentityStatus,
    LifecycleStatus,
    RiskTier,
    SecretLocation,
)
from ..errors import ValidationFailed
from ..models import Entitlement, Grant, Identity, System
from ..models.entitlements import default_allowed_kinds, default_approval_stages
from ..policy_loosening import loosened_fields
from ..services import catalogue, identities
from . import cells, staging
from .cells import CellError
from .columns import ColumnParser, as_is
from .grant_rules import SELF_GRANT, BlockRules, sod_message
from .readers import Row, RowError
from .scope import ImportScope
from .specs import PORTAL_KEY_PREFIX, portal_key
from .stored import StoredIdentities, UnchangedRows

Progress = Callable[[str, int, int], None]

# What the audit trail records of each imported object (allow-lists; never credentials themselves).
IDENTITY_AUDITED = identities.AUDITED_FIELDS
SYSTEM_AUDITED = [name for name in catalogue.SYSTEM_FIELDS if name != "connector_settings"]
ENTITLEMENT_AUDITED = ["system", *catalogue.ENTITLEMENT_FIELDS]
GRANT_AUDITED = ["identity", "entitlement", "kind", "status", "granted_at", "expires_at", "external_id", "last_used_at"]


@dataclass
class Plan:
    entity: str
    model: type[models.Model]
    audited: list[str]
    rows: int = 0
    levels: list[list[models.Model]] = field(default_factory=list)
    updates: list[tuple[models.Model, dict[str, Any]]] = field(default_factory=list)
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    # References to objects that do not exist yet: id(obj) -> [(attname, key of a new object)].
    links: dict[int, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    new_by_key: dict[str, models.Model] = field(default_factory=dict)
    # The line of every row by its key: for what the write phase finds wrong.
    lines: dict[str, int] = field(default_factory=dict)
    # What the plan read of existing rows and decided on, per model and id (field name -> value as
    # read), and which rows relied on each: the write phase locks these rows and checks them again.
    reads: dict[type[models.Model], dict[int, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    readers: dict[tuple[type[models.Model], int], list[tuple[int, str, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    # A non-admin's reach (None: everything), and the rows it let the file write, per model and id,
    # with the rows of the file that relied on it: the write phase asks the scope again under its locks.
    scope: ImportScope | None = None
    scoped: dict[type[models.Model], dict[int, list[tuple[int, str, str]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    _pairs: tuple[tuple[str, str], ...] = field(init=False, repr=False, default=())

    @property
    def created(self) -> int:
        return sum(len(level) for level in self.levels)

    @property
    def updated(self) -> int:
        return len(self.updates)

    def snapshot(self, obj: models.Model) -> dict[str, Any]:
        return _snapshot(obj, self._pairs)

    def __post_init__(self) -> None:
        self._pairs = _attnames(tuple(self.audited))  # once: a snapshot is taken per row

    def rely_on(
        self, model: type[models.Model], pk: int, values: dict[str, Any], line: int, key: str, what: str
    ) -> None:
        """Row `line` was planned on these `values` of an existing row; `what` names that row in a conflict."""
        read = self.reads[model].get(pk)
        if read is None:
            self.reads[model][pk] = values  # a dict of the caller's own making: kept, not copied
        else:
            read.update(values)
        self.readers[(model, pk)].append((line, key, what))

    def within_scope(self, model: type[models.Model], pk: int, line: int, key: str, what: str) -> None:
        """Row `line` is written because the importer answers for this row (`what` names it); the write
        locks it (and, for an entitlement, the caller holds its system) and checks that they still do."""
        if self.scope is None:
            return
        self.scoped[model][pk].append((line, key, what))
        self.hold(model, pk)

    def hold(self, model: type[models.Model], pk: int) -> None:
        """Lock this row too when writing (lock order), without relying on anything it holds."""
        self.reads[model].setdefault(pk, {})

    def update(self, obj: models.Model, before: dict[str, Any], line: int, key: str, **read: Any) -> None:
        """Plan to update `obj`, relying on it still holding what was read: `before` and `read`."""
        self.updates.append((obj, before))
        self.rely_on(type(obj), obj.pk, {**before, **read}, line, key, f"{type(obj)._meta.verbose_name} {key!r}")


def _snapshot(obj: models.Model, names: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    values = obj.__dict__  # loaded rows and new objects hold every field here: no descriptors per cell
    try:
        result = {name: values[attname] for name, attname in names}
    except KeyError:  # a field not loaded: read through the model
        result = {name: values[attname] if attname in values else getattr(obj, attname) for name, attname in names}
    for name, value in result.items():
        if type(value) is list:
            result[name] = list(value)
    return result


@functools.cache
def _attnames(fields: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(field name, attribute) of each field a snapshot holds: foreign keys by id."""
    return tuple((name, column(name)) for name in fields)


_FOREIGN_KEYS = frozenset({"owner", "backup_owner", "manager", "system", "identity", "entitlement"})


def column(name: str) -> str:
    """The attribute (and column) a snapshot's field name is stored in: foreign keys by id."""
    return f"{name}_id" if name in _FOREIGN_KEYS else name


# Checked for every row: frozensets, computed once (TextChoices.values builds a new list per call).
_KINDS = cells.Choices(IdentityKind.values)
_IDENTITY_STATUSES = cells.Choices(IdentityStatus.values)
_CREDENTIAL_TYPES = cells.Choices(CredentialType.values)
_SECRET_LOCATIONS = cells.Choices(SecretLocation.values)
_RISK_TIERS = cells.Choices(RiskTier.values)
_CONNECTORS = cells.Choices(Connector.values)
_GRANT_KINDS = cells.Choices(GrantKind.values)


class _Rows:
    """Walks the rows once, reporting progress and collecting errors for each row."""

    def __init__(self, plan: Plan, rows: list[Row], progress: Progress | None, every: int):
        self.plan, self.rows, self.progress, self.every = plan, rows, progress, every
        plan.rows = len(rows)

    def __iter__(self):
        total = len(self.rows)
        for number, row in enumerate(self.rows, start=1):
            yield row
            if self.progress and (number % self.every == 0 or number == total):
                self.progress("validated", number, total)


def _key_of(row: Row, errors: list[RowError], seen: dict[str, int]) -> str | None:
    """The row's external id, or None (with an error) when it is missing, too long or a duplicate.
    A cell the parser would keep as it is (most) is taken as it is, unparsed."""
    key = row.values.get("external_id")
    if type(key) is not str or not (0 < len(key) <= 200 and as_is(key)):
        try:
            key = cells.text(key, column="external_id", max_length=200, required=True)
        except CellError as exc:
            errors.append(RowError(row.line, "", str(exc)))
            return None
    if key in seen:
        errors.append(RowError(row.line, key, f"duplicate external_id {key!r} (first on line {seen[key]})"))
        return None
    seen[key] = row.line
    return key


def _index(objects) -> dict[str, Any]:
    return {portal_key(obj): obj for obj in objects}


def _new_key_error(key: str) -> str | None:
    if key.startswith(PORTAL_KEY_PREFIX):
        return f"unknown portal id {key!r}: new rows need their own external_id"
    return None


def _parse(row: Row, errors: list[RowError], key: str, parsers: dict[str, Callable[[Any], Any]]) -> dict | None:
    """Parse each present column; every bad cell is reported, and None returned if any was bad."""
    parsed, ok = {}, True
    for column, parse in parsers.items():
        if column not in row.values:
            continue
        try:
            parsed[column] = parse(row.values[column])
        except CellError as exc:
            errors.append(RowError(row.line, key, str(exc)))
            ok = False
    return parsed if ok else None


def _person_error(person: Any, role: str, *, must_be_active: bool) -> str | None:
    kind, status = person
    if kind != IdentityKind.HUMAN:
        return f"{role} must be a human identity"
    if must_be_active and status != IdentityStatus.ACTIVE:
        return f"{role} is not active"
    return None


#
# Identities
#
# Text columns: (max length, required).
_IDENTITY_TEXTS: dict[str, tuple[int, bool]] = {
    "name": (200, True),
    "team": (120, False),
    "owner_external_id": (200, False),
    "backup_owner_external_id": (200, False),
    "manager_external_id": (200, False),
}


def _text(column: str) -> Callable[[Any], str]:
    max_length, required = _IDENTITY_TEXTS[column]
    return lambda v: cells.text(v, column=column, max_length=max_length, required=required)


# Plain values, not the choices' enum members: the audit trail stores a snapshot of plain values the
# cheap way (`audit.services._storable`), once per row of a big import.
_ACTIVE, _NO_CREDENTIAL = IdentityStatus.ACTIVE.value, CredentialType.NONE.value
_IDENTITY_PARSERS: dict[str, Callable[[Any], Any]] = {
    "name": _text("name"),
    "kind": lambda v: cells.choice(v, column="kind", choices=_KINDS),
    "status": lambda v: cells.choice(v, column="status", choices=_IDENTITY_STATUSES, default=_ACTIVE),
    "email": lambda v: cells.email(v, column="email"),
    "team": _text("team"),
    "owner_external_id": _text("owner_external_id"),
    "backup_owner_external_id": _text("backup_owner_external_id"),
    "manager_external_id": _text("manager_external_id"),
    "credential_type": lambda v: cells.choice(v, column="credential_type", choices=_CREDENTIAL_TYPES),
    "secret_location": lambda v: cells.choice(v, column="secret_location", choices=_SECRET_LOCATIONS),
    "last_rotated_at": lambda v: cells.moment(v, column="last_rotated_at"),
    "rotation_period_days": lambda v: cells.integer(v, column="rotation_period_days", minimum=1),
    "last_used_at": lambda v: cells.moment(v, column="last_used_at"),
    "may_self_request": lambda v: cells.boolean(v, column="may_self_request"),
}
_IDENTITY_PLAIN = [
    "name",
    "email",
    "team",
    "credential_type",
    "secret_location",
    "last_rotated_at",
    "rotation_period_days",
    "last_used_at",
    "may_self_request",
]
# (column, attribute, role named in messages)
_IDENTITY_REFS = [
    ("owner_external_id", "owner_id", "owner"),
    ("backup_owner_external_id", "backup_owner_id", "backup owner"),
    ("manager_external_id", "manager_id", "manager"),
]


@functools.cache
def _identity_defaults() -> dict[str, Any] | None:
    """Every field's default by attribute name (plain values, not enum members), as Model.__init__
    fills them in; None if a default is computed per object or something listens for a model's
    construction (then each is made the usual way)."""
    fields = Identity._meta.concrete_fields
    if any(callable(f.default) for f in fields if f.has_default()):
        return None
    if signals.pre_init.has_listeners(Identity) or signals.post_init.has_listeners(Identity):
        return None
    defaults = {f.attname: f.get_default() for f in fields}
    return {name: value.value if isinstance(value, enum.Enum) else value for name, value in defaults.items()}


def _new_identity(key: str, kind: str, status: str) -> Identity:
    """Identity(external_id=..., kind=..., status=...) without Model.__init__ (a setattr per field, a
    fifth of a first import's planning at 100k rows): its dict filled in one step, as `from_db` would."""
    defaults = _identity_defaults()
    if defaults is None:
        return Identity(external_id=key, kind=kind, status=status)
    obj = Identity.__new__(Identity)
    obj.__dict__.update(defaults)
    obj.__dict__.update(_state=ModelState(), external_id=key, kind=kind, status=status)
    return obj


def _existing_identities() -> StoredIdentities:
    """Every identity. Where the write is set-based (`staging`: history rows are copied from the
    table), only what the plan compares and audits is loaded; the ORM's history rows need every field."""
    if staging.can_stage(Identity):
        return StoredIdentities(column(name) for name in IDENTITY_AUDITED)
    return StoredIdentities(f.attname for f in Identity._meta.concrete_fields)


def plan_identities(
    rows: list[Row], *, progress: Progress | None = None, every: int = 10_000, scope: ImportScope | None = None
) -> Plan:
    plan = Plan("identities", Identity, IDENTITY_AUDITED, scope=scope)
    errors = plan.errors
    existing = _existing_identities()
    stored = existing.rows  # the stored rows by key: `in` on the dict itself, once per row and reference
    fast = ColumnParser(_IDENTITY_PARSERS, texts=_IDENTITY_TEXTS, emails=frozenset({"email"}))
    unchanged = UnchangedRows(existing, fast)
    seen = plan.lines

    # Pass 1: parse every row that is not as stored; learn the kind and status of identities that
    # only the file defines.
    parsed_rows: list[tuple[Row, str, dict]] = []
    people: dict[str, tuple[str, str]] = {}  # the file's new identities; the stored ones: `existing`
    for row in _Rows(plan, rows, progress, every):
        key = _key_of(row, errors, seen)
        if key is None:
            continue
        if key in stored and unchanged.same(key, row.values):
            denied = scope.stored_identity_error(existing.value(key, "id")) if scope is not None else None
            if denied:
                errors.append(RowError(row.line, key, denied))
            else:
                plan.unchanged += 1
            continue
        parsed = fast.row(row.values)
        if parsed is None:  # a cell the fast path cannot vouch for: every cell through its parser
            parsed = _parse(row, errors, key, _IDENTITY_PARSERS)
        if parsed is None:
            continue
        if key not in stored:
            problem = _new_key_error(key)
            if problem:
                errors.append(RowError(row.line, key, problem))
                continue
            if "kind" not in parsed:
                errors.append(RowError(row.line, key, "kind is required"))
                continue
            people[key] = (parsed["kind"], parsed.get("status", _ACTIVE))
        parsed_rows.append((row, key, parsed))

    # Pass 2: resolve references and build the objects.
    depends: dict[str, set[str]] = {}
    for row, key, parsed in parsed_rows:
        obj = existing.get(key)
        is_new = obj is None
        if is_new:
            obj = _new_identity(key, parsed["kind"], parsed.get("status", _ACTIVE))
            before = None
        else:
            before = plan.snapshot(obj)
        # Every error of the row is reported at once: checks that can go on after one failed do.
        ok = True
        denied = scope.identity_error(obj, is_new) if scope is not None else None
        if denied:
            errors.append(RowError(row.line, key, denied))
            ok = False
        if not is_new and parsed["kind"] != obj.kind:
            errors.append(RowError(row.line, key, f"kind cannot change on import (it is {obj.kind})"))
            ok = False
        if not is_new and "status" in parsed and parsed["status"] != obj.status:
            errors.append(
                RowError(
                    row.line,
                    key,
                    f"status cannot change on import (it is {obj.status}): suspend or offboard in the portal",
                )
            )
            ok = False
        if not ok and not is_new and parsed["kind"] != obj.kind:
            continue  # references are checked for the kind the row has; a row changing it says no more
        for name in _IDENTITY_PLAIN:
            if name in parsed:
                setattr(obj, name, parsed[name])
        if obj.kind == IdentityKind.HUMAN:
            # As identity_create does: credentials and self-requests belong to machines.
            obj.credential_type, obj.may_self_request = _NO_CREDENTIAL, False
        pending: list[tuple[str, str]] = []
        for column, attname, role in _IDENTITY_REFS:
            if column not in parsed:
                continue
            ref = parsed[column]
            if not ref:
                setattr(obj, attname, None)
                continue
            if ref == key:
                errors.append(RowError(row.line, key, f"an identity cannot be its own {role}"))
                ok = False
                continue
            if obj.kind == IdentityKind.HUMAN and role != "manager":
                errors.append(RowError(row.line, key, f"a person has no {role}; their manager answers for them"))
                ok = False
                continue
            if ref in stored:
                target, person = existing.person(ref)
            elif ref in people:
                target, person = None, people[ref]
            else:
                errors.append(RowError(row.line, key, f"unknown {role} external id {ref!r}"))
                ok = False
                continue
            changed = is_new or target is None or getattr(obj, attname) != target
            problem = _person_error(person, role, must_be_active=changed)
            if problem:
                errors.append(RowError(row.line, key, f"{problem} ({ref})"))
                ok = False
                continue
            if target is not None:
                setattr(obj, attname, target)
                if changed:  # the plan checked that they are an active person: still so when writing
                    plan.rely_on(Identity, target, {"status": person[1]}, row.line, key, f"{role} {ref!r}")
            else:
                pending.append((attname, ref))
        refs = dict(pending)  # references to identities the file creates, by key; the others by id
        backup = refs.get("backup_owner_id", obj.backup_owner_id)
        if backup is not None and backup == refs.get("owner_id", obj.owner_id):
            errors.append(RowError(row.line, key, "backup owner cannot be the owner: name someone else, or nobody"))
            ok = False
        has_owner = obj.owner_id is not None or any(attname == "owner_id" for attname, _ in pending)
        if obj.kind != IdentityKind.HUMAN and not has_owner:
            if not parsed.get("owner_external_id"):  # one named but refused is reported above
                errors.append(RowError(row.line, key, "a non-human identity needs an owner"))
            ok = False
        elif scope is not None and not denied and has_owner:
            problem = scope.owner_error(refs.get("owner_id", obj.owner_id), is_new)
            if problem:
                errors.append(RowError(row.line, key, problem))
                ok = False
        if not ok:
            continue
        if pending:
            plan.links[id(obj)] = pending
        if is_new:
            plan.new_by_key[key] = obj
            depends[key] = {ref for _, ref in pending}
        elif pending or plan.snapshot(obj) != before:
            plan.update(obj, before, row.line, key)
            plan.within_scope(Identity, obj.pk, row.line, key, f"identity {key!r}")
        else:
            plan.unchanged += 1

    if not errors:
        _levels(plan, depends, {key: seen[key] for key in depends})
    return plan


def _levels(plan: Plan, depends: dict[str, set[str]], lines: dict[str, int]) -> None:
    """Order new objects so that each is created after the new objects it refers to (Kahn, linear)."""
    waiting = {key: len(refs) for key, refs in depends.items()}
    dependents: dict[str, list[str]] = defaultdict(list)
    for key, refs in depends.items():
        for ref in refs:
            dependents[ref].append(key)
    ready = [key for key, count in waiting.items() if count == 0]
    placed = 0
    while ready:
        plan.levels.append([plan.new_by_key[key] for key in ready])
        placed += len(ready)
        following = []
        for key in ready:
            for dependent in dependents.get(key, ()):
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    following.append(dependent)
        ready = following
    if placed < len(waiting):
        for key, count in waiting.items():
            if count:
                plan.errors.append(RowError(lines[key], key, "owner, backup owner or manager references form a cycle"))


#
# Systems
#
_SYSTEM_PARSERS: dict[str, Callable[[Any], Any]] = {
    "name": lambda v: cells.text(v, column="name", max_length=200, required=True),
    "description": lambda v: cells.free_text(v, column="description"),
    "owner_external_id": lambda v: cells.text(v, column="owner_external_id", max_length=200, required=True),
    "criticality": lambda v: cells.choice(v, column="criticality", choices=_RISK_TIERS, default=Criticality.MEDIUM),
    "connector": lambda v: cells.choice(v, column="connector", choices=_CONNECTORS, default=Connector.MANUAL),
}


def _owner(row: Row, key: str, ref: str, obj, owners: dict[str, Identity], is_new: bool, plan: Plan) -> int | None:
    """The owner's id, checked like the catalogue services do (an active person when it changes)."""
    owner = owners.get(ref)
    if owner is None:
        plan.errors.append(RowError(row.line, key, f"unknown owner external id {ref!r}"))
        return None
    changed = is_new or obj.owner_id != owner.pk
    problem = _person_error((owner.kind, owner.status), "owner", must_be_active=changed)
    if problem:
        plan.errors.append(RowError(row.line, key, f"{problem} ({ref})"))
        return None
    if changed:
        plan.rely_on(Identity, owner.pk, {"status": owner.status}, row.line, key, f"owner {ref!r}")
    return owner.pk


def _retired_change(row: Row, key: str, obj, before: dict, plan: Plan, noun: str) -> bool:
    if obj.status == LifecycleStatus.RETIRED and plan.snapshot(obj) != before:
        plan.errors.append(RowError(row.line, key, f"the {noun} is retired; it cannot be changed"))
        return True
    return False


def _admin_changes(parsed: dict[str, Any], obj: System) -> list[str]:
    """The admin-only fields (`catalogue.SYSTEM_ADMIN_FIELDS`, as the forms and API) the row changes:
    one list for every channel, so an owner's file cannot do what the owner's form refuses."""
    return sorted(name for name in catalogue.SYSTEM_ADMIN_FIELDS & parsed.keys() if parsed[name] != getattr(obj, name))


def plan_systems(
    rows: list[Row], *, progress: Progress | None = None, every: int = 10_000, scope: ImportScope | None = None
) -> Plan:
    plan = Plan("systems", System, SYSTEM_AUDITED, scope=scope)
    errors = plan.errors
    existing = _index(System.objects.all())
    owners = _index(Identity.objects.only("id", "external_id", "kind", "status"))
    seen = plan.lines
    live_names: list[tuple[str, str, int]] = []  # (name, key, line) of every active system the file defines
    for row in _Rows(plan, rows, progress, every):
        key = _key_of(row, errors, seen)
        if key is None:
            continue
        parsed = _parse(row, errors, key, _SYSTEM_PARSERS)
        if parsed is None:
            continue
        obj = existing.get(key)
        is_new = obj is None
        if is_new:
            problem = _new_key_error(key)
            if problem:
                errors.append(RowError(row.line, key, problem))
                continue
            obj, before = System(external_id=key), None
        else:
            before = plan.snapshot(obj)
        denied = scope.system_error(obj, is_new) if scope is not None else None
        if denied:
            errors.append(RowError(row.line, key, denied))
        elif scope is not None and (admin_changes := _admin_changes(parsed, obj)):
            denied = f"only an admin changes a system's {', '.join(admin_changes)}"
            errors.append(RowError(row.line, key, denied))
        owner_id = _owner(row, key, parsed["owner_external_id"], obj, owners, is_new, plan)
        if owner_id is None or denied:
            continue
        obj.owner_id = owner_id
        for name in ("name", "description", "criticality", "connector"):
            if name in parsed:
                setattr(obj, name, parsed[name])
        if not is_new and _retired_change(row, key, obj, before, plan, "system"):
            continue
        if obj.status == LifecycleStatus.ACTIVE:
            live_names.append((obj.name, key, row.line))
        if _keep(plan, obj, key, row.line, before, is_new) and not is_new:
            plan.within_scope(System, obj.pk, row.line, key, f"system {key!r}")
    in_file = {key for _, key, _ in live_names}
    taken = {
        obj.name: key for key, obj in existing.items() if obj.status == LifecycleStatus.ACTIVE and key not in in_file
    }
    for name, key, line in live_names:
        if name in taken:
            errors.append(RowError(line, key, f"another active system is named {name!r} ({taken[name]})"))
        else:
            taken[name] = key
    return plan


def _keep(plan: Plan, obj, key: str, line: int, before: dict | None, is_new: bool) -> bool:
    """Plan to create, update or leave the row; True if it will be written."""
    if is_new:
        plan.new_by_key[key] = obj
    elif plan.snapshot(obj) != before:
        plan.update(obj, before, line, key, status=obj.status)  # the plan refuses changes to retired rows
    else:
        plan.unchanged += 1
        return False
    return True


#
# Entitlements
#
def _stages(groups: set[str]) -> Callable[[Any], list[dict] | None]:
    """Parse approval stages with the catalogue's own validator, the groups known in memory (no query per row)."""

    def parse(value: Any) -> list[dict] | None:
        stages = cells.json_list(value, column="approval_stages")
        if stages is None:
            return None
        try:
            return validate_approval_stages(stages, groups=groups)
        except ValidationFailed as exc:
            raise CellError(f"approval_stages: {exc.message}") from None

    return parse


def _entitlement_parsers(groups: set[str]) -> dict[str, Callable[[Any], Any]]:
    stages = _stages(groups)
    return {
        "system_external_id": lambda v: cells.text(v, column="system_external_id", max_length=200, required=True),
        "name": lambda v: cells.text(v, column="name", max_length=200, required=True),
        "owner_external_id": lambda v: cells.text(v, column="owner_external_id", max_length=200, required=True),
        "business_purpose": lambda v: cells.free_text(v, column="business_purpose"),
        "risk_tier": lambda v: cells.choice(v, column="risk_tier", choices=_RISK_TIERS, default=RiskTier.LOW),
        "requestable": lambda v: cells.boolean(v, column="requestable", default=True),
        "max_duration_hours": lambda v: cells.hours(v, column="max_duration_hours"),
        "justification_required": lambda v: cells.boolean(v, column="justification_required", default=True),
        "ticket_required": lambda v: cells.boolean(v, column="ticket_required"),
        "auto_approve_machines": lambda v: cells.boolean(v, column="auto_approve_machines"),
        "break_glass_eligible": lambda v: cells.boolean(v, column="break_glass_eligible"),
        "allowed_identity_kinds": lambda v: (
            cells.kinds(v, column="allowed_identity_kinds", choices=_KINDS) or default_allowed_kinds()
        ),
        "review_cadence_days": lambda v: cells.integer(v, column="review_cadence_days", minimum=1, default=90),
        "approval_stages": lambda v: stages(v) or default_approval_stages(),
    }


_ENTITLEMENT_PLAIN = [
    "name",
    "business_purpose",
    "risk_tier",
    "requestable",
    "justification_required",
    "ticket_required",
    "auto_approve_machines",
    "break_glass_eligible",
    "allowed_identity_kinds",
    "review_cadence_days",
    "approval_stages",
]


def plan_entitlements(
    rows: list[Row], *, progress: Progress | None = None, every: int = 10_000, scope: ImportScope | None = None
) -> Plan:
    plan = Plan("entitlements", Entitlement, ENTITLEMENT_AUDITED, scope=scope)
    errors = plan.errors
    existing = _index(Entitlement.objects.all())
    systems = _index(System.objects.only("id", "external_id", "name", "status"))
    owners = _index(Identity.objects.only("id", "external_id", "kind", "status"))
    parsers = _entitlement_parsers(set(Group.objects.values_list("name", flat=True)))
    seen = plan.lines
    live_names: list[tuple[tuple[int, str], str, int]] = []
    for row in _Rows(plan, rows, progress, every):
        key = _key_of(row, errors, seen)
        if key is None:
            continue
        parsed = _parse(row, errors, key, parsers)
        if parsed is None:
            continue
        obj = existing.get(key)
        is_new = obj is None
        system_key = parsed["system_external_id"]
        system = systems.get(system_key)
        # Every error of the row is reported at once: the system, the scope and the owner are each checked.
        ok = True
        if system is None:
            errors.append(RowError(row.line, key, f"unknown system external id {system_key!r}"))
            ok = False
        elif is_new:
            problem = _new_key_error(key)
            if problem:
                errors.append(RowError(row.line, key, problem))
                ok = False
            if system.status != LifecycleStatus.ACTIVE:
                errors.append(RowError(row.line, key, f"system {system_key!r} is retired"))
                ok = False
            if ok:
                plan.rely_on(System, system.pk, {"status": system.status}, row.line, key, f"system {system_key!r}")
        elif obj.system_id != system.pk:
            errors.append(RowError(row.line, key, "an entitlement cannot move to another system"))
            ok = False
        if scope is not None and (system is not None or not is_new):
            denied = scope.entitlement_error(obj, is_new, system.pk if system is not None else 0)
            if denied:
                errors.append(RowError(row.line, key, denied))
                ok = False
        if is_new:
            obj, before = Entitlement(external_id=key, system_id=system.pk if system is not None else None), None
        else:
            before = plan.snapshot(obj)
        owner_id = _owner(row, key, parsed["owner_external_id"], obj, owners, is_new, plan)
        if owner_id is None or not ok:
            continue
        obj.owner_id = owner_id
        for name in _ENTITLEMENT_PLAIN:
            if name in parsed:
                setattr(obj, name, parsed[name])
        if "max_duration_hours" in parsed:
            obj.max_duration = parsed["max_duration_hours"]
        if not is_new and _retired_change(row, key, obj, before, plan, "entitlement"):
            continue
        loosens = {} if is_new else loosened_fields(before, plan.snapshot(obj))
        if loosens:
            # An import has no second pair of eyes: such a change is asked for in the portal.
            what = "; ".join(loosens.values())
            errors.append(RowError(row.line, key, f"{LOOSENING_BY_IMPORT} ({what})"))
            continue
        if obj.status == LifecycleStatus.ACTIVE:
            live_names.append(((obj.system_id, obj.name), key, row.line))
        if not _keep(plan, obj, key, row.line, before, is_new):
            continue
        if is_new:  # added to a system the importer owns
            plan.within_scope(System, system.pk, row.line, key, f"system {system_key!r}")
        else:
            plan.hold(System, system.pk)  # locks.lock_entitlement's order: an entitlement's system first
            plan.within_scope(Entitlement, obj.pk, row.line, key, f"entitlement {key!r}")
    in_file = {key for _, key, _ in live_names}
    taken = {
        (obj.system_id, obj.name): key
        for key, obj in existing.items()
        if obj.status == LifecycleStatus.ACTIVE and key not in in_file
    }
    for name, key, line in live_names:
        if name in taken:
            errors.append(
                RowError(line, key, f"the system already has an active entitlement named {name[1]!r} ({taken[name]})")
            )
        else:
            taken[name] = key
    return plan


LOOSENING_BY_IMPORT = (
    "this loosens a high or critical entitlement's policy, which another admin must approve: "
    "change it on the entitlement's page"
)


#
# Grants
#
_GRANT_PARSERS: dict[str, Callable[[Any], Any]] = {
    "identity_external_id": lambda v: cells.text(v, column="identity_external_id", max_length=200, required=True),
    "entitlement_external_id": lambda v: cells.text(v, column="entitlement_external_id", max_length=200, required=True),
    "kind": lambda v: cells.choice(v, column="kind", choices=_GRANT_KINDS),
    "expires_at": lambda v: cells.moment(v, column="expires_at"),
    "granted_at": lambda v: cells.moment(v, column="granted_at"),
    "last_used_at": lambda v: cells.moment(v, column="last_used_at"),
}


def plan_grants(
    rows: list[Row],
    *,
    progress: Progress | None = None,
    every: int = 10_000,
    now: datetime | None = None,
    refused_identities: frozenset[int] = frozenset(),
    scope: ImportScope | None = None,
) -> Plan:
    """Grants are access that already exists on the target: imported as active, never changed by a re-import,
    except for when they were last used (a usage feed from the target moves it forward, never back).

    A new grant meets the request path's rules (`grant_rules`): none for the importer's own identities
    (`refused_identities`), none that completes a pair an SoD "block" rule forbids.
    """
    now = now or timezone.now()
    plan = Plan("grants", Grant, GRANT_AUDITED, scope=scope)
    errors = plan.errors
    existing = _index(
        Grant.objects.only(
            "id",
            "external_id",
            "identity_id",
            "entitlement_id",
            "kind",
            "status",
            "granted_at",
            "expires_at",
            "last_used_at",
        )
    )
    identities = _index(Identity.objects.only("id", "external_id", "status"))
    entitlements = _index(Entitlement.objects.only("id", "external_id", "system_id", "status"))
    live = set(Grant.objects.filter(status__in=GrantStatus.live()).values_list("identity_id", "entitlement_id"))
    rules = BlockRules()
    held = rules.held(live)
    seen = plan.lines
    for row in _Rows(plan, rows, progress, every):
        key = _key_of(row, errors, seen)
        if key is None:
            continue
        parsed = _parse(row, errors, key, _GRANT_PARSERS)
        if parsed is None:
            continue
        identity = identities.get(parsed["identity_external_id"])
        entitlement = entitlements.get(parsed["entitlement_external_id"])
        bad = False
        if identity is None:
            errors.append(RowError(row.line, key, f"unknown identity external id {parsed['identity_external_id']!r}"))
            bad = True
        if entitlement is None:
            errors.append(
                RowError(row.line, key, f"unknown entitlement external id {parsed['entitlement_external_id']!r}")
            )
            bad = True
        if entitlement is not None and scope is not None and (denied := scope.grant_error(entitlement.pk)):
            errors.append(RowError(row.line, key, denied))
            bad = True
        if bad:
            continue
        expires_at = parsed.get("expires_at")
        obj = existing.get(key)
        if obj is not None:
            same = (
                obj.identity_id == identity.pk
                and obj.entitlement_id == entitlement.pk
                and obj.kind == parsed["kind"]
                and obj.expires_at == expires_at
                and (
                    "granted_at" not in parsed or parsed["granted_at"] is None or parsed["granted_at"] == obj.granted_at
                )
            )
            used = parsed.get("last_used_at")
            if used is not None and used > now:
                errors.append(RowError(row.line, key, "last_used_at is in the future"))
                continue
            # Usage moves an active grant's last use forward; a grant waiting on its system keeps its
            # timestamps (the manual-work chaser times it from them).
            fresher = used is not None and (obj.last_used_at is None or used > obj.last_used_at)
            if same and fresher and obj.status == GrantStatus.ACTIVE:
                before = plan.snapshot(obj)
                obj.last_used_at = used
                plan.update(obj, before, row.line, key)
                if plan.scope is not None:  # its entitlement's owners, held with their system to commit
                    plan.hold(System, entitlement.system_id)
                    what = f"entitlement {parsed['entitlement_external_id']!r}"
                    plan.within_scope(Entitlement, entitlement.pk, row.line, key, what)
            elif same:
                plan.unchanged += 1
            else:
                errors.append(RowError(row.line, key, "this grant exists with other values; change it in the portal"))
            continue
        problem = _new_key_error(key)
        if problem:
            errors.append(RowError(row.line, key, problem))
            continue
        granted_at = parsed.get("granted_at") or now
        problems = []
        if parsed.get("last_used_at") is not None and parsed["last_used_at"] > now:
            problems.append("last_used_at is in the future")
        if identity.status == IdentityStatus.OFFBOARDED:
            problems.append(f"identity {parsed['identity_external_id']!r} is offboarded")
        if entitlement.status != LifecycleStatus.ACTIVE:
            problems.append(f"entitlement {parsed['entitlement_external_id']!r} is retired")
        if parsed["kind"] != GrantKind.STANDING and expires_at is None:
            problems.append(f"a {parsed['kind']} grant needs expires_at")
        if expires_at is not None and expires_at <= max(granted_at, now):
            problems.append("expires_at must be in the future and after granted_at")
        if (identity.pk, entitlement.pk) in live:
            problems.append("the identity already holds a live grant of this entitlement")
        if identity.pk in refused_identities:
            problems.append(SELF_GRANT)
        blocked = rules.broken_by(entitlement.pk, held[identity.pk])
        if blocked is not None:
            problems.append(sod_message(blocked))
        if problems:
            errors.extend(RowError(row.line, key, p) for p in problems)
            continue
        live.add((identity.pk, entitlement.pk))
        if entitlement.pk in rules.by_entitlement:
            held[identity.pk].add(entitlement.pk)
        # The write phase holds them (in the lock order) and checks they still are as read here.
        identity_key, entitlement_key = parsed["identity_external_id"], parsed["entitlement_external_id"]
        plan.rely_on(Identity, identity.pk, {"status": identity.status}, row.line, key, f"identity {identity_key!r}")
        plan.hold(System, entitlement.system_id)
        plan.rely_on(
            Entitlement,
            entitlement.pk,
            {"status": entitlement.status},
            row.line,
            key,
            f"entitlement {entitlement_key!r}",
        )
        plan.within_scope(Entitlement, entitlement.pk, row.line, key, f"entitlement {entitlement_key!r}")
        plan.new_by_key[key] = Grant(
            external_id=key,
            identity_id=identity.pk,
            entitlement_id=entitlement.pk,
            kind=parsed["kind"],
            status=GrantStatus.ACTIVE,
            granted_at=granted_at,
            expires_at=expires_at,
            last_used_at=parsed.get("last_used_at"),
            reason="imported",
        )
    return plan


PLANNERS: dict[str, Callable[..., Plan]] = {
    "identities": plan_identities,
    "systems": plan_systems,
    "entitlements": plan_entitlements,
    "grants": plan_grants,
}


def plan_for(
    entity: str,
    rows: list[Row],
    *,
    progress: Progress | None = None,
    every: int = 10_000,
    refused_identities: frozenset[int] = frozenset(),
    scope: ImportScope | None = None,
) -> Plan:
    """Plan an import; `refused_identities` (the importer's own) may be given no grant; `scope` (None:
    an admin's, everything) names what a non-admin may import: any other row is a bad row."""
    options = {"refused_identities": refused_identities} if entity == "grants" else {}
    plan = PLANNERS[entity](rows, progress=progress, every=every, scope=scope, **options)
    if entity != "identities" and plan.new_by_key:
        plan.levels = [list(plan.new_by_key.values())]
    return plan
