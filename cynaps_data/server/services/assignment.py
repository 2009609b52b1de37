"""Assignment: which task an annotator gets next, skips, and the caller's progress.

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
their own assignment: task data, instructions and the project's label config, never gold and
never other annotators' labels. Judgements are ``judgements.py``, expert review ``review.py``.
"""

from __future__ import annotations

import logging
import time
from functools import cache
from typing import Any

import orjson
import sqlalchemy as sa

from .. import lanes, pg_assign
from ..db import Database
from ..problems import Problem, forbidden
from ..tables import assignments, judgements, projects, skips, tasks
from .accounts import Principal
from .fastsql import Raw, json_value

_PROJECT_COLUMNS = (
    projects.c.name.label("project_name"),
    projects.c.owner_id,
    projects.c.state,
    projects.c.annotation_type,
    projects.c.labels,
    projects.c.instructions,
    projects.c.quality_settings,
)


def visible_projects(principal: Principal, *states: str):
    """Project ids this annotator/expert may work on: its team owner's, or all (platform pool)."""
    query = sa.select(projects.c.id).where(projects.c.state.in_(states or ("active", "review")))
    if principal.owner_id is not None:
        query = query.where(projects.c.owner_id == principal.owner_id)
    return query


def require_role(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise forbidden(f"This endpoint is for {' or '.join(roles)} keys, not {principal.role}.")


def not_assigned(task_id: int) -> Problem:
    return Problem(
        409,
        "not_assigned",
        f"Task {task_id} is not assigned to you (or the assignment expired, or you already judged it "
        "with another label). Ask for the next task with GET /v1/annotator/next.",
        type="invalid_state_error",
    )


def task_view(row: Any, expires_at: float) -> dict:
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


def with_project(*where: Any):
    """Task columns joined with the project columns a task view needs."""
    return (
        sa.select(tasks, *_PROJECT_COLUMNS)
        .join(projects, projects.c.id == tasks.c.project_id)
        .where(*where)
    )


# The hot path (next task; submit in judgements.py) as plain SQL run on the driver connection (``fastsql``):
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


# One project at a time: the equality on (project_id, status) lets the index ``ix_tasks_queue``
# hand out tasks in queue order (``queue_order``, then id: id order in a fixed-overlap project,
# where every task's order is 0; in an adaptive one the started tasks whose next judgement is
# worth most first, ``overlap.py``) and stop at the first fit (an IN over projects would sort
# every pending task first).
# (id, data, predictions)
_CANDIDATE_SQL = (
    "SELECT t.id, t.data, t.predictions FROM tasks t WHERE t.project_id = :pid AND t.status = 'pending'"
    " AND t.n_judgements"
    " + (SELECT count(*) FROM assignments a WHERE a.task_id = t.id AND a.expires_at > :now) < t.needed"
    " AND NOT EXISTS (SELECT 1 FROM judgements j WHERE j.task_id = t.id AND j.annotator_id = :me)"
    " AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.task_id = t.id AND s.annotator_id = :me)"
    " AND NOT EXISTS (SELECT 1 FROM assignments m WHERE m.task_id = t.id AND m.annotator_id = :me)"
    " ORDER BY t.queue_order, t.id LIMIT 1"
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


log = logging.getLogger(__name__)
#: a task whose data and suggestions are shorter than this cannot nest deep enough to fail
#: ``orjson.dumps`` (254 levels take 508 brackets), so only longer ones are test-rendered
_CANNOT_NEST_TOO_DEEP = 400
_UNRENDERABLE_SQL = (
    "INSERT INTO skips (task_id, annotator_id, project_id, created_at)"
    " VALUES (:task, :me, :project, :now)"
)
_DROP_HELD_SQL = "DELETE FROM assignments WHERE task_id = :task AND annotator_id = :me"


def _render(
    db: Raw,
    me: str,
    now: float,
    task_id: int,
    project: tuple,
    data: str,
    preds: str | None,
    expires_at: float,
) -> dict | None:
    """The assignment's view, or ``None`` when the task cannot be rendered (nested deeper than
    the response serialiser takes: stored before the upload limit of ``limits.py``).

    Such a task is recorded as skipped by this annotator (never offered to it again) and
    logged, so it cannot block the queue with a 500 on every ``next``."""
    try:
        view = _view(task_id, project, data, preds, expires_at)
        if len(data) + len(preds or "") >= _CANNOT_NEST_TOO_DEEP:
            orjson.dumps(view)
        return view
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError, RecursionError) as exc:
        log.warning("task %s cannot be rendered (%s); skipped for annotator %s", task_id, exc, me)
        db.run(_DROP_HELD_SQL, {"task": task_id, "me": me})
        db.run(_UNRENDERABLE_SQL, {"task": task_id, "me": me, "project": project[0], "now": now})
        return None


def assign_next(
    db: Raw, principal: Principal, ttl: float, now: float, project_id: str | None
) -> dict | None:
    """Inside a write transaction: the annotator's live assignment, or a new one, or ``None``.

    New work comes from the oldest active project first, in the project's queue order (lowest
    ``queue_order``, then lowest task id). A task that
    cannot be rendered is skipped for this annotator (:func:`_render`) and the next handed out.
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
        view = _render(db, me, now, row[0], (row[1], *row[4:]), row[2], row[3], held[1])
        if view is not None:
            return view
    _sweep(db, now)
    for project in db.run(active_sql, params).fetchall():
        while True:
            task = (  # PostgreSQL: SKIP LOCKED and a re-check, safe across processes (pg_assign.py)
                pg_assign.candidate(db, project[0], me, now)
                if db.pg
                else db.run(_CANDIDATE_SQL, {"pid": project[0], "me": me, "now": now}).fetchone()
            )
            if task is None:
                break
            expires_at = now + ttl
            db.run(
                _ASSIGN_SQL,
                {"task": task[0], "me": me, "project": project[0], "expires": expires_at},
            )
            view = _render(db, me, now, task[0], project, task[1], task[2], expires_at)
            if view is not None:
                return view
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

    ``inline``: see :func:`lanes.hot_write` (may raise :class:`WouldBlock`).
    """
    require_role(principal, "annotator")
    with lanes.hot_write(db, inline) as raw:
        return assign_next(raw, principal, ttl, time.time(), project_id)


def skip(db: Database, principal: Principal, task_id: int) -> dict:
    """Release an assigned task; it is recorded and never offered to this annotator again."""
    require_role(principal, "annotator")
    me = principal.account_id
    now = time.time()
    with lanes.write(db) as conn:
        held = conn.execute(
            sa.select(assignments.c.project_id, assignments.c.expires_at).where(
                assignments.c.task_id == task_id, assignments.c.annotator_id == me
            )
        ).first()
        if held is None:
            raise not_assigned(task_id)
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
    require_role(principal, "annotator", "expert")
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
                tasks.c.project_id.in_(visible_projects(principal)), tasks.c.status == "disputed"
            )
        else:
            left = sa.select(tasks.c.project_id, sa.func.count()).where(
                tasks.c.project_id.in_(visible_projects(principal, "active")),
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
