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

import time
from collections import Counter
from typing import Any

import orjson
import sqlalchemy as sa

from ...types import get_type
from ..db import Database
from ..problems import Problem, forbidden, invalid, not_found
from ..tables import assignments, judgements, projects, skips, tasks
from . import billing
from . import projects as project_service
from .accounts import Principal
from .quality import decide

MAX_DURATION = 7 * 24 * 3600.0
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
        f"Task {task_id} is not assigned to you (or the assignment expired). "
        "Ask for the next task with GET /v1/annotator/next.",
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


def _assign_next(
    conn: sa.Connection, principal: Principal, ttl: float, now: float, project_id: str | None
) -> dict | None:
    """Inside a write transaction: the annotator's live assignment, or a new one, or ``None``."""
    me = principal.account_id
    held = conn.execute(
        sa.select(assignments.c.task_id, assignments.c.expires_at)
        .where(
            assignments.c.annotator_id == me,
            assignments.c.expires_at > now,
            assignments.c.project_id.in_(_visible_projects(principal, "active")),
        )
        .limit(1)
    ).first()
    if held is not None:
        row = conn.execute(_with_project(tasks.c.id == held.task_id)).one()
        return _task_view(row, held.expires_at)
    conn.execute(assignments.delete().where(assignments.c.expires_at <= now))
    live = (
        sa.select(sa.func.count())
        .select_from(assignments)
        .where(assignments.c.task_id == tasks.c.id)
        .scalar_subquery()
    )
    visible = _visible_projects(principal, "active")
    if project_id is not None:
        visible = visible.where(projects.c.id == project_id)
    candidate = conn.execute(
        sa.select(tasks.c.id, tasks.c.project_id)
        .where(
            tasks.c.project_id.in_(visible),
            tasks.c.status == "pending",
            tasks.c.n_judgements + live < tasks.c.needed,
            ~sa.exists().where(judgements.c.task_id == tasks.c.id, judgements.c.annotator_id == me),
            ~sa.exists().where(skips.c.task_id == tasks.c.id, skips.c.annotator_id == me),
        )
        .order_by(tasks.c.id)
        .limit(1)
    ).first()
    if candidate is None:
        return None
    expires_at = now + ttl
    conn.execute(
        assignments.insert(),
        {"task_id": candidate.id, "annotator_id": me, "project_id": candidate.project_id, "expires_at": expires_at},
    )
    row = conn.execute(_with_project(tasks.c.id == candidate.id)).one()
    return _task_view(row, expires_at)


def next_task(
    db: Database, principal: Principal, ttl: float, project_id: str | None = None
) -> dict | None:
    """Assign the next task to an annotator (or return its live assignment); ``None`` if none."""
    _require_role(principal, "annotator")
    with db.write() as conn:
        return _assign_next(conn, principal, ttl, time.time(), project_id)


def _parse_duration(body: dict) -> float | None:
    duration = body.get("duration")
    if duration is None:
        return None
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 <= duration <= MAX_DURATION:
        raise invalid(f"duration must be seconds between 0 and {MAX_DURATION:g}", param="duration")
    return float(duration)


def _settle_if_needed(conn: sa.Connection, project: Any) -> None:
    """Run the project-state check only when it can change something (no pending task left).

    ``projects.refresh_state`` keeps an active project active while any task is pending, so
    the full count is skipped on the hot path.
    """
    if project.state == "active":
        pending = conn.execute(
            sa.select(tasks.c.id)
            .where(tasks.c.project_id == project.id, tasks.c.status == "pending")
            .limit(1)
        ).first()
        if pending is not None:
            return
    project_service.settle(conn, project)


def submit(
    db: Database,
    principal: Principal,
    task_id: int,
    body: Any,
    *,
    next_ttl: float | None = None,
    project_id: str | None = None,
) -> dict:
    """Record an annotator's judgement on an assigned task and apply the consensus policy.

    With ``next_ttl`` the annotator's next task is assigned in the same transaction and
    returned under ``"next"`` (``None`` when the queue is empty): one round trip per task.
    """
    _require_role(principal, "annotator")
    if not isinstance(body, dict):
        raise invalid("The body must be an object with a 'label'", param="label")
    unknown = sorted(set(body) - {"label", "duration"})
    if unknown:
        raise invalid(f"Unknown field {unknown[0]!r}; send 'label' and optionally 'duration'", param=unknown[0])
    duration = _parse_duration(body)
    me = principal.account_id
    now = time.time()
    with db.write() as conn:
        row = conn.execute(
            sa.select(assignments.c.expires_at, tasks, *_PROJECT_COLUMNS)
            .join(tasks, tasks.c.id == assignments.c.task_id)
            .join(projects, projects.c.id == tasks.c.project_id)
            .where(assignments.c.task_id == task_id, assignments.c.annotator_id == me)
        ).first()
        mine = sa.and_(assignments.c.task_id == task_id, assignments.c.annotator_id == me)
        # (Raising rolls the transaction back; expired rows are swept by the next assignment.)
        if row is not None and row.state in ("cancelled", "completed"):
            raise Problem(
                409,
                "project_closed",
                f"Project {row.project_id} is {row.state}; it takes no more judgements.",
                type="invalid_state_error",
            )
        if row is None or row.expires_at <= now:
            raise _not_assigned(task_id)
        try:
            value = get_type(row.annotation_type).validate_value(body.get("label"), row.labels)
        except ValueError as exc:
            raise invalid(str(exc), param="label") from None
        conn.execute(assignments.delete().where(mine))
        conn.execute(
            judgements.insert(),
            {
                "task_id": task_id,
                "project_id": row.project_id,
                "annotator_id": me,
                "role": "annotator",
                "value": orjson.dumps(value).decode(),
                "duration": duration,
                "created_at": now,
            },
        )
        votes = [
            orjson.loads(v)
            for v in conn.execute(
                sa.select(judgements.c.value)
                .where(judgements.c.task_id == task_id, judgements.c.role == "annotator")
                .order_by(judgements.c.id)
            ).scalars()
        ]
        decision = decide(votes, row.labels, row.quality_settings, row.needed)
        conn.execute(
            tasks.update()
            .where(tasks.c.id == task_id)
            .values(
                n_judgements=len(votes),
                needed=decision.needed,
                status=decision.status,
                agreement=decision.agreement,
                final_label=None if decision.final_label is None else orjson.dumps(decision.final_label).decode(),
                label_source=decision.label_source,
                updated_at=now,
            )
        )
        if decision.status != "pending":
            project = conn.execute(sa.select(projects).where(projects.c.id == row.project_id)).one()
            if decision.status == "completed":
                billing.charge_task(conn, project, task_id, len(votes), expert=False)
            _settle_if_needed(conn, project)
        result = {"object": "judgement", "task_id": task_id, "label": value, "task_status": decision.status}
        if next_ttl is not None:
            result["next"] = _assign_next(conn, principal, next_ttl, now, project_id)
    return result


def skip(db: Database, principal: Principal, task_id: int) -> dict:
    """Release an assigned task; it is recorded and never offered to this annotator again."""
    _require_role(principal, "annotator")
    me = principal.account_id
    now = time.time()
    with db.write() as conn:
        held = conn.execute(
            sa.select(assignments.c.project_id, assignments.c.expires_at).where(
                assignments.c.task_id == task_id, assignments.c.annotator_id == me
            )
        ).first()
        if held is None:
            raise _not_assigned(task_id)
        conn.execute(
            assignments.delete().where(assignments.c.task_id == task_id, assignments.c.annotator_id == me)
        )
        conn.execute(
            skips.insert(),
            {"task_id": task_id, "annotator_id": me, "project_id": held.project_id, "created_at": now},
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
                ~sa.exists().where(judgements.c.task_id == tasks.c.id, judgements.c.annotator_id == me),
                ~sa.exists().where(skips.c.task_id == tasks.c.id, skips.c.annotator_id == me),
            )
        remaining = dict(conn.execute(left.group_by(tasks.c.project_id)).all())
        mine = dict(done)
        ids = sorted(set(remaining) | set(mine))
        names = dict(
            conn.execute(sa.select(projects.c.id, projects.c.name).where(projects.c.id.in_(ids))).all()
        ) if ids else {}
    return {
        "object": "progress",
        "role": principal.role,
        "judgements": int(sum(mine.values())),
        "skips": int(skipped),
        "remaining": int(sum(remaining.values())),
        "projects": [
            {"project_id": pid, "name": names.get(pid), "judgements": int(mine.get(pid, 0)),
             "remaining": int(remaining.get(pid, 0))}
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
    counts = Counter(label if isinstance(label, str) else orjson.dumps(label).decode() for label in labels)
    view.update(
        object="review",
        votes=[{"annotator_id": v.annotator_id, "label": label} for v, label in zip(votes, labels, strict=True)],
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
    with db.write() as conn:
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
                {"task_id": task_id, "annotator_id": me, "project_id": candidate.project_id, "expires_at": expires_at},
            )
        row = conn.execute(_with_project(tasks.c.id == task_id)).one()
        return _review_view(conn, row, expires_at)


def decide_review(db: Database, principal: Principal, task_id: int, body: Any) -> dict:
    """An expert's final decision on a disputed task of a project it may review."""
    _require_role(principal, "expert")
    if not isinstance(body, dict) or set(body) - {"label", "duration"}:
        raise invalid("The body must be an object with a 'label' (and optional 'duration')", param="label")
    duration = _parse_duration(body)
    now = time.time()
    me = principal.account_id
    with db.write() as conn:
        task = conn.execute(
            sa.select(tasks).where(tasks.c.id == task_id, tasks.c.project_id.in_(_visible_projects(principal)))
        ).first()
        if task is None:
            raise not_found("task", task_id)
        if task.status != "disputed":
            raise Problem(409, "not_disputed", f"Task {task_id} is not awaiting review (status {task.status!r}).", type="invalid_state_error")
        other = conn.execute(
            sa.select(assignments.c.annotator_id).where(
                assignments.c.task_id == task_id,
                assignments.c.annotator_id != me,
                assignments.c.expires_at > now,
            )
        ).first()
        if other is not None:
            raise Problem(409, "review_taken", f"Task {task_id} is being reviewed by another expert.", type="invalid_state_error")
        project = conn.execute(sa.select(projects).where(projects.c.id == task.project_id)).one()
        try:
            value = get_type(project.annotation_type).validate_value(body.get("label"), project.labels)
        except ValueError as exc:
            raise invalid(str(exc), param="label") from None
        encoded = orjson.dumps(value).decode()
        conn.execute(assignments.delete().where(assignments.c.task_id == task_id))
        conn.execute(
            judgements.insert(),
            {"task_id": task_id, "project_id": project.id, "annotator_id": me,
             "role": "expert", "value": encoded, "duration": duration, "created_at": now},
        )
        conn.execute(
            tasks.update()
            .where(tasks.c.id == task_id)
            .values(status="completed", final_label=encoded, label_source="expert", updated_at=now)
        )
        billing.charge_task(conn, project, task_id, task.n_judgements, expert=True)
        project_service.settle(conn, project)
    return {"object": "review_decision", "task_id": task_id, "label": value, "task_status": "completed"}
