"""Write lanes: how the platform's write transactions take turns on the database.

Infrastructure beside ``db.py`` (no business rule here): :func:`write` is ``db.write()``
queued fairly behind this process's other workbench writes; :func:`hot_write` is the cheaper
transaction of the annotator hot path (next task, submit) on SQLite's long-lived connections,
which can also refuse to wait (:class:`WouldBlock`) when called on the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Iterator

import sqlalchemy as sa

from .db import Database, current_claim, mark_committed
from .services.fastsql import Raw


class FairLock:
    """A first-come-first-served lock.

    SQLite admits one writer at a time and makes the others poll (``busy_timeout``, sleeping up
    to 100 ms between tries), so under many concurrent annotators an unlucky request can lose
    every race for seconds. Queueing this process's write transactions here first hands the
    database lock over in arrival order; other processes still wait on ``busy_timeout``.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiters: deque[threading.Event] = deque()
        self._held = False

    def acquire(self) -> None:
        with self._guard:
            if not self._held:
                self._held = True
                return
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # ownership is handed over by release()

    def try_acquire(self) -> bool:
        """Take the lock only if it is free and nobody is queued for it."""
        with self._guard:
            if self._held:
                return False
            self._held = True
            return True

    def release(self) -> None:
        with self._guard:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._held = False


_LOCKS: dict[int, FairLock] = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def write(db: Database) -> Iterator[sa.Connection]:
    """``db.write()``, queued fairly behind this process's other workbench writes (SQLite)."""
    if not db.is_sqlite:
        with db.write() as conn:
            yield conn
        return
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(id(db), FairLock())
    lock.acquire()
    try:
        with db.write() as conn:
            yield conn
    finally:
        lock.release()


class WouldBlock(Exception):
    """An ``inline`` hot-path call found the database busy; nothing was done: run it on a thread."""


@contextlib.contextmanager
def hot_write(db: Database, inline: bool = False) -> Iterator[Raw]:
    """A write transaction for the submit/next hot path, as :func:`write` but cheaper on SQLite.

    On SQLite the process's workbench writes already queue on one :class:`FairLock`, so they
    share long-lived connections instead of taking one from the pool (and running the pool's
    checkout, reset and events) per transaction. The transaction is the same
    ``BEGIN IMMEDIATE`` … ``COMMIT`` as ``db.write()``, including marking a request's
    ``Idempotency-Key`` committed inside it. PostgreSQL uses ``db.write()`` as is.

    ``inline=True`` (SQLite) is for the caller's event-loop thread, which must never wait: if
    the lock is taken or queued for (in this process, or by another server process through
    :func:`process_lock`), or another connection (a bulk upload) holds the database's write
    lock, :class:`WouldBlock` is raised before anything ran.
    """
    if not db.is_sqlite:
        with db.write() as conn:
            yield Raw(conn)
        return
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(id(db), FairLock())
    if inline:
        if not lock.try_acquire():
            raise WouldBlock
    else:
        lock.acquire()
    shared = process_lock(db)
    if shared is not None:
        try:
            fcntl.flock(shared, fcntl.LOCK_EX | (fcntl.LOCK_NB if inline else 0))
        except BlockingIOError:
            lock.release()
            raise WouldBlock from None
        except BaseException:
            lock.release()
            raise
    try:
        conn = hot_connection(db, inline)
        with conn.begin():
            try:
                conn.connection.driver_connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if inline and exc.sqlite_errorname in ("SQLITE_BUSY", "SQLITE_LOCKED"):
                    raise WouldBlock from None
                raise
            yield Raw(conn)
            claim = current_claim.get()
            if claim is not None:
                mark_committed(conn, claim)
    finally:
        if shared is not None:
            fcntl.flock(shared, fcntl.LOCK_UN)
        lock.release()


def process_lock(db: Database) -> int | None:
    """A file descriptor to ``flock`` so that several server processes (``cynaps serve
    --workers N``) take turns on the workbench writes, or ``None`` (no database file).

    SQLite lets one writer in at a time and makes the others poll, sleeping 1, 2, 5, 10 … ms
    between tries; a blocked ``flock`` is woken by the kernel the moment the holder lets go.
    The file is ``<database>-workbench.lock`` beside the database.
    """
    fd = db.__dict__.get("_workbench_lock_fd")
    if fd is None:
        path = sa.engine.make_url(db.url).database
        fd = (
            -1
            if not path or path == ":memory:"
            else os.open(f"{path}-workbench.lock", os.O_RDWR | os.O_CREAT, 0o600)
        )
        db.__dict__["_workbench_lock_fd"] = fd
    return fd if fd >= 0 else None


def hot_connection(db: Database, inline: bool) -> sa.Connection:
    """This process's long-lived workbench connection to ``db`` (SQLite; one inline, one not).

    The DBAPI connection comes from ``db``'s pool (so it has the platform's PRAGMAs) and is
    wrapped in a private engine without ``db``'s ``begin`` hook: :func:`hot_write` issues
    ``BEGIN IMMEDIATE`` on the driver itself, sparing SQLAlchemy's statement machinery.
    """
    name = "_workbench_inline_conn" if inline else "_workbench_conn"
    conn = db.__dict__.get(name)
    if conn is not None and not conn.closed and not conn.invalidated:
        return conn
    pooled = db.engine.raw_connection()  # kept checked out for the life of the process
    driver = pooled.driver_connection
    if inline:  # answer SQLITE_BUSY at once instead of sleeping in the busy handler
        driver.execute("PRAGMA busy_timeout=0")
    engine = sa.create_engine(db.url, creator=lambda: driver, poolclass=sa.pool.StaticPool)
    conn = engine.connect().execution_options(write=True)
    conn.__dict__["_cynaps_pooled"] = pooled  # keep the pool's record alive with it
    db.__dict__[name] = conn
    return conn
