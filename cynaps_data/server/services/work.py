"""Assignment, judgements, skips and expert review: the annotator-facing side of the platform.

Invariants (kept under concurrency because every call here is one ``BEGIN IMMEDIATE``
transaction on SQLite, row locks on PostgreSQL):

- no annotator judges a task twice (unique ``(task_id, annotator_id)``, and assignment skips
  tasks the annotator has judged, skipped or holds);
- no task gets more judgements than it needs: a task is handed out only while
  ``n_judgements + live assignments < needed``;
- an assignment not answered within ``assignment_ttl_seconds`` expires and the task is handed
  to someone else; a skip releases it at once and the task is never offered to that annotator
  again.

Visibility: an annotator or expert on a customer's team works only on that customer's projects
(platform-pool members, such as the sandbox workforce, on every project). Annotators see only
their own assignment: task data, instructions and labels, never gold and never other
annotators' labels. Experts see only disputed tasks of those projects, with every vote.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from functools import cache
from typing import Any

import orjson
import sqlalchemy as sa

from ...types import get_type
from .. import pg_assign
from ..db import Database, current_claim
from ..db import _mark_committed as mark_committed
from ..problems import Problem, forbidden, invalid, not_found
from ..tables import VOTE_SEPARATOR, assignments, judgements, projects, skips, tasks
from . import billing
from . import projects as project_service
from .accounts import Principal
from .fastsql import Raw, json_value
from .quality import Decision, decide

MAX_DURATION = 7 * 24 * 3600.0


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
def _write(db: Database) -> Iterator[sa.Connection]:
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
def _hot_write(db: Database, inline: bool = False) -> Iterator[Raw]:
    """A write transaction for the submit/next hot path, as :func:`_write` but cheaper on SQLite.

    On SQLite the process's workbench writes already queue on one :class:`FairLock`, so they
    share long-lived connections instead of taking one from the pool (and running the pool's
    checkout, reset and events) per transaction. The transaction is the same
    ``BEGIN IMMEDIATE`` … ``COMMIT`` as ``db.write()``, including marking a request's
    ``Idempotency-Key`` committed inside it. PostgreSQL uses ``db.write()`` as is.

    ``inline=True`` (SQLite) is for the caller's event-loop thread, which must never wait: if
    the lock is taken or queued for (in this process, or by another server process through
    :func:`_process_lock`), or another connection (a bulk upload) holds the database's write
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
    shared = _process_lock(db)
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
        conn = _hot_connection(db, inline)
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


def _process_lock(db: Database) -> int | None:
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


def _hot_connection(db: Database, inline: bool) -> sa.Connection:
    """This process's long-lived workbench connection to ``db`` (SQLite; one inline, one not).

    The DBAPI connection comes from ``db``'s pool (so it has the platform's PRAGMAs) and is
    wrapped in a private engine without ``db``'s ``begin`` hook: :func:`_hot_write` issues
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


_PROJECT_COLUMNS = (
    projects.c.name.label("project_name"),
    projects.c.owner_id,
    projects.c.state,
    projects.c.annotation_type,
    projects.c.labels,
    projects.c.instructions,
    projects.c.quality_settings,
)


def _visible_projects(principal: Principal, *states: str):
    """Project ids this annotator/expert may work on: its team owner's, or all (platform pool)."""
    query = sa.select(projects.c.id).where(projects.c.state.in_(states or ("active", "review")))
    if principal.owner_id is not None:
        query = query.where(projects.c.owner_id == principal.owner_id)
    return query


def _require_role(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise forbidden(f"This endpoint is for {' or '.join(roles)} keys, not {principal.role}.")


def _not_assigned(task_id: int) -> Problem:
    return Problem(
        409,
        "not_assigned",
        f"Task {task_id} is not assigned to you (or the assignment expired, or you already judged it "
        "with another label). Ask for the next task with GET /v1/annotator/next.",
        type="invalid_state_error",
    )


def _task_view(row: Any, expires_at: float) -> dict:
    """What an annotator sees of an assigned task (``row``: task columns + project columns)."""
    return {
        "object": "assignment",
        "task_id": row.id,
        "project_id": row.project_id,
        "project_name": row.project_name,
        "annotation_type": row.annotation_type,
        "labels": row.labels,
        "instructions": row.instructions,
        "data": orjson.loads(row.data),
        "suggestions": orjson.loads(row.predictions) if row.predictions else None,
        "expires_at": expires_at,
    }


def _with_project(*where: Any):
    """Task columns joined with the project columns a task view needs."""
    return (
        sa.select(tasks, *_PROJECT_COLUMNS)
        .join(projects, projects.c.id == tasks.c.project_id)
        .where(*where)
    )


# The hot path (next task, submit) as plain SQL run on the driver connection (``fastsql``):
# building and executing Core statements per call cost several times SQLite's own work.
# Rows are tuples; the comment above each statement names its columns.
# (t.id, t.project_id, t.data, t.predictions, project_name, annotation_type, labels, instructions)
_TASK_VIEW_SQL = (
    "SELECT t.id, t.project_id, t.data, t.predictions, p.name, p.annotation_type,"
    " p.labels, p.instructions FROM tasks t JOIN projects p ON p.id = t.project_id WHERE t.id = :task"
)
_SWEEP_SQL = "DELETE FROM assignments WHERE expires_at <= :now"
_ASSIGN_SQL = (
    "INSERT INTO assignments (task_id, annotator_id, project_id, expires_at)"
    " VALUES (:task, :me, :project, :expires)"
)
_RELEASE_SQL = "DELETE FROM assignments WHERE task_id = :task AND annotator_id = :me"
# (expires_at, project_id, needed, n_judgements, state, annotation_type, labels, quality_settings, owner_id)
_SUBMIT_SQL = (
    "SELECT a.expires_at, t.project_id, t.needed, t.n_judgements, p.state, p.annotation_type, p.labels,"
    " p.quality_settings, p.owner_id FROM assignments a JOIN tasks t ON t.id = a.task_id"
    " JOIN projects p ON p.id = t.project_id WHERE a.task_id = :task AND a.annotator_id = :me"
)
_VOTES_SQL = "SELECT value FROM judgements WHERE task_id = :task AND role = 'annotator' ORDER BY id"
_UPDATE_TASK_SQL = (
    "UPDATE tasks SET n_judgements = :n, needed = :needed, status = :status,"
    " agreement = :agreement, final_label = :final, label_source = :source, updated_at = :now,"
    " vote_values = vote_values || :vote_value, vote_workers = vote_workers || :vote_worker"
    " WHERE id = :task"
)
_INSERT_JUDGEMENT_SQL = (
    "INSERT INTO judgements (task_id, project_id, annotator_id, role, value, duration, created_at,"
    " billed, paid, origin) VALUES (:task, :project, :me, 'annotator', :value, :duration, :now,"
    " FALSE, FALSE, 'platform')"
)
_LOCK_TASK_SQL = "SELECT id FROM tasks WHERE id = :task FOR UPDATE"
_PENDING_SQL = "SELECT id FROM tasks WHERE project_id = :project AND status = 'pending' LIMIT 1"


def _lock_task(conn: sa.Connection, task_id: int) -> None:
    """Serialise judgements on one task until commit (PostgreSQL; SQLite's write transaction
    already holds the database lock), so concurrent submits each see the other's vote."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(_LOCK_TASK_SQL), {"task": task_id})


SWEEP_INTERVAL_SECONDS = 1.0
_last_sweep: dict[str, float] = {}


def _sweep(db: Raw, now: float) -> None:
    """Delete expired assignments, at most once a second per database (and process).

    Only garbage collection: an expired assignment no longer counts as live (the candidate query
    compares ``expires_at``) and submitting on it is refused. Until swept, its former holder is
    not offered that task again.
    """
    url = db.conn.engine.url.database or ""
    if now - _last_sweep.get(url, 0.0) >= SWEEP_INTERVAL_SECONDS:
        _last_sweep[url] = now
        db.run(_SWEEP_SQL, {"now": now})


@cache
def _queue_sql(team: bool, one_project: bool) -> tuple[str, str]:
    """``(held, projects)`` statements for a team or pool member, on one or all projects.

    held: ``(task_id, expires_at)``; projects: ``(id, name, annotation_type, labels, instructions)``.
    """
    scope = (" AND p.owner_id = :owner" if team else "") + (
        " AND p.id = :project" if one_project else ""
    )
    held = (
        "SELECT a.task_id, a.expires_at FROM assignments a JOIN projects p ON p.id = a.project_id"
        f" WHERE a.annotator_id = :me AND a.expires_at > :now AND p.state = 'active'{scope} LIMIT 1"
    )
    active = (
        "SELECT p.id, p.name, p.annotation_type, p.labels, p.instructions"
        f" FROM projects p WHERE p.state = 'active'{scope} ORDER BY p.created_at, p.id"
    )
    return held, active


# One project at a time: the equality on (project_id, status) lets the index hand out tasks in
# id order and stop at the first fit (an IN over projects would sort every pending task first).
# (id, data, predictions)
_CANDIDATE_SQL = (
    "SELECT t.id, t.data, t.predictions FROM tasks t WHERE t.project_id = :pid AND t.status = 'pending'"
    " AND t.n_judgements"
    " + (SELECT count(*) FROM assignments a WHERE a.task_id = t.id AND a.expires_at > :now) < t.needed"
    " AND NOT EXISTS (SELECT 1 FROM judgements j WHERE j.task_id = t.id AND j.annotator_id = :me)"
    " AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.task_id = t.id AND s.annotator_id = :me)"
    " AND NOT EXISTS (SELECT 1 FROM assignments m WHERE m.task_id = t.id AND m.annotator_id = :me)"
    " ORDER BY t.id LIMIT 1"
)


def _view(
    task_id: int, project: tuple, data: str, predictions: str | None, expires_at: float
) -> dict:
    """What an annotator sees of an assigned task (``project``: id, name, type, labels, instructions)."""
    return {
        "object": "assignment",
        "task_id": task_id,
        "project_id": project[0],
        "project_name": project[1],
        "annotation_type": project[2],
        "labels": json_value(project[3]),
        "instructions": project[4],
        "data": orjson.loads(data),
        "suggestions": orjson.loads(predictions) if predictions else None,
        "expires_at": expires_at,
    }


def _assign_next(
    db: Raw, principal: Principal, ttl: float, now: float, project_id: str | None
) -> dict | None:
    """Inside a write transaction: the annotator's live assignment, or a new one, or ``None``.

    New work comes from the oldest active project first, lowest task id first.
    """
    me = principal.account_id
    held_sql, active_sql = _queue_sql(principal.owner_id is not None, project_id is not None)
    params: dict[str, Any] = {"me": me, "now": now}
    if principal.owner_id is not None:
        params["owner"] = principal.owner_id
    if project_id is not None:
        params["project"] = project_id
    held = db.run(held_sql, params).fetchone()
    if held is not None:
        row = db.run(_TASK_VIEW_SQL, {"task": held[0]}).fetchone()
        return _view(row[0], (row[1], *row[4:]), row[2], row[3], held[1])
    _sweep(db, now)
    for project in db.run(active_sql, params).fetchall():
        task = (  # PostgreSQL: SKIP LOCKED and a re-check, safe across processes (pg_assign.py)
            pg_assign.candidate(db, project[0], me, now)
            if db.pg
            else db.run(_CANDIDATE_SQL, {"pid": project[0], "me": me, "now": now}).fetchone()
        )
        if task is not None:
            expires_at = now + ttl
            db.run(
                _ASSIGN_SQL,
                {"task": task[0], "me": me, "project": project[0], "expires": expires_at},
            )
            return _view(task[0], project, task[1], task[2], expires_at)
    return None


def next_task(
    db: Database,
    principal: Principal,
    ttl: float,
    project_id: str | None = None,
    *,
    inline: bool = False,
) -> dict | None:
    """Assign the next task to an annotator (or return its live assignment); ``None`` if none.

    ``inline``: see :func:`_hot_write` (may raise :class:`WouldBlock`).
    """
    _require_role(principal, "annotator")
    with _hot_write(db, inline) as raw:
        return _assign_next(raw, principal, ttl, time.time(), project_id)


def _parse_duration(body: dict) -> float | None:
    duration = body.get("duration")
    if duration is None:
        return None
    if (
        isinstance(duration, bool)
        or not isinstance(duration, (int, float))
        or not 0 <= duration <= MAX_DURATION
    ):
        raise invalid(f"duration must be seconds between 0 and {MAX_DURATION:g}", param="duration")
    return float(duration)


def _settle_if_needed(db: Raw, project_id: str, state: str) -> None:
    """Run the project-state check only when it can change something (no pending task left).

    ``projects.refresh_state`` keeps an active project active while any task is pending, so
    the full count is skipped on the hot path.
    """
    if state == "active" and db.run(_PENDING_SQL, {"project": project_id}).fetchone() is not None:
        return
    project = db.conn.execute(sa.select(projects).where(projects.c.id == project_id)).one()
    project_service.settle(db.conn, project)


# (value, status, annotation_type, labels) of the caller's own judgement on a task
_MY_JUDGEMENT_SQL = (
    "SELECT j.value, t.status, p.annotation_type, p.labels FROM judgements j"
    " JOIN tasks t ON t.id = j.task_id JOIN projects p ON p.id = t.project_id"
    " WHERE j.task_id = :task AND j.annotator_id = :me AND j.role = 'annotator'"
)


def _replay(
    db: Raw,
    principal: Principal,
    task_id: int,
    body: dict,
    next_ttl: float | None,
    now: float,
    project_id: str | None,
) -> dict | None:
    """The answer to a retried submission (one with an ``Idempotency-Key``), or ``None``.

    Submitting is idempotent per ``(task, annotator)``, so the ``Idempotency-Key`` middleware
    leaves judgements to this instead of storing responses: the same label again on a task the
    caller already judged answers as the first time did (with the task's status now, and the
    caller's live assignment as ``next``) and records nothing; another label is refused as not
    assigned.
    """
    mine = db.run(_MY_JUDGEMENT_SQL, {"task": task_id, "me": principal.account_id}).fetchone()
    if mine is None:
        return None
    stored, status, annotation_type, labels = mine
    try:
        value = get_type(annotation_type).validate_value(body.get("label"), json_value(labels))
    except ValueError:
        return None
    if orjson.dumps(value).decode() != stored:
        return None
    result = {"object": "judgement", "task_id": task_id, "label": value, "task_status": status}
    if next_ttl is not None:
        result["next"] = _assign_next(db, principal, next_ttl, now, project_id)
    return result


class _ChargedProject:
    """What ``billing.charge_task`` reads of a project."""

    __slots__ = ("id", "owner_id", "annotation_type")

    def __init__(self, id: str, owner_id: str, annotation_type: str) -> None:
        self.id, self.owner_id, self.annotation_type = id, owner_id, annotation_type


def submit(
    db: Database,
    principal: Principal,
    task_id: int,
    body: Any,
    *,
    next_ttl: float | None = None,
    project_id: str | None = None,
    inline: bool = False,
    retry: bool = False,
) -> dict:
    """Record an annotator's judgement on an assigned task and apply the consensus policy.

    With ``next_ttl`` the annotator's next task is assigned in the same transaction and
    returned under ``"next"`` (``None`` when the queue is empty): one round trip per task.
    ``inline``: see :func:`_hot_write` (may raise :class:`WouldBlock`). ``retry``: the request
    carries an ``Idempotency-Key``, so a repeat of a submission that went through is answered
    as the first time (:func:`_replay`); without one, a repeat is refused (409 ``not_assigned``).
    """
    _require_role(principal, "annotator")
    if not isinstance(body, dict):
        raise invalid("The body must be an object with a 'label'", param="label")
    unknown = sorted(set(body) - {"label", "duration"})
    if unknown:
        raise invalid(
            f"Unknown field {unknown[0]!r}; send 'label' and optionally 'duration'",
            param=unknown[0],
        )
    duration = _parse_duration(body)
    me = principal.account_id
    now = time.time()
    with _hot_write(db, inline) as raw:
        if raw.pg:
            raw.run(_LOCK_TASK_SQL, {"task": task_id})
        row = raw.run(_SUBMIT_SQL, {"task": task_id, "me": me}).fetchone()
        # (Raising rolls the transaction back; expired rows are swept by the next assignment.)
        if row is not None and row[4] in ("cancelled", "completed"):
            raise Problem(
                409,
                "project_closed",
                f"Project {row[1]} is {row[4]}; it takes no more judgements.",
                type="invalid_state_error",
            )
        if row is None and retry:
            replay = _replay(raw, principal, task_id, body, next_ttl, now, project_id)
            if replay is not None:
                return replay
        if row is None or row[0] <= now:
            raise _not_assigned(task_id)
        (
            expires_at,
            task_project,
            needed,
            n_judgements,
            state,
            annotation_type,
            labels,
            quality,
            owner,
        ) = row
        labels = json_value(labels)
        try:
            value = get_type(annotation_type).validate_value(body.get("label"), labels)
        except ValueError as exc:
            raise invalid(str(exc), param="label") from None
        raw.run(_RELEASE_SQL, {"task": task_id, "me": me})
        encoded = orjson.dumps(value).decode()
        raw.run(
            _INSERT_JUDGEMENT_SQL,
            {
                "task": task_id,
                "project": task_project,
                "me": me,
                "value": encoded,
                "duration": duration,
                "now": now,
            },
        )
        if n_judgements + 1 < needed:  # still short of its quota: nothing to decide
            n_votes, decision = n_judgements + 1, Decision("pending", needed)
        else:
            votes = [orjson.loads(v[0]) for v in raw.run(_VOTES_SQL, {"task": task_id}).fetchall()]
            n_votes, decision = len(votes), decide(votes, json_value(quality), needed)
        raw.run(
            _UPDATE_TASK_SQL,
            {
                "task": task_id,
                "n": n_votes,
                "needed": decision.needed,
                "status": decision.status,
                "agreement": decision.agreement,
                "final": None
                if decision.final_label is None
                else orjson.dumps(decision.final_label).decode(),
                "source": decision.label_source,
                "now": now,
                # the task's vote summary (read by the wide export), see tables.tasks
                "vote_value": encoded + VOTE_SEPARATOR,
                "vote_worker": me + VOTE_SEPARATOR,
            },
        )
        if decision.status != "pending":
            if decision.status == "completed":
                charged = _ChargedProject(task_project, owner, annotation_type)
                billing.charge_task(raw.conn, charged, task_id, n_votes, expert=False)
            _settle_if_needed(raw, task_project, state)
        result = {
            "object": "judgement",
            "task_id": task_id,
            "label": value,
            "task_status": decision.status,
        }
        if next_ttl is not None:
            result["next"] = _assign_next(raw, principal, next_ttl, now, project_id)
    return result


def skip(db: Database, principal: Principal, task_id: int) -> dict:
    """Release an assigned task; it is recorded and never offered to this annotator again."""
    _require_role(principal, "annotator")
    me = principal.account_id
    now = time.time()
    with _write(db) as conn:
        held = conn.execute(
            sa.select(assignments.c.project_id, assignments.c.expires_at).where(
                assignments.c.task_id == task_id, assignments.c.annotator_id == me
            )
        ).first()
        if held is None:
            raise _not_assigned(task_id)
        conn.execute(
            assignments.delete().where(
                assignments.c.task_id == task_id, assignments.c.annotator_id == me
            )
        )
        conn.execute(
            skips.insert(),
            {
                "task_id": task_id,
                "annotator_id": me,
                "project_id": held.project_id,
                "created_at": now,
            },
        )
    return {"object": "skip", "task_id": task_id}


def progress(db: Database, principal: Principal) -> dict:
    """The caller's own counts: judgements given, skips, and what is left for it per project.

    ``remaining`` counts tasks of active projects still pending that the caller has neither
    judged nor skipped (an upper bound: other annotators may fill them first).
    """
    _require_role(principal, "annotator", "expert")
    me = principal.account_id
    with db.read() as conn:
        done = conn.execute(
            sa.select(judgements.c.project_id, sa.func.count())
            .where(judgements.c.annotator_id == me)
            .group_by(judgements.c.project_id)
        ).all()
        skipped = conn.execute(
            sa.select(sa.func.count()).select_from(skips).where(skips.c.annotator_id == me)
        ).scalar_one()
        if principal.role == "expert":
            left = sa.select(tasks.c.project_id, sa.func.count()).where(
                tasks.c.project_id.in_(_visible_projects(principal)), tasks.c.status == "disputed"
            )
        else:
            left = sa.select(tasks.c.project_id, sa.func.count()).where(
                tasks.c.project_id.in_(_visible_projects(principal, "active")),
                tasks.c.status == "pending",
                ~sa.exists().where(
                    judgements.c.task_id == tasks.c.id, judgements.c.annotator_id == me
                ),
                ~sa.exists().where(skips.c.task_id == tasks.c.id, skips.c.annotator_id == me),
            )
        remaining = dict(conn.execute(left.group_by(tasks.c.project_id)).all())
        mine = dict(done)
        ids = sorted(set(remaining) | set(mine))
        names = (
            dict(
                conn.execute(
                    sa.select(projects.c.id, projects.c.name).where(projects.c.id.in_(ids))
                ).all()
            )
            if ids
            else {}
        )
    return {
        "object": "progress",
        "role": principal.role,
        "judgements": int(sum(mine.values())),
        "skips": int(skipped),
        "remaining": int(sum(remaining.values())),
        "projects": [
            {
                "project_id": pid,
                "name": names.get(pid),
                "judgements": int(mine.get(pid, 0)),
                "remaining": int(remaining.get(pid, 0)),
            }
            for pid in ids
        ],
    }


def _review_view(conn: sa.Connection, row: Any, expires_at: float) -> dict:
    view = _task_view(row, expires_at)
    votes = conn.execute(
        sa.select(judgements.c.annotator_id, judgements.c.value)
        .where(judgements.c.task_id == row.id, judgements.c.role == "annotator")
        .order_by(judgements.c.id)
    ).all()
    labels = [orjson.loads(v.value) for v in votes]
    counts = Counter(
        label if isinstance(label, str) else orjson.dumps(label).decode() for label in labels
    )
    view.update(
        object="review",
        votes=[
            {"annotator_id": v.annotator_id, "label": label}
            for v, label in zip(votes, labels, strict=True)
        ],
        vote_distribution={k: n / len(labels) for k, n in counts.items()} if labels else {},
        agreement=row.agreement,
        n_annotations=len(labels),
    )
    return view


def next_review(db: Database, principal: Principal, ttl: float) -> dict | None:
    """Hand a disputed task, with every vote and its agreement, to an expert."""
    _require_role(principal, "expert")
    now = time.time()
    me = principal.account_id
    visible = _visible_projects(principal)
    with _write(db) as conn:
        conn.execute(assignments.delete().where(assignments.c.expires_at <= now))
        held = conn.execute(
            sa.select(assignments.c.task_id, assignments.c.expires_at)
            .join(tasks, tasks.c.id == assignments.c.task_id)
            .where(
                assignments.c.annotator_id == me,
                assignments.c.expires_at > now,
                tasks.c.status == "disputed",
                tasks.c.project_id.in_(visible),
            )
            .limit(1)
        ).first()
        if held is not None:
            task_id, expires_at = held.task_id, held.expires_at
        else:
            candidate = conn.execute(
                sa.select(tasks.c.id, tasks.c.project_id)
                .where(
                    tasks.c.project_id.in_(visible),
                    tasks.c.status == "disputed",
                    ~sa.exists().where(assignments.c.task_id == tasks.c.id),
                )
                .order_by(tasks.c.id)
                .limit(1)
            ).first()
            if candidate is None:
                return None
            task_id, expires_at = candidate.id, now + ttl
            conn.execute(
                assignments.insert(),
                {
                    "task_id": task_id,
                    "annotator_id": me,
                    "project_id": candidate.project_id,
                    "expires_at": expires_at,
                },
            )
        row = conn.execute(_with_project(tasks.c.id == task_id)).one()
        return _review_view(conn, row, expires_at)


def decide_review(db: Database, principal: Principal, task_id: int, body: Any) -> dict:
    """An expert's final decision on a disputed task of a project it may review."""
    _require_role(principal, "expert")
    if not isinstance(body, dict) or set(body) - {"label", "duration"}:
        raise invalid(
            "The body must be an object with a 'label' (and optional 'duration')", param="label"
        )
    duration = _parse_duration(body)
    now = time.time()
    me = principal.account_id
    with _write(db) as conn:
        _lock_task(conn, task_id)
        task = conn.execute(
            sa.select(tasks).where(
                tasks.c.id == task_id, tasks.c.project_id.in_(_visible_projects(principal))
            )
        ).first()
        if task is None:
            raise not_found("task", task_id)
        if task.status != "disputed":
            raise Problem(
                409,
                "not_disputed",
                f"Task {task_id} is not awaiting review (status {task.status!r}).",
                type="invalid_state_error",
            )
        other = conn.execute(
            sa.select(assignments.c.annotator_id).where(
                assignments.c.task_id == task_id,
                assignments.c.annotator_id != me,
                assignments.c.expires_at > now,
            )
        ).first()
        if other is not None:
            raise Problem(
                409,
                "review_taken",
                f"Task {task_id} is being reviewed by another expert.",
                type="invalid_state_error",
            )
        project = conn.execute(sa.select(projects).where(projects.c.id == task.project_id)).one()
        try:
            value = get_type(project.annotation_type).validate_value(
                body.get("label"), project.labels
            )
        except ValueError as exc:
            raise invalid(str(exc), param="label") from None
        encoded = orjson.dumps(value).decode()
        conn.execute(assignments.delete().where(assignments.c.task_id == task_id))
        conn.execute(
            judgements.insert(),
            {
                "task_id": task_id,
                "project_id": project.id,
                "annotator_id": me,
                "role": "expert",
                "value": encoded,
                "duration": duration,
                "created_at": now,
            },
        )
        conn.execute(
            tasks.update()
            .where(tasks.c.id == task_id)
            .values(
                status="completed",
                final_label=encoded,
                label_source="expert",
                updated_at=now,
                expert_value=encoded,
                expert_worker=me,
            )
        )
        billing.charge_task(conn, project, task_id, task.n_judgements, expert=True)
        project_service.settle(conn, project)
    return {
        "object": "review_decision",
        "task_id": task_id,
        "label": value,
        "task_status": "completed",
    }
