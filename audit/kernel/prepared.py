"""Queries every page runs, their SQL built by Django once per process instead of at every run.

Django compiles a queryset into SQL each time it is evaluated: 0.5-1.5 ms of CPU for the few queries
every signed-in page runs (the session, the user with their identity and groups, the menu's counts),
several times what PostgreSQL takes to run them. A `PreparedQuery` builds its queryset once with
`Slot`s where the values go, keeps the SQL, and at each run binds the values and reads the rows
through a plain cursor (still counted by `CaptureQueriesContext` and every execute wrapper).

Only for queries whose shape does not depend on their values. On other databases than PostgreSQL the
queryset is built and evaluated as usual: their drivers return values Django still has to convert.
"""

from collections.abc import Callable

from django.db import connections
from django.db.models import Expression, QuerySet


class Slot(Expression):
    """The place of the `index`-th value of a `PreparedQuery` run, where a literal would be."""

    def __init__(self, index: int, output_field=None):
        super().__init__(output_field=output_field)
        self.index = index

    def as_sql(self, compiler, connection):
        return "%s", [self]

    def __repr__(self):
        return f"Slot({self.index})"


class PreparedQuery:
    """`build(*values)` returns a `values_list()` queryset; `rows(*values)` its rows as tuples.

    On PostgreSQL `build` is called once per database alias, with a `Slot` for each value.
    """

    def __init__(self, build: Callable[..., QuerySet], *, using: str = "default"):
        self.build = build
        self.using = using
        self._compiled: dict[str, tuple] = {}

    def rows(self, *values) -> list[tuple]:
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            return list(self.build(*values))
        compiled = self._compiled.get(connection.alias)
        if compiled is None:
            compiled = self._compiled[connection.alias] = self._compile(connection.alias, len(values))
        sql, params, compiler, converters = compiled
        bound = [values[param.index] if isinstance(param, Slot) else param for param in params]
        with connection.cursor() as cursor:
            cursor.execute(sql, bound)
            rows = cursor.fetchall()
        # As Django's own iteration: fields that convert what the driver returns (JSON, say) still do.
        return [tuple(row) for row in compiler.apply_converters(rows, converters)] if converters else rows

    def _compile(self, alias: str, count: int):
        queryset = self.build(*(Slot(index) for index in range(count)))
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        converters = compiler.get_converters([column for column, _, _ in compiler.select[: compiler.col_count]])
        return sql, tuple(params), compiler, converters
