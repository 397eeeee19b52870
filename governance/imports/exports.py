"""Read the inventory out in the import's columns: CSV cells or JSON values, streamed in chunks.

An export re-imported is a no-op: the same columns, references by external id (or "portal:<id>"
for objects created in the portal), dates in ISO 8601 with microseconds, durations in hours.
"""

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from audit.exports import csv_lines, spreadsheet_safe

from ..models import Entitlement, Grant, Identity, System
from .cells import hours_text
from .specs import PORTAL_KEY_PREFIX, REFERENCE_NAMES, export_columns

CHUNK = 2_000


def _key(external_id: str | None, pk: int | None) -> str | None:
    if pk is None:
        return None
    return external_id or f"{PORTAL_KEY_PREFIX}{pk}"


# Per entity: columns read straight from a field (column -> field), and references (column -> relation).
_FIELDS: dict[str, dict[str, str]] = {
    "identities": {
        c: c
        for c in (
            "name", "kind", "status", "email", "team", "credential_type", "secret_location",
            "last_rotated_at", "rotation_period_days", "last_used_at", "may_self_request",
        )
    },
    "systems": {c: c for c in ("name", "description", "criticality", "connector")},
    "entitlements": {
        **{
            c: c
            for c in (
                "name", "business_purpose", "risk_tier", "requestable", "justification_required", "ticket_required",
                "auto_approve_machines", "break_glass_eligible", "allowed_identity_kinds", "review_cadence_days",
                "approval_stages",
            )
        },
        "max_duration_hours": "max_duration",
    },
    "grants": {c: c for c in ("kind", "expires_at", "granted_at", "last_used_at")},
}  # fmt: skip
_REFERENCES: dict[str, dict[str, str]] = {
    "identities": {
        "owner_external_id": "owner",
        "backup_owner_external_id": "backup_owner",
        "manager_external_id": "manager",
    },
    "systems": {"owner_external_id": "owner"},
    "entitlements": {"system_external_id": "system", "owner_external_id": "owner"},
    "grants": {"identity_external_id": "identity", "entitlement_external_id": "entitlement"},
}
_QUERYSETS = {
    "identities": lambda: Identity.objects.all(),
    "systems": lambda: System.objects.all(),
    "entitlements": lambda: Entitlement.objects.all(),
    # Grants in force only (active and not past expiry, even before the sweep): the export describes
    # access that exists, as the importer expects it.
    "grants": lambda: Grant.objects.in_force(),
}


def export_records(entity: str) -> Iterator[dict[str, Any]]:
    """The inventory's rows for `entity` as dicts keyed by the import's columns (Python values), one query."""
    fields, references = _FIELDS[entity], _REFERENCES[entity]
    names = {column: field for _after, column, field in REFERENCE_NAMES[entity]}
    wanted = ["id", "external_id", *fields.values(), *names.values()]
    for relation in references.values():
        wanted += [f"{relation}_id", f"{relation}__external_id"]
    rows = _QUERYSETS[entity]().order_by("id").values(*wanted)
    for row in rows.iterator(chunk_size=CHUNK):
        record = {"external_id": _key(row["external_id"], row["id"])}
        for column, relation in references.items():
            record[column] = _key(row[f"{relation}__external_id"], row[f"{relation}_id"])
        for column, name in fields.items():
            record[column] = row[name]
        for column, field in names.items():  # what the keys stand for, for people reading it
            record[column] = row[field]
        yield record


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "total_seconds"):
        return hours_text(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ";".join(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def csv_cell(value: Any) -> str:
    """The text the CSV export writes for a stored value (escaped as `csv_lines` escapes it): the
    importer takes a cell equal to it as that value unchanged, without parsing it."""
    return spreadsheet_safe(_cell(value))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()  # all of it: DjangoJSONEncoder would cut microseconds
    if hasattr(value, "total_seconds"):
        text = hours_text(value)
        return int(text) if text.isdigit() else float(Decimal(text))
    return value


def csv_rows(entity: str) -> tuple[list[str], Iterator[list[str]]]:
    """Header and rows of cells (not yet spreadsheet-escaped: audit.exports does that)."""
    columns = export_columns(entity)
    return columns, ([_cell(record[c]) for c in columns] for record in export_records(entity))


def csv_chunks(entity: str) -> Iterable[str]:
    """CSV text, escaped so a spreadsheet never runs a cell (audit.exports.csv_lines)."""
    header, rows = csv_rows(entity)
    return csv_lines(header, rows)


def json_chunks(entity: str) -> Iterator[str]:
    """A JSON list of objects with the import's keys, one object per line (for programs: no names)."""
    columns = export_columns(entity, with_names=False)
    first = True
    yield "["
    for record in export_records(entity):
        item = {c: _json_value(record[c]) for c in columns}
        yield ("\n" if first else ",\n") + json.dumps(item, cls=DjangoJSONEncoder, ensure_ascii=False)
        first = False
    yield "\n]\n"
