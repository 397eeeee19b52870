"""Import the inventory from CSV or JSON: validate every row, then write everything or nothing.

`import_apply` reads the file, plans it in memory (`governance.imports.plans`: one query per
model, no per-row queries), and refuses the whole file with every bad row if any row is bad.
Otherwise, in one transaction, it bulk-creates and bulk-updates in batches with their history
rows, and records one audit event per changed object plus one summary event in a single call.
Unchanged rows are neither saved nor audited, so importing the same file twice changes nothing.
"""

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone
from guardian.models import UserObjectPermission
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from audit.choices import AuditAction
from audit.services import Actor, ActorLike, EventSpec, Target, audit_events_record_many, hold_the_chain

from .. import policies
from ..errors import ValidationFailed
from ..imports import readers
from ..imports.plans import Plan, plan_for
from ..imports.readers import RowError
from ..imports.specs import BATCH_SIZE, ENTITIES, FORMATS, PROGRESS_EVERY, REQUIRED_COLUMNS, allowed_columns
from .delegation import drop_delegates

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


class ImportRejected(ValidationFailed):
    """At least one row is bad: nothing was written. `row_errors` lists every reason with its line."""

    def __init__(self, row_errors: list[RowError]):
        rows = len({(e.line, e.key) for e in row_errors if e.line})
        if rows:
            message = f"{rows} bad row{'s' if rows != 1 else ''} in the file: nothing was imported."
        else:
            message = "The file cannot be read as this kind of import: nothing was imported."
        super().__init__(message)
        self.row_errors = row_errors


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

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def _batches(items: list, size: int = BATCH_SIZE) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _history_user(actor: ActorLike):
    user = actor.user if isinstance(actor, Actor) else actor
    return user if getattr(user, "is_authenticated", False) else None


def _resolve_links(plan: Plan, obj: models.Model) -> None:
    """Point references at objects this import has just created (they have ids now)."""
    for attname, key in plan.links.get(id(obj), ()):
        setattr(obj, attname, plan.new_by_key[key].pk)


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
    # Rows are about to be written and locked: take the audit chain first (see hold_the_chain). Other
    # changes wait for the import's write phase; the checking of every row before it holds nothing.
    hold_the_chain()
    now = timezone.now()
    user = _history_user(actor)
    reason = f"import {file_name}"[:100]
    total, done, reported = plan.created + plan.updated, 0, 0

    def advance(count: int) -> None:
        nonlocal done, reported
        done += count
        if progress and (done - reported >= PROGRESS_EVERY or done == total):
            progress("written", done, total)
            reported = done

    for level in plan.levels:
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
    if changes:
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
        if plan.entity == "identities":
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


def _lock_imports() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_IMPORT_LOCK_KEY])


@transaction.atomic
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
    event. A dry run validates and counts without writing.
    """
    if entity not in ENTITIES:
        raise ValidationFailed(f"Unknown entity {entity!r}: choose {', '.join(ENTITIES)}.")
    if fmt not in FORMATS:
        raise ValidationFailed(f"Unknown format {fmt!r}: choose {', '.join(FORMATS)}.")
    _lock_imports()
    sha256 = hashlib.sha256(content).hexdigest()
    parsed = readers.read(content, fmt=fmt, allowed=allowed_columns(entity), required=REQUIRED_COLUMNS[entity])
    plan = plan_for(entity, parsed.rows, progress=progress, every=PROGRESS_EVERY)
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
    )
    if dry_run or not result.changed:
        return result  # a no-op import leaves no trace: nothing saved, nothing audited
    events = _write(plan, actor=actor, file_name=file_name, progress=progress)
    events.append(
        EventSpec(
            AuditAction.IMPORT_APPLIED,
            Target("governance.import", sha256[:16], file_name[:200] or entity),
            {
                "entity": entity,
                "format": fmt,
                "file_name": file_name,
                "sha256": sha256,
                "rows": result.rows,
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
            },
        )
    )
    audit_events_record_many(actor=actor, events=events)
    return result
