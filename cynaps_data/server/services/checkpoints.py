"""SQLite WAL checkpoints of upload batches, moved off the request's critical path.

In WAL mode a commit appends pages to the write-ahead log; a *checkpoint* copies them into the
database file and syncs both files (``synchronous=NORMAL``). SQLite runs one inside the commit
that takes the log past 1,000 pages, i.e. after every upload batch, and its two ``fsync`` calls
were ~60% of a batch's commit time here. For an upload batch instead:

1. :func:`defer` turns the automatic checkpoint off on the batch's connection for its commit
   (the setting is restored when the connection goes back to the pool);
2. :func:`start` runs a ``PASSIVE`` checkpoint on its own connection in a background thread
   once the batch committed (it never blocks readers or writers);
3. :func:`wait`, called before the next batch opens its write transaction, waits for that
   checkpoint, so the next write finds the log fully copied and starts it over: the log stays
   about one batch long, as with automatic checkpoints.

Durability is unchanged: committed transactions are in the log either way, and a checkpoint
syncs as before. Other databases (PostgreSQL) and in-memory SQLite are left alone.
"""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import sqlalchemy as sa

from ..db import Database

_INFO_KEY = "cynaps_wal_autocheckpoint"
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pending: dict[str, Future] = {}


def _path(db: Database) -> str | None:
    if not db.is_sqlite:
        return None
    path = db.engine.url.database
    return path if path and path != ":memory:" and not path.startswith("file:") else None


def _restore_on_checkin(dbapi_connection: sqlite3.Connection, record: object) -> None:
    previous = record.info.pop(_INFO_KEY, None)  # type: ignore[attr-defined]
    if previous is not None and dbapi_connection is not None:
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint = {int(previous)}")


def defer(db: Database, conn: sa.Connection) -> None:
    """No automatic checkpoint when ``conn``'s transaction commits (call inside it)."""
    if _path(db) is None:
        return
    with _lock:
        if not sa.event.contains(db.engine, "checkin", _restore_on_checkin):
            sa.event.listen(db.engine, "checkin", _restore_on_checkin)
    fairy = conn.connection
    driver = fairy.driver_connection
    if _INFO_KEY not in fairy.info:
        fairy.info[_INFO_KEY] = driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    driver.execute("PRAGMA wal_autocheckpoint = 0")


def _checkpoint(path: str) -> None:
    try:
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    except sqlite3.Error:
        return
    try:
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error:
        pass  # a later checkpoint (or SQLite's automatic one) copies the pages instead
    finally:
        connection.close()


def start(db: Database) -> None:
    """Checkpoint in the background what the last upload batch committed."""
    path = _path(db)
    if path is None:
        return
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cynaps-checkpoint")
        _pending[path] = _pool.submit(_checkpoint, path)


def wait(db: Database) -> None:
    """Wait for the background checkpoint of the previous upload batch, if any."""
    path = _path(db)
    if path is None:
        return
    with _lock:
        pending = _pending.get(path)
    if pending is not None:
        pending.result()
