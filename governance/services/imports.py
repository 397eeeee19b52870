"""Import the inventory from CSV or JSON: validate every row, then write everything or nothing.

`import_apply` reads the file and plans it in memory (`governance.imports.plans`: one query per
model, no per-row queries, no locks held), and refuses the whole file with every bad row if any row
is bad. Otherwise `_apply`, one `state_change` transaction, first locks every existing row the plan
changes or relies on (in `governance.locks`' order, a batch per query) and checks that each still
holds what the plan read: checking a big file takes minutes, and an edit made meanwhile must not be
reverted, so any such change refuses the whole file (`ImportConflict`, its rows named by line, like
bad rows). Then it bulk-creates and bulk-updates in batches with their history rows (identities on
PostgreSQL: COPY and set-based SQL, `imports.staging`), and records one
audit event per changed object plus one summary event in a single call. Unchanged rows are neither
saved nor audited, so importing the same file twice changes nothing.
"""

import gc
import hashlib
import itertools
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, models
from django.db.models.expressions import RawSQL
from guardian.models import UserObjectPermission
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from audit.choices import AuditAction
from audit.kernel import clock
from audit.services import ActorLike, EventSpec, Target, acting_user, audit_events_record_many, state_change

from .. import policies
from ..choices import GrantStatus
from ..errors import ValidationFailed
from ..imports import readers, staging
from ..imports.grant_rules import BlockRules, identities_not_for, sod_message
from ..imports.plans import Plan, column, plan_for
from ..imports.readers import RowError
from ..imports.scope import LOST, import_scope
from ..imports.specs import BATCH_SIZE, ENTITIES, FORMATS, PROGRESS_EVERY, REQUIRED_COLUMNS, allowed_columns, portal_key
from ..locks import lock_many, share_ids
from ..models import Entitlement, Grant, Identity, System
from .delegation import drop_delegates

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

_ACTIONS: dict[str, tuple[AuditAction, AuditAction | None]] = {
    "identities": (AuditAction.IDENTITY_CREATED, AuditAction.IDENTITY_UPDATED),
    "systems": (AuditAction.SYSTEM_CREATED, AuditAction.SYSTEM_UPDATED),
    "entitlements": (AuditAction.ENTITLEMENT_CREATED, AuditAction.ENTITLEMENT_UPDATED),
    "grants": (AuditAction.GRANT_CREATED, AuditAction.GRANT_USAGE_RECORDED),
}
# An identity's owners changed by an import are audited as an owner change, as in the portal.
_OWNER_FIELDS = ("owner", "backup_owner")
# Two imports at once would each plan against a world without the other's rows.
_IMPORT_LOCK_KEY = 0x696D706F7274  # "import"
# governance.locks' order (identity -> system -> entitlement -> request -> grant; imports lock no requests).
_LOCK_ORDER: tuple[type[models.Model], ...] = (Identity, System, Entitlement, Grant)
CHANGED_MEANWHILE = "changed since you checked it; check again"
CREATED_SHOWN = 20


def _rows(row_errors: list[RowError]) -> int:
    return len({(e.line, e.key) for e in row_errors if e.line})


class ImportRejected(ValidationFailed):
    """At least one row is bad: nothing was written. `row_errors` lists every reason with its line."""

    def __init__(self, row_errors: list[RowError], message: str | None = None):
        rows = _rows(row_errors)
        if message is None and rows:
            message = f"{rows} bad row{'s' if rows != 1 else ''} in the file: nothing was imported."
        elif message is None:
            message = "The file cannot be read as this kind of import: nothing was imported."
        super().__init__(message)
        self.row_errors = row_errors


class ImportConflict(ImportRejected):
    """The file was good, but rows it changes or relies on changed while it was being imported.

    Nothing was written. A kind of ImportRejected, so the page, the job and the command list the
    rows by line as they list bad rows; checking the file again plans against the inventory as it is.
    """

    status_code = 409

    def __init__(self, row_errors: list[RowError]):
        rows = _rows(row_errors)
        affected = f" ({rows} row{'s' if rows != 1 else ''} affected)" if rows else ""
        super().__init__(
            row_errors,
            f"The inventory changed while the file was being imported{affected}: nothing was imported.",
        )


@dataclass(frozen=True)
class ImportResult:
    entity: str
    format: str
    file_name: str
    sha256: str
    rows: int
    created: int
    updated: int
    unchanged: int
    dry_run: bool = False
    # The first keys the import creates (CREATED_SHOWN at most), for the page to link to what it made.
    created_keys: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def _batches(items: list, size: int = BATCH_SIZE) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _history_user(actor: ActorLike):
    user = acting_user(actor)
    return user if getattr(user, "is_authenticated", False) else None


def _resolve_links(plan: Plan, obj: models.Model) -> None:
    """Point references at objects this import has just created (they have ids now)."""
    for attname, key in plan.links.get(id(obj), ()):
        obj.__dict__[attname] = plan.new_by_key[key].pk  # an id: no related object is cached to drop


def _drop_former_owners_delegates(changes: list[tuple[models.Model, dict[str, Any]]], actor: ActorLike) -> None:
    """Delegates were chosen by the former owners: an identity the import hands over keeps none.

    Runs after the update, which holds the rows' locks, so a delegation racing the import waits and
    is then judged against the new owners. One query finds the identities that have delegates at all.
    """
    handed_over = {
        str(obj.pk): obj for obj, change in changes if any(name in change["after"] for name in _OWNER_FIELDS)
    }
    if not handed_over:
        return
    codename = policies.DELEGATED_PERMISSION.split(".")[1]
    delegated = UserObjectPermission.objects.filter(
        content_type__app_label="governance",
        content_type__model="identity",
        object_pk__in=list(handed_over),
        permission__codename=codename,
    ).values_list("object_pk", flat=True)
    for pk in sorted(set(delegated), key=int):
        drop_delegates(handed_over[pk], actor=actor, reason="owner changed")


def _update_events(plan: Plan, obj: models.Model, change: dict[str, Any], file_name: str) -> list[EventSpec]:
    """The audit events of one updated object; an identity's change of owners is its own event."""
    _, updated_action = _ACTIONS[plan.entity]
    target = Target(plan.model._meta.label_lower, str(obj.pk), str(obj)[:200])
    owners = [name for name in change["after"] if plan.entity == "identities" and name in _OWNER_FIELDS]
    rest = [name for name in change["after"] if name not in owners]
    events = []
    if owners:
        owner_change = {
            "before": {name: change["before"][name] for name in owners},
            "after": {name: change["after"][name] for name in owners},
        }
        events.append(
            EventSpec(
                AuditAction.IDENTITY_OWNER_CHANGED,
                target,
                {**owner_change, "reason": f"import {file_name}".strip(), "source": "import"},
            )
        )
    if rest or not owners:
        only = {
            "before": {name: change["before"][name] for name in rest},
            "after": {name: change["after"][name] for name in rest},
        }
        events.append(EventSpec(updated_action, target, {**only, "source": "import"}))
    return events


def _write(plan: Plan, *, actor: ActorLike, file_name: str, progress: Progress | None) -> list[EventSpec]:
    now = clock.database_now()
    user = _history_user(actor)
    reason = f"import {file_name}"[:100]
    total, done, reported = plan.created + plan.updated, 0, 0

    def advance(count: int) -> None:
        nonlocal done, reported
        done += count
        if progress and (done - reported >= PROGRESS_EVERY or done == total):
            progress("written", done, total)
            reported = done

    staged = staging.can_stage(plan.model)
    user_id = user.pk if user is not None else None
    if staged:  # PostgreSQL: ids first, then every level in one COPY (foreign keys are checked at commit)
        created = [obj for level in plan.levels for obj in level]
        staging.assign_ids(created, plan.model)
        for obj in created:
            _resolve_links(plan, obj)
        staging.create_with_history(created, plan.model, user_id=user_id, reason=reason, when=now)
        advance(len(created))
    for level in plan.levels if not staged else ():
        for batch in _batches(level):
            for obj in batch:
                _resolve_links(plan, obj)
            bulk_create_with_history(
                batch,
                plan.model,
                batch_size=BATCH_SIZE,
                default_user=user,
                default_change_reason=reason,
                default_date=now,
            )
            advance(len(batch))

    changes: list[tuple[models.Model, dict[str, Any]]] = []
    fields: set[str] = set()
    for obj, before in plan.updates:
        _resolve_links(plan, obj)
        after = plan.snapshot(obj)
        changed = [name for name in after if after[name] != before[name]]
        fields.update(changed)
        obj.updated_at = now
        changes.append((obj, {"before": {k: before[k] for k in changed}, "after": {k: after[k] for k in changed}}))
    if changes and staged:
        staging.update_with_history(
            [obj for obj, _ in changes],
            plan.model,
            fields=sorted(fields | {"updated_at"}),
            user_id=user_id,
            reason=reason,
            when=now,
        )
        advance(len(changes))
    elif changes:
        objs = [obj for obj, _ in changes]
        for batch in _batches(objs):
            bulk_update_with_history(
                batch,
                plan.model,
                fields=sorted(fields | {"updated_at"}),
                batch_size=BATCH_SIZE,
                default_user=user,
                default_change_reason=reason,
                default_date=now,
            )
            advance(len(batch))
    if changes and plan.entity == "identities":
        _drop_former_owners_delegates(changes, actor)

    created_action, _ = _ACTIONS[plan.entity]
    label = plan.model._meta.label_lower
    events = [
        EventSpec(
            created_action,
            Target(label, str(obj.pk), str(obj)[:200]),
            {"after": plan.snapshot(obj), "source": "import"},
        )
        for level in plan.levels
        for obj in level
    ]
    for obj, change in changes:
        events += _update_events(plan, obj, change, file_name)
    return events


@contextmanager
def _one_import_at_a_time() -> Iterator[None]:
    """Imports queue for each other from reading the file to commit, so the second plans against the
    first one's rows. A session lock: the checking runs outside the write's transaction. Nothing else
    waits for it; `_changed_since_planned` guards against other changes."""
    if connection.vendor != "postgresql":
        yield  # SQLite: one writer at a time anyway
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [_IMPORT_LOCK_KEY])
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_IMPORT_LOCK_KEY])
        except DatabaseError:  # a lost connection took its session lock with it
            logger.warning("import: the import lock was not released on its connection", exc_info=True)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused while a file is planned and written: a big import makes a few
    objects per row (rows, cells, models, events), none of them cyclic garbage, and the collector
    walking them all again and again costs 40% of planning 100,000 rows. It resumes afterwards."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _any(values: list, sql_type: str) -> Any:
    """`values` for an `__in` lookup: on PostgreSQL one array parameter, not one per value (a
    5,000-value IN list costs three times as much to send and plan as the rows cost to lock)."""
    if connection.vendor == "postgresql":
        return RawSQL(f"SELECT unnest(%s::{sql_type}[])", [values])
    return values


def _recheck(plan: Plan, model: type[models.Model], reads: dict[int, dict[str, Any]]) -> list[RowError]:
    """Lock `model`'s rows the plan read (by id, a batch per query) and name the rows of the file
    that relied on one no longer holding what was read (or gone).

    The kind the import writes is locked FOR NO KEY UPDATE; a kind it only relies on (the owners of
    systems, the entitlements of new grants) FOR SHARE, as issuing a grant holds them: an edit or a
    retirement waits for the import, grants of the same entitlement do not.
    """
    names = sorted({name for read in reads.values() for name in read})
    position = {name: index for index, name in enumerate(names, start=1)}
    queryset = model.objects.values_list("pk", *[column(name) for name in names])
    writes = model is plan.model
    errors = []
    for batch in _batches(sorted(reads)):
        rows = queryset.filter(pk__in=_any(batch, "bigint"))
        if writes:
            rows = lock_many(rows)
        else:
            share_ids(model, batch)
        now = {row[0]: row for row in rows}
        for pk in batch:
            row = now.get(pk)
            if row is not None and all(row[position[name]] == value for name, value in reads[pk].items()):
                continue
            errors += [
                RowError(line, key, f"{what} {CHANGED_MEANWHILE}") for line, key, what in plan.readers[(model, pk)]
            ]
    return errors


def _created_meanwhile(plan: Plan) -> list[RowError]:
    """New rows whose external id someone else has used since the file was checked (a query per batch);
    for grants also a live grant of the same entitlement given to the identity meanwhile."""
    noun = plan.model._meta.verbose_name
    errors = []
    for batch in _batches(list(plan.new_by_key)):
        taken = plan.model.objects.filter(external_id__in=_any(batch, "text"))
        taken = taken.order_by().values_list("external_id", flat=True)
        errors += [
            RowError(plan.lines[key], key, f"{noun} {key!r} was created since you checked it; check again")
            for key in taken
        ]
    if plan.entity == "grants":
        for batch in _batches(list(plan.new_by_key.items())):
            keys = {(grant.identity_id, grant.entitlement_id): key for key, grant in batch}
            held = (
                Grant.objects.filter(
                    status__in=GrantStatus.live(),
                    identity_id__in=_any(sorted({identity for identity, _ in keys}), "bigint"),
                    entitlement_id__in=_any(sorted({entitlement for _, entitlement in keys}), "bigint"),
                )
                .order_by()
                .values_list("identity_id", "entitlement_id")
            )
            errors += [
                RowError(
                    plan.lines[keys[pair]],
                    keys[pair],
                    "the identity was given this entitlement since you checked it; check again",
                )
                for pair in held
                if pair in keys
            ]
    return errors


def _changed_since_planned(plan: Plan) -> list[RowError]:
    """Every row of the file whose plan no longer holds, every existing row it read now locked.

    Rows are locked in the documented order (identity -> system -> entitlement -> grant, by id within
    each kind): the rows the file updates, and those its rows must find as they were (an owner still
    an active person, a system or entitlement still live, an identity not offboarded). Compared are
    the values the plan read and decided on, not `updated_at`: set-based writes (the expiry sweep)
    do not move it, and a touch of a column the import neither reads nor writes refuses nothing.
    """
    errors = []
    for model in _LOCK_ORDER:
        reads = plan.reads.get(model)
        if reads:
            errors += _recheck(plan, model, reads)
    errors = _out_of_scope_meanwhile(plan) + errors  # the plainer reason first, for the same row
    errors += _created_meanwhile(plan)
    if plan.entity == "grants":
        errors += _blocked_meanwhile(plan)
    return sorted(errors, key=lambda e: e.line)


def _out_of_scope_meanwhile(plan: Plan) -> list[RowError]:
    """The rows of a non-admin's file whose importer no longer answers for what they write: the scope
    was read before planning, without locks, and an owner handed over meanwhile must not be written
    to in their name. Asked once per model and batch, with every row of the check already locked."""
    if plan.scope is None:
        return []
    errors = []
    for model in _LOCK_ORDER:
        scoped = plan.scoped.get(model)
        if not scoped:
            continue
        for batch in _batches(sorted(scoped)):
            still = plan.scope.answers_for(model, _any(batch, "bigint"))
            errors += [
                RowError(line, key, f"{LOST[model].format(what=what)}: its owner {CHANGED_MEANWHILE}")
                for pk in batch
                if pk not in still
                for line, key, what in scoped[pk]
            ]
    return errors


def _blocked_meanwhile(plan: Plan) -> list[RowError]:
    """New grants that, with what their identities hold now (read under the import's locks), break an
    SoD "block" rule: a grant issued since the file was checked may have completed the pair."""
    rules = BlockRules()
    ruled = [(key, grant) for key, grant in plan.new_by_key.items() if grant.entitlement_id in rules.by_entitlement]
    if not ruled:
        return []
    held = rules.held_now({grant.identity_id for _, grant in ruled})
    for _, grant in ruled:  # the file's own rows count too: a pair may arrive in one file
        held[grant.identity_id].add(grant.entitlement_id)
    errors = []
    for key, grant in ruled:
        blocked = rules.broken_by(grant.entitlement_id, held[grant.identity_id] - {grant.entitlement_id})
        if blocked is not None:
            errors.append(RowError(plan.lines[key], key, f"{sod_message(blocked)}; check again"))
    return errors


_TAKEN = re.compile(r"Key \((?P<columns>[^)]*)\)=\((?P<values>.*)\) already exists")


def _taken_meanwhile(plan: Plan, exc: IntegrityError) -> RowError | None:
    """A unique key a row needs, taken by a change that had not committed when the rows were checked
    (the database refused the write): the same conflict, named by line where the key tells which.
    None for any other integrity error: that is a bug, not a race, and is raised as it is."""
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate != "23505" and not (sqlstate is None and "UNIQUE" in str(exc)):  # unique_violation (or SQLite's)
        return None
    diag = getattr(cause, "diag", None)
    match = _TAKEN.search(getattr(diag, "message_detail", None) or "")
    if match is None:
        return RowError(0, "", "another change took a key or a name this file needs since you checked it; check again")
    columns, values = [c.strip() for c in match["columns"].split(",")], match["values"]
    candidates = [*plan.new_by_key.values(), *(obj for obj, _ in plan.updates)]
    culprit = next((obj for obj in candidates if ", ".join(str(getattr(obj, c, "")) for c in columns) == values), None)
    key = portal_key(culprit) if culprit is not None else ""
    noun = plan.model._meta.verbose_name
    if columns == ["external_id"]:
        message = f"{noun} {values!r} was created since you checked it; check again"
    elif "name" in columns:
        message = f"a live {noun} named {getattr(culprit, 'name', values)!r} appeared since you checked it; check again"
    elif plan.entity == "grants":
        message = "the identity was given this entitlement since you checked it; check again"
    else:
        message = f"another {noun} took {match['columns']} ({values}) since you checked it; check again"
    return RowError(plan.lines.get(key, 0), key, message)


def _forget_ids(plan: Plan) -> None:
    """New objects as planned: `state_change` may run the write again after a deadlock, and ids
    from the rolled-back attempt must not be taken for rows that exist."""
    for level in plan.levels:
        for obj in level:
            obj.pk = None
            obj._state.adding, obj._state.db = True, None


@state_change
def _apply(plan: Plan, result: ImportResult, *, actor: ActorLike, file_name: str, progress: Progress | None) -> None:
    """The write phase, one transaction: lock and check what the plan read, then write the plan.

    An import never reverts a change made while its file was checked: if any row changed, the whole
    file is refused (ImportConflict) before anything is written.
    """
    _forget_ids(plan)
    conflicts = _changed_since_planned(plan)
    if conflicts:
        raise ImportConflict(conflicts)
    try:
        events = _write(plan, actor=actor, file_name=file_name, progress=progress)
    except IntegrityError as exc:
        taken = _taken_meanwhile(plan, exc)
        if taken is None:
            raise
        raise ImportConflict([taken]) from None
    events.append(
        EventSpec(
            AuditAction.IMPORT_APPLIED,
            Target("governance.import", result.sha256[:16], file_name[:200] or result.entity),
            {
                "entity": result.entity,
                "format": result.format,
                "file_name": file_name,
                "sha256": result.sha256,
                "rows": result.rows,
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
            },
        )
    )
    audit_events_record_many(actor=actor, events=events)


def import_apply(
    *,
    actor: ActorLike,
    entity: str,
    fmt: str,
    content: bytes,
    file_name: str = "",
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportResult:
    """Import one file of `entity` rows; all rows are written, or none (ImportRejected lists why).

    Rows are keyed by external_id: a new key creates, a known key updates only what differs, and
    an identical row is left alone. Owners may be defined in the same identities file. Every
    created or updated object gets a history row and an audit event; the import gets a summary
    event. A dry run validates and counts without writing. Rows are checked without holding locks;
    if a row changed before they are written, nothing is (ImportConflict, a kind of ImportRejected).
    """
    if entity not in ENTITIES:
        raise ValidationFailed(f"Unknown entity {entity!r}: choose {', '.join(ENTITIES)}.")
    if fmt not in FORMATS:
        raise ValidationFailed(f"Unknown format {fmt!r}: choose {', '.join(FORMATS)}.")
    with _one_import_at_a_time(), _no_cycle_collection():
        sha256 = hashlib.sha256(content).hexdigest()
        parsed = readers.read(content, fmt=fmt, allowed=allowed_columns(entity), required=REQUIRED_COLUMNS[entity])
        plan = plan_for(
            entity,
            parsed.rows,
            progress=progress,
            every=PROGRESS_EVERY,
            refused_identities=identities_not_for(acting_user(actor)),
            scope=import_scope(acting_user(actor)),  # an owner imports only what they answer for
        )
        errors = sorted(parsed.errors + plan.errors, key=lambda e: e.line)
        if errors:
            raise ImportRejected(errors)
        result = ImportResult(
            entity=entity,
            format=fmt,
            file_name=file_name,
            sha256=sha256,
            rows=plan.rows,
            created=plan.created,
            updated=plan.updated,
            unchanged=plan.unchanged,
            dry_run=dry_run,
            created_keys=tuple(itertools.islice(plan.new_by_key, CREATED_SHOWN)),
        )
        if dry_run or not result.changed:
            return result  # a no-op import leaves no trace: nothing saved, nothing audited
        _apply(plan, result, actor=actor, file_name=file_name, progress=progress)
    return result
