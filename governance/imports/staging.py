"""Set-based writes of an import on PostgreSQL: COPY, then SQL for the history rows.

`bulk_create_with_history` / `bulk_update_with_history` build every row twice in Python (the object
and its history row) and send them as parameters: most of an import's time. Here new rows take their
ids from the table's sequence and go into the table with one COPY; changed rows go to a temporary
staging table (for the transaction only) with one COPY and are merged with one UPDATE ... FROM. The
history (django-simple-history: the same columns, `history_type` "+" or "~", the same date, user
and reason) is then copied from the table as written with one INSERT ... SELECT.

Only for models whose columns COPY can take as Python values (identities: text, numbers, times,
booleans). Everything else, and SQLite, keeps the ORM path in `governance.services.imports`.
"""

from collections.abc import Sequence
from datetime import datetime

from django.db import connection, models
from psycopg import sql

from ..models import Identity

# Models written here (others: the ORM path).
STAGED: frozenset[type[models.Model]] = frozenset({Identity})


def can_stage(model: type[models.Model]) -> bool:
    return connection.vendor == "postgresql" and model in STAGED


def _history_columns(model: type[models.Model]) -> list[str]:
    """The model's columns that its history table copies (simple_history's tracked fields)."""
    return [field.attname for field in model.history.model.tracked_fields]


def _stage(cursor, name: str, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
    """A temporary table of `table`'s types for `columns`, filled with `rows` by one COPY."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    cursor.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            sql.Identifier(name), cols, sql.Identifier(table)
        )
    )
    with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(name), cols)) as copy:
        for row in rows:
            copy.write_row(row)


def _write_history(
    cursor,
    model: type[models.Model],
    joined: sql.Composable,
    params: list | None = None,
    *,
    history_type: str,
    user_id: int | None,
    reason: str,
    when: datetime,
) -> None:
    """One history row per row of `joined` (a FROM clause naming the written rows `t`, with `params`), as
    they now are."""
    history = model.history.model._meta.db_table
    tracked = _history_columns(model)
    cursor.execute(
        sql.SQL(
            "INSERT INTO {history} ({cols}, history_date, history_change_reason, history_type, history_user_id) "
            "SELECT {source}, %s, %s, %s, %s FROM {joined} ORDER BY t.{pk}"
        ).format(
            history=sql.Identifier(history),
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in tracked),
            source=sql.SQL(", ").join(sql.SQL("t.") + sql.Identifier(c) for c in tracked),
            joined=joined,
            pk=sql.Identifier(model._meta.pk.column),
        ),
        [when, reason, history_type, user_id, *(params or [])],
    )


def assign_ids(objs: list[models.Model], model: type[models.Model]) -> None:
    """Give new objects their ids from the table's sequence, in their order (the order an INSERT of
    them would take): references between them can be set before any is written, and all are
    written in one COPY (the foreign keys are checked at commit)."""
    if not objs:
        return
    with connection.cursor() as c:
        c.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [model._meta.db_table, model._meta.pk.column, len(objs)],
        )
        ids = sorted(pk for (pk,) in c.fetchall())
    for obj, pk in zip(objs, ids, strict=True):
        obj.__dict__[model._meta.pk.attname] = pk


def create_with_history(
    objs: list[models.Model], model: type[models.Model], *, user_id: int | None, reason: str, when: datetime
) -> None:
    """Insert `objs` (their ids assigned, `assign_ids`) with one COPY, and their "+" history rows
    from the table as written.

    `created_at`/`updated_at` are set to `when`, as the ORM's auto_now would to the moment of saving.
    """
    if not objs:
        return
    table = model._meta.db_table
    fields = model._meta.concrete_fields
    stamped = [f.attname for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)]
    for obj in objs:
        obj.__dict__.update(dict.fromkeys(stamped, when))
    attnames = [f.attname for f in fields]
    # As stored: the plan holds parsed values (aware times, ints, bools, text) that COPY adapts itself.
    rows = [tuple(map(obj.__dict__.__getitem__, attnames)) for obj in objs]
    cols = sql.SQL(", ").join(sql.Identifier(f.column) for f in fields)
    pk = sql.Identifier(model._meta.pk.column)
    with connection.cursor() as c, connection.wrap_database_errors:  # IntegrityError as the ORM raises it
        cursor = c.cursor  # psycopg's own: COPY
        with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), cols)) as copy:
            for row in rows:
                copy.write_row(row)
        for obj in objs:
            obj._state.adding, obj._state.db = False, connection.alias
        _write_history(
            cursor,
            model,
            sql.SQL("{} t WHERE t.{} = ANY(%s)").format(sql.Identifier(table), pk),
            [[obj.pk for obj in objs]],
            history_type="+",
            user_id=user_id,
            reason=reason,
            when=when,
        )


def update_with_history(
    objs: list[models.Model],
    model: type[models.Model],
    *,
    fields: Sequence[str],
    user_id: int | None,
    reason: str,
    when: datetime,
) -> None:
    """Set `fields` of the existing `objs` (the rows are locked already) and add their "~" history rows."""
    if not objs:
        return
    table = model._meta.db_table
    written = [model._meta.get_field(name) for name in fields]
    pk = model._meta.pk
    columns = [pk.column, *(f.column for f in written)]
    attnames = [pk.attname, *(f.attname for f in written)]
    rows = [tuple(map(obj.__dict__.__getitem__, attnames)) for obj in objs]
    stage = "import_stage_changed"
    with connection.cursor() as c, connection.wrap_database_errors:
        cursor = c.cursor
        _stage(cursor, stage, table, columns, rows)
        cursor.execute(
            sql.SQL("UPDATE {table} t SET {sets} FROM {stage} s WHERE t.{pk} = s.{pk}").format(
                table=sql.Identifier(table),
                sets=sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(f.column)) for f in written),
                stage=sql.Identifier(stage),
                pk=sql.Identifier(pk.column),
            )
        )
        _write_history(
            cursor,
            model,
            sql.SQL("{} t JOIN {} s ON s.{} = t.{}").format(
                sql.Identifier(table), sql.Identifier(stage), sql.Identifier(pk.column), sql.Identifier(pk.column)
            ),
            history_type="~",
            user_id=user_id,
            reason=reason,
            when=when,
        )
