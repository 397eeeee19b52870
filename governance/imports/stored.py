"""The identities as stored, for planning an import: one tuple per key, and which rows of a file are unchanged.

Re-importing what is stored (a nightly sync, an export sent back) is the common case: such a row is
found unchanged by comparing its raw cells with the stored values as the export writes them, without
parsing it or making a model instance for it. A cell is the same when it is the stored text (text the
parser keeps as it is), the export's text of the stored value (`exports.csv_cell`: times, escaped
text, references by key; a time may say "Z" for "+00:00"), or a text that parses to the stored
value: a column's few spellings (an empty status, "TRUE") are parsed once per file, not once per row.
A row whose stored values the planner would change or refuse (a person with an owner, a reference to
a machine, text with a bidi control) is never taken as unchanged: it goes through the planner like
any row that differs. Not checked again for an unchanged row: that a stored email is an address.
"""

from collections.abc import Iterable
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, models
from psycopg import postgres, pq

from ..choices import CredentialType, IdentityKind
from ..models import Identity
from .columns import BAD, ColumnParser, as_is
from .exports import csv_cell
from .specs import PORTAL_KEY_PREFIX

_UNSEEN = object()
_HUMAN = IdentityKind.HUMAN
# Cells compared as text: equal to a stored text that the parser keeps as it is.
_TEXT = frozenset({"name", "email", "team"})
_TIMES = frozenset({"last_rotated_at", "last_used_at"})
_REFERENCES = {
    "owner_external_id": "owner_id",
    "backup_owner_external_id": "backup_owner_id",
    "manager_external_id": "manager_id",
}
# The planner parses these for a person, then sets them to "none" (identity_create's rule).
_SET_FOR_PEOPLE = frozenset({"credential_type", "may_self_request"})


class StoredIdentities:
    """Every identity's `names` values by key (external id, or "portal:<id>"), loaded in one query;
    model instances only for the rows the planner works on."""

    def __init__(self, names: Iterable[str]):
        wanted = {"id", *names}
        self.names = [f.attname for f in Identity._meta.concrete_fields if f.attname in wanted]  # as from_db takes them
        at = {name: index for index, name in enumerate(self.names)}
        self.at = at
        pk, external_id = at["id"], at["external_id"]
        self.rows: dict[str, tuple] = {}
        self.key_by_id: dict[int, str] = {}
        for row in _fetch(Identity.objects.order_by().values_list(*self.names)):
            key = row[external_id] or f"{PORTAL_KEY_PREFIX}{row[pk]}"
            self.rows[key] = row
            self.key_by_id[row[pk]] = key
        self._objects: dict[str, Identity] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, key: str) -> Identity | None:
        """The stored identity as a model instance (the fields loaded; made once, then the same object)."""
        obj = self._objects.get(key)
        if obj is None:
            row = self.rows.get(key)
            if row is None:
                return None
            obj = self._objects[key] = Identity.from_db(connection.alias, self.names, row)
        return obj

    def value(self, key: str, name: str) -> Any:
        return self.rows[key][self.at[name]]

    def person(self, key: str) -> tuple[int, tuple[str, str]]:
        """The id of the identity keyed `key`, and its kind and status."""
        row, at = self.rows[key], self.at
        return row[at["id"]], (row[at["kind"]], row[at["status"]])


def _fetch(queryset: models.QuerySet) -> list[tuple]:
    """The rows of a `values_list` query. On PostgreSQL with its session in UTC (Django's, with USE_TZ),
    times are read by psycopg's C loader: Django's own (a Python subclass) costs most of reading 100,000
    identities, for the same values (aware, in UTC)."""
    if connection.vendor != "postgresql" or not settings.USE_TZ:
        return list(queryset)
    query, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own; its adapters are this cursor's alone
        oid = postgres.types["timestamptz"].oid
        raw.adapters.register_loader(oid, psycopg.adapters.get_loader(oid, pq.Format.TEXT))
        cursor.execute(query, params)
        return cursor.fetchall()


# How a column's cell is compared (see the module's docstring).
_REFERENCE, _TEXT_CELL, _TIME, _PARSED = range(4)


class UnchangedRows:
    """Tells, without parsing a row, that the file's row is the stored row (see the module's docstring)."""

    def __init__(self, stored: StoredIdentities, parser: ColumnParser):
        self.stored, self.parser = stored, parser
        at = stored.at
        self.pk, self.kind = at["id"], at["kind"]
        self.owner, self.backup, self.manager = at["owner_id"], at["backup_owner_id"], at["manager_id"]
        self.credential, self.self_request = at["credential_type"], at["may_self_request"]
        # column -> (how its cell is compared, where its value is in a stored row)
        self.columns: dict[str, tuple[int, int]] = {}
        for column in parser.parsers:
            if column in _REFERENCES:
                self.columns[column] = (_REFERENCE, at[_REFERENCES[column]])
            else:
                how = _TEXT_CELL if column in _TEXT else _TIME if column in _TIMES else _PARSED
                self.columns[column] = (how, at[column])
        self._written: dict[Any, str] = {}  # the export's text of each stored time met
        self._people = {row[self.pk] for row in stored.rows.values() if row[self.kind] == _HUMAN}  # their ids

    def same(self, key: str, values: dict[str, Any]) -> bool:
        """True if the row keyed `key` (a stored key) holds what is stored, and the planner would take it as is."""
        row = self.stored.rows[key]
        if not self._plannable(row):
            return False
        human = row[self.kind] == _HUMAN
        columns, memos, key_by_id, written = self.columns, self.parser.memo, self.stored.key_by_id, self._written
        for column, raw in values.items():
            how_at = columns.get(column)
            if how_at is None:
                continue  # external_id (looked up already) and the names beside references
            if type(raw) is not str:
                return False  # JSON values: the planner decides
            how, at = how_at
            value = row[at]
            if how == _TEXT_CELL:
                # The stored text (or its spreadsheet-safe export), if the parser keeps it as it is.
                written_as = raw == value or (raw[:1] == "'" and raw == csv_cell(value))
                if written_as and (value or column != "name") and as_is(value):
                    continue
            elif how == _REFERENCE:
                ref = key_by_id.get(value, "") if value is not None else ""
                if raw == ref or raw == csv_cell(ref):
                    continue
                return False
            elif human and column in _SET_FOR_PEOPLE:
                if self.parser.cell(column, raw) is BAD:  # any valid cell: the planner sets "none"
                    return False
                continue
            elif how == _TIME:
                text = written.get(value)
                if text is None:
                    text = written[value] = csv_cell(value)
                if raw == text or (raw[-1:] == "Z" and text[-6:] == "+00:00" and raw[:-1] == text[:-6]):
                    continue  # as the export writes it, or with "Z" for UTC
            # Otherwise the parser decides, once per distinct text of the column.
            parsed = memos[column].get(raw, _UNSEEN)
            if parsed is _UNSEEN:
                parsed = self.parser.cell(column, raw)
            if parsed != value:
                return False
        return True

    def _plannable(self, row: tuple) -> bool:
        """False for stored values the planner would change or refuse (data that never came through it)."""
        if row[self.kind] == _HUMAN:
            if row[self.owner] is not None or row[self.backup] is not None:
                return False  # "a person has no owner"
            if row[self.credential] != CredentialType.NONE or row[self.self_request]:
                return False  # the planner would set them to none
        if row[self.manager] is not None and row[self.manager] == row[self.pk]:
            return False  # "an identity cannot be its own manager"
        people = self._people
        for ref in (row[self.owner], row[self.backup], row[self.manager]):
            if ref is not None and ref not in people:
                return False  # "must be a human identity"
        return True
