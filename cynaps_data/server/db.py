"""Engine construction and transactions.

SQLite runs in WAL mode with ``synchronous=NORMAL``; every write transaction starts with
``BEGIN IMMEDIATE`` so that concurrent writers (threads or processes) queue on the database
lock instead of failing half-way through a read-then-write. Reads use plain ``BEGIN`` and never
block writers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from .tables import metadata


def database_url(db: str | Path) -> str:
    """A SQLAlchemy URL from a URL or a SQLite file path."""
    text = str(db)
    if "://" in text:
        if text.startswith("postgresql://"):
            return "postgresql+psycopg://" + text[len("postgresql://") :]
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


class Database:
    """An engine plus the transaction helpers the services use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = sa.create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=20,
                max_overflow=40,
            )
            self._install_sqlite_hooks()
        else:
            self.engine = sa.create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)

    def _install_sqlite_hooks(self) -> None:
        @sa.event.listens_for(self.engine, "connect")
        def _connect(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(self.engine, "begin")
        def _begin(conn) -> None:
            write = conn.get_execution_options().get("write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    def create_all(self) -> None:
        metadata.create_all(self.engine)

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self.engine.connect().execution_options(write=True) as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read-only snapshot."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
