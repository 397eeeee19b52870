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
from django.db.models import Expression, Model, QuerySet
from django.db.models.query import get_related_populators


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
        fetched = self._fetch(values)
        if fetched is None:
            return list(self.build(*values))
        rows, (_, _, compiler, converters) = fetched
        # As Django's own iteration: fields that convert what the driver returns (JSON, say) still do.
        return [tuple(row) for row in compiler.apply_converters(rows, converters)] if converters else rows

    def _fetch(self, values: tuple) -> tuple[list, tuple] | None:
        """The rows of a run and what `_compile` worked out (its SQL first, then its parameters), or
        None off PostgreSQL: there the caller builds and evaluates the queryset itself."""
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            return None
        compiled = self._compiled.get(connection.alias)
        if compiled is None:
            compiled = self._compiled[connection.alias] = self._compile(connection.alias, len(values))
        sql, params = compiled[0], compiled[1]
        bound = [values[param.index] if isinstance(param, Slot) else param for param in params]
        with connection.cursor() as cursor:
            cursor.execute(sql, bound)
            return cursor.fetchall(), compiled

    def _compile(self, alias: str, count: int) -> tuple:
        queryset = self.build(*(Slot(index) for index in range(count)))
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        converters = compiler.get_converters([column for column, _, _ in compiler.select[: compiler.col_count]])
        return sql, tuple(params), compiler, converters


class PreparedInstances(PreparedQuery):
    """`PreparedQuery` for a queryset of model instances (with `select_related` and `only`): its SQL
    and how its rows become instances are worked out once per process; each run binds the values
    and builds the instances as Django's own iteration does (`ModelIterable`, less what these
    querysets do not use: annotations, known related objects).

    Compiling the approval queue's cards' requests with their relations cost ~1 ms of CPU a page.
    Elsewhere than on PostgreSQL the queryset is built and read as usual.
    """

    def rows(self, *values) -> list[Model]:
        fetched = self._fetch(values)
        if fetched is None:
            return list(self.build(*values))
        rows, (_, _, compiler, model, init_list, start, end, populators) = fetched
        alias = connections[self.using].alias
        found = []
        for row in compiler.results_iter([rows]):
            obj = model.from_db(alias, init_list, row[start:end])
            for populator in populators:
                populator.populate(row, obj)
            found.append(obj)
        return found

    def _compile(self, alias: str, count: int) -> tuple:
        queryset = self.build(*(Slot(index) for index in range(count)))
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        if compiler.annotation_col_map or queryset._known_related_objects:
            raise ValueError("PreparedInstances reads no annotations nor known related objects")
        select, klass_info = compiler.select, compiler.klass_info
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        init_list = [column[0].target.attname for column in select[start:end]]
        populators = get_related_populators(klass_info, select, alias)
        return sql, tuple(params), compiler, klass_info["model"], init_list, start, end, populators
