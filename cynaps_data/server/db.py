"""Engine construction, schema migrations and transactions (SQLite or PostgreSQL).

SQLite runs in WAL mode with ``synchronous=NORMAL``; every write transaction starts with
``BEGIN IMMEDIATE`` so that concurrent writers (threads or processes) queue on the database
lock instead of failing half-way through a read-then-write. Reads use plain ``BEGIN`` and never
block writers.

PostgreSQL (psycopg 3, ``postgresql://`` URLs) runs at READ COMMITTED; the paths that read and
then write shared state lock what they read: the project row (``SELECT ... FOR UPDATE``) and,
for ledger balances, a transaction-scoped advisory lock per ledger account
(:func:`lock_ledger_account`). Several platform processes may share one PostgreSQL database.

The schema is versioned with Alembic (``server/migrations``). :meth:`Database.create_all` runs
:func:`upgrade`: an empty database gets the current schema and is stamped with the newest
revision; an existing one is upgraded in place (a database made before migrations existed is
taken to be at revision ``0001``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from .tables import idempotency_keys, metadata

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE_REVISION = "0001"
_MIGRATION_LOCK = 7_202_407  # pg_advisory_xact_lock key serialising concurrent upgrades


def database_url(db: str | Path) -> str:
    """A SQLAlchemy URL from a URL or a SQLite file path (``postgresql://`` → psycopg 3)."""
    text = str(db)
    if "://" in text:
        for plain in ("postgresql://", "postgres://"):
            if text.startswith(plain):
                return "postgresql+psycopg://" + text[len(plain) :]
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


@dataclass(frozen=True)
class IdempotencyClaim:
    """The ``Idempotency-Key`` attempt a request runs under (set by the middleware)."""

    owner: str  # API key hash
    key: str
    token: str  # fencing token of this attempt


#: Set for the duration of a request carrying an Idempotency-Key; every write transaction of
#: that request marks the key committed inside the transaction (see ``middleware.Idempotency``).
current_claim: contextvars.ContextVar[IdempotencyClaim | None] = contextvars.ContextVar(
    "cynaps_idempotency_claim", default=None
)


class Database:
    """An engine plus the transaction helpers the services use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgresql = url.startswith("postgresql")
        if self.is_sqlite:
            private_sqlite_files(url)
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
        """Create or upgrade the schema in place (see :func:`upgrade`)."""
        upgrade(self.engine)

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction: committed on success, rolled back on any exception.

        Inside a request with an ``Idempotency-Key`` the key is marked committed in this same
        transaction; if another attempt took the key over meanwhile, this one rolls back (409).
        """
        with self.engine.connect().execution_options(write=True) as conn, conn.begin():
            yield conn
            claim = current_claim.get()
            if claim is not None:
                mark_committed(conn, claim)

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read-only snapshot."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def private_sqlite_files(url: str) -> None:
    """Create the SQLite file private to the platform's user (0600) before SQLite opens it.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode, so they are private
    too. An existing database (and its WAL/SHM) of ours is tightened to 0600.
    """
    name = url.split(":///", 1)[1] if ":///" in url else ""
    if not name or name.startswith(":memory:") or "mode=memory" in url:
        return
    path = Path(name.split("?", 1)[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            info = file.stat()
        except OSError:
            continue
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.chmod(file, 0o600)


def mark_committed(conn: sa.Connection, claim: IdempotencyClaim) -> None:
    from .problems import Problem

    t = idempotency_keys
    marked = conn.execute(
        t.update()
        .where(
            t.c.key_hash == claim.owner, t.c.idempotency_key == claim.key, t.c.claim == claim.token
        )
        .values(committed=True)
    ).rowcount
    if marked != 1:
        raise Problem(
            409,
            "idempotency_key_in_use",
            f"Idempotency-Key {claim.key!r} was taken over by a newer attempt; this one did nothing.",
            type="idempotency_error",
        )


def lock_ledger_account(conn: sa.Connection, account: str) -> None:
    """Serialise read-then-write use of one ledger account until the transaction ends.

    A no-op on SQLite, where every write transaction already holds the database lock.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:a, 0))"), {"a": account}
        )


def _alembic_config(conn: sa.Connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def schema_revision(engine: sa.Engine) -> str | None:
    """The Alembic revision the database is at (``None`` before any migration ran)."""
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` in one transaction (safe to call concurrently).

    Empty database: the current tables, stamped ``head``. Existing database: its pending
    migrations, then any table added to :mod:`tables` that needs no migration of its own.
    """
    from alembic import command

    with engine.connect().execution_options(write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        present = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
        config = _alembic_config(conn)
        if not present and revision == "head":
            metadata.create_all(conn)
            command.stamp(config, "head")
            return
        if present and "alembic_version" not in sa.inspect(conn).get_table_names():
            command.stamp(config, BASELINE_REVISION)
        command.upgrade(config, revision)
        if revision == "head":
            metadata.create_all(conn)
