"""Plain SQL on the DBAPI connection under a SQLAlchemy connection, for the hot paths.

SQLAlchemy's execution machinery costs ~40 µs per statement (compiled-cache lookup, result
metadata, events); SQLite's own work on the workbench statements is a few µs each. The
annotator hot path (submit, next task, per-task charge) therefore runs its statements on the
driver connection directly, *inside the transaction the SQLAlchemy connection began* (same
connection, same transaction, so it mixes freely with Core statements).

Statements are written once with ``:name`` parameters (sqlite3's named style) and rewritten to
``%(name)s`` for psycopg on PostgreSQL. Rows are plain tuples. JSON columns arrive as text on
SQLite and already decoded on PostgreSQL: :func:`json_value` takes either.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import orjson
import sqlalchemy as sa

_PARAM = re.compile(r"(?<![:\w]):(\w+)")


@lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    return _PARAM.sub(r"%(\1)s", sql)


class Raw:
    """``run(sql, params)`` on the driver connection of ``conn`` (inside ``conn``'s transaction)."""

    __slots__ = ("conn", "dbapi", "pg")

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.dbapi = conn.connection.driver_connection
        self.pg = conn.dialect.name == "postgresql"

    def run(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        """Execute one statement; returns the DBAPI cursor (``fetchone``/``fetchall``/``rowcount``)."""
        try:
            if self.pg:
                return self.dbapi.execute(_pyformat(sql), params or {})
            return self.dbapi.execute(sql, params or {})
        except self.conn.dialect.loaded_dbapi.Error as exc:
            raise self._wrapped(sql, params, exc) from exc

    def many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        """Execute one statement for each parameter set."""
        try:
            if self.pg:
                with self.dbapi.cursor() as cursor:
                    cursor.executemany(_pyformat(sql), rows)
            else:
                self.dbapi.executemany(sql, rows)
        except self.conn.dialect.loaded_dbapi.Error as exc:
            raise self._wrapped(sql, rows, exc) from exc

    def _wrapped(self, sql: str, params: Any, exc: Exception) -> Exception:
        """The driver's error as SQLAlchemy would raise it (``sa.exc.DataError``, …), so the
        app's exception handlers answer it as for any statement (a bad value: 422)."""
        return sa.exc.DBAPIError.instance(
            sql, params, exc, self.conn.dialect.loaded_dbapi.Error, dialect=self.conn.dialect
        )


def json_value(value: Any) -> Any:
    """A JSON column's value: decoded from text (SQLite), or as the driver gave it (PostgreSQL)."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value
