"""Hand-written SQL for the few hot paths where building a query costs more than
running it.

The ORM compiles every query anew. For the chat turn's statements that is most of
their CPU: reading a session with its lead and location through
``select_related(...).get()`` cost 1.02 ms of CPU where the same SQL sent by hand,
with the instances built from its row, cost 0.19 ms. These helpers keep such SQL
true to the models: the columns come from the models' fields, values reach the
database through each field's own preparation (JSON, decimals, time zones) and
come back through its converters, so a migration that adds, drops or renames a
field changes the SQL with it.

Use them where a measurement says so; everywhere else the ORM is the way.

Each helper looks the connection up once (``_db``) and hands that to the fields:
``django.db.connection`` is a proxy that finds the thread's connection again on
every attribute read (1.5 us each), and a chat turn's statements read it about
seventy times.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)


def _db() -> BaseDatabaseWrapper:
    """This thread's default connection itself, not the proxy that finds it on every
    attribute read."""
    return connections[DEFAULT_DB_ALIAS]


@functools.cache
def quote(name: str) -> str:
    # Quoting depends on the name alone (every connection is PostgreSQL).
    return _db().ops.quote_name(name)


def column(model: type[Model], name: str) -> str:
    """The quoted column of ``model``'s field ``name``."""
    return quote(model._meta.get_field(name).column)


@dataclass(frozen=True)
class ModelColumns:
    """A model's concrete fields in declaration order, as columns of a SELECT and
    as the values of an instance built from a row."""

    model: type[Model]
    fields: tuple[Field, ...]
    # Per field, the converters the ORM applies to a value read from the database.
    converters: tuple[tuple[Callable[..., Any], ...], ...]

    def __len__(self) -> int:
        return len(self.fields)

    def select(self, alias: str) -> str:
        """``"alias"."column", ...`` for every field, in order."""
        table = quote(alias)
        return ", ".join(f"{table}.{quote(field.column)}" for field in self.fields)

    def instance(self, row: Sequence[Any], start: int = 0) -> Model:
        """The instance whose fields are ``row[start:start + len(self)]``, as the ORM
        would have loaded it (``Model.from_db``, converters applied)."""
        db = _db()
        values = list(row[start : start + len(self.fields)])
        for index, converters in enumerate(self.converters):
            for convert in converters:
                values[index] = convert(
                    values[index], self.fields[index].cached_col, db
                )
        return self.model.from_db(db.alias, self.attnames, values)

    @functools.cached_property
    def attnames(self) -> tuple[str, ...]:
        return tuple(field.attname for field in self.fields)


@functools.cache
def model_columns(
    model: type[Model], names: tuple[str, ...] | None = None
) -> ModelColumns:
    """All of ``model``'s concrete fields, or only those ``names`` (the others are
    deferred on the instances built, as with ``only()``; the primary key must be
    one of them). Either way in the model's order, which ``Model.from_db`` expects."""
    fields = tuple(
        model._meta.concrete_fields
        if names is None
        else sorted(
            (model._meta.get_field(name) for name in names),
            key=model._meta.concrete_fields.index,
        )
    )
    db = _db()
    return ModelColumns(
        model=model,
        fields=fields,
        converters=tuple(
            tuple(
                db.ops.get_db_converters(field.cached_col) + field.get_db_converters(db)
            )
            for field in fields
        ),
    )


@dataclass(frozen=True)
class InsertValues:
    """An unsaved instance's row: ``sql`` (``INSERT INTO table (columns) VALUES
    (placeholders)``) with ``params``, the primary key left to the database."""

    sql: str
    params: list[Any]


def insert_values(instance: Model) -> InsertValues:
    """What ``instance.save()`` would insert for a new row (defaults and
    ``auto_now_add`` applied), prepared by each field as the ORM prepares it."""
    sql, fields = _insert_statement(type(instance))
    db = _db()
    return InsertValues(
        sql=sql,
        params=[
            field.get_db_prep_save(field.pre_save(instance, True), db)
            for field in fields
        ],
    )


@functools.cache
def _insert_statement(model: type[Model]) -> tuple[str, tuple[Field, ...]]:
    meta = model._meta
    fields = tuple(field for field in meta.concrete_fields if not field.primary_key)
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders})",  # noqa: S608 - quoted identifiers, values are parameters
        fields,
    )


def insert_select(
    instance: Model, *, source: str, expressions: dict[str, str]
) -> Statement:
    """``INSERT INTO table (columns) SELECT ... FROM source``: the row
    ``insert_values(instance)`` would insert, except the fields of ``expressions``,
    whose values are those SQL expressions over ``source`` (one row inserted per
    row of ``source``: none when it is empty)."""
    meta = type(instance)._meta
    values: list[str] = []
    params: list[Any] = []
    _, fields = _insert_statement(type(instance))
    db = _db()
    for field in fields:
        if field.name in expressions:
            values.append(expressions[field.name])
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.pre_save(instance, True), db))
    columns = ", ".join(quote(field.column) for field in fields)
    return Statement(
        sql=f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608 - quoted identifiers, values are parameters
        f"SELECT {', '.join(values)} FROM {source}",
        params=params,
    )


def mark_saved(instance: M, pk: Any) -> M:
    """``instance`` now stands for the row the database stored under ``pk``."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS
    return instance


def update_assignments(
    model: type[Model],
    values: dict[str, Any],
    *,
    increments: dict[str, Any] | None = None,
) -> tuple[str, list[Any]]:
    """The ``SET`` list of an UPDATE of ``model``: each field of ``values`` set to its
    value (prepared by the field), each of ``increments`` increased by its amount."""
    meta = model._meta
    db = _db()
    assignments: list[str] = []
    params: list[Any] = []
    for name, value in values.items():
        field = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, db))
    for name, amount in (increments or {}).items():
        column = quote(meta.get_field(name).column)
        assignments.append(f"{column} = {column} + %s")
        params.append(amount)
    return ", ".join(assignments), params


@dataclass(frozen=True)
class Statement:
    """A statement and its parameters, to run with others (``fetch_batch``)."""

    sql: str
    params: Sequence[Any]


def fetch_batch(statements: Sequence[Statement]) -> list[list[tuple[Any, ...]]]:
    """The rows of each read-only statement, all sent in one round trip.

    With client-side binding (Django's default for psycopg, which these settings
    keep) the statements go out as one query of the simple protocol and come back
    as one result set each.
    """
    with _db().cursor() as cursor:
        cursor.execute(
            "; ".join(statement.sql for statement in statements),
            [param for statement in statements for param in statement.params],
        )
        results = [cursor.fetchall()]
        while cursor.nextset():
            results.append(cursor.fetchall())
    if len(results) != len(statements):
        raise ValueError(
            f"{len(statements)} statements returned {len(results)} result sets"
        )
    return results


@dataclass(frozen=True)
class RowRead:
    """A read-only query of at most one row of ``width`` columns, whose first column
    is never NULL, to run inside another statement (``reads_joined``): it reads the
    database as that statement found it, in the same round trip."""

    sql: str
    params: Sequence[Any]
    width: int


def reads_joined(reads: Sequence[RowRead]) -> tuple[str, str, list[Any]]:
    """What a statement's final SELECT adds to run ``reads``: its select list's
    columns, its FROM clause's joins (each read joined whether it found a row or
    not) and their parameters, in the order they go."""
    columns, joins, params = [], [], []
    for index, read in enumerate(reads):
        alias = quote(f"read_{index}")
        columns.append(f"{alias}.*")
        joins.append(f"LEFT JOIN ({read.sql}) {alias} ON TRUE")
        params.extend(read.params)
    return ", ".join(columns), " ".join(joins), params


def reads_split(
    row: Sequence[Any], start: int, reads: Sequence[RowRead]
) -> list[tuple[Any, ...] | None]:
    """The row each of ``reads`` found (None for none), from ``row[start:]``, which
    holds their columns and nothing more."""
    if len(row) - start != sum(read.width for read in reads):
        raise ValueError(
            f"{len(row) - start} columns for reads of "
            f"{sum(read.width for read in reads)}"
        )
    found: list[tuple[Any, ...] | None] = []
    for read in reads:
        values = tuple(row[start : start + read.width])
        found.append(None if values[0] is None else values)
        start += read.width
    return found


@dataclass(frozen=True)
class Ref:
    """A value the statement itself computes, ``sql`` over its earlier steps (a
    scalar subquery, say), where a step would otherwise take a parameter."""

    sql: str


def placeholder(value: Any) -> tuple[str, list[Any]]:
    """Where ``value`` goes in a statement: its ``Ref``'s SQL, or a placeholder with
    the value as its parameter."""
    if isinstance(value, Ref):
        return value.sql, []
    return "%s", [value]


@dataclass(frozen=True)
class Step:
    """One statement of a WITH query, ``name AS (sql)``: usually a data-modifying
    one whose RETURNING later steps or the final SELECT may read."""

    name: str
    sql: str
    params: Sequence[Any]


def with_steps(
    steps: Sequence[Step], select: str, params: Sequence[Any] = ()
) -> Statement:
    """``WITH step, step, ... select``: one statement, atomic by itself.

    PostgreSQL runs every data-modifying step to completion whether ``select``
    reads it or not, in an order of its choosing; they all see the database as it
    was when the statement began (and what earlier steps RETURN), so no two of them
    may change the same row.
    """
    names = [step.name for step in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"Step names must differ: {names}")
    return Statement(
        sql="WITH "
        + ", ".join(f"{step.name} AS ({step.sql})" for step in steps)
        + f" {select}",
        params=[*(param for step in steps for param in step.params), *params],
    )


def fetch_one(statement: Statement) -> tuple[Any, ...] | None:
    """The first row of ``statement``, or None.

    With prepared statements on (DATABASE_PREPARED_STATEMENTS, which sets the
    connection's ``prepare_threshold``), the statement goes out on a cursor that
    binds its parameters on the server and is prepared on the connection the first
    time it runs there: PostgreSQL then parses and plans it once, and its values
    are not quoted into the SQL. In one process, the database work of a chat turn
    (the customer's message read in and stored, the answer stored; two of its
    three statements go through here) took 1.72 instead of 1.87 ms of the
    process's CPU (median) and 1.47 instead of 1.67 ms of PostgreSQL's (mean),
    over 75 alternating blocks of 20 turns; lower in 51 and 45 of them. Two runs
    of 25 pairs of blocks of 100 turns: PostgreSQL's CPU 16% lower (lower in 22
    and 21 pairs), the process's median 0.13 and 0.24 ms lower (lower in 13
    and 16 pairs: it varies more from block to block).

    A prepared statement follows the brand's search_path: when it changes,
    PostgreSQL parses the statement again in the new schema. A rollback on the
    connection drops them all (psycopg deallocates them); the next run prepares
    again.

    Django's query log (DEBUG, or a test that captures queries) reads the SQL that
    psycopg leaves only on statements it does not prepare: while queries are
    logged, they go out unprepared.
    """
    db = _db()
    with db.cursor() as cursor:
        # The wrapper set the brand's search_path and keeps Django's error
        # translation; only the statement's own cursor changes.
        if db.connection.prepare_threshold is not None and not db.queries_logged:
            cursor.cursor.close()
            cursor.cursor = ServerBindingCursor(db.connection)
        cursor.execute(statement.sql, statement.params)
        return cursor.fetchone()
