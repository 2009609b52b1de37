"""Assignment, judgements and expert review: the annotator-facing side of the platform.

Invariants (kept under concurrency because every call here is one ``BEGIN IMMEDIATE``
transaction on SQLite, row locks on PostgreSQL):

- no annotator judges a task twice (unique ``(task_id, annotator_id)``, and assignment skips
  tasks the annotator has judged or holds);
- no task gets more judgements than it needs: a task is handed out only while
  ``n_judgements + live assignments < needed``;
- an assignment not answered within ``assignment_ttl_seconds`` expires and the task is handed
  to someone else.

Annotators and experts see only the task data, instructions and labels — never gold and never
other annotators' labels (experts see the votes of the disputed tasks they review).
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
from ..tables import assignments, judgements, projects, tasks
from . import billing
from . import projects as project_service
from .accounts import Principal
from .quality import decide

MAX_DURATION = 7 * 24 * 3600.0


def _visible_projects(principal: Principal):
    """Projects this annotator/expert may work on: its team owner's, or all (platform pool)."""
    query = sa.select(projects.c.id).where(projects.c.state.in_(("active", "review")))
    if principal.owner_id is not None:
        query = query.where(projects.c.owner_id == principal.owner_id)
    return query


def _require_role(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise forbidden(f"This endpoint is for {' or '.join(roles)} keys, not {principal.role}.")


def _task_view(conn: sa.Connection, task: Any, project: Any, expires_at: float) -> dict:
    return {
        "object": "assignment",
        "task_id": task.id,
        "project_id": project.id,
        "project_name": project.name,
        "annotation_type": project.annotation_type,
        "labels": project.labels,
        "instructions": project.instructions,
        "data": orjson.loads(task.data),
        "suggestions": orjson.loads(task.predictions) if task.predictions else None,
        "expires_at": expires_at,
    }


def next_task(
    db: Database, principal: Principal, ttl: float, project_id: str | None = None
) -> dict | None:
    """Assign the next task to an annotator (or return its live assignment); ``None`` if none."""
    _require_role(principal, "annotator")
    now = time.time()
    me = principal.account_id
    with db.write() as conn:
        held = conn.execute(
            sa.select(assignments.c.task_id, assignments.c.expires_at)
            .where(
                assignments.c.annotator_id == me,
                assignments.c.expires_at > now,
                assignments.c.project_id.in_(_visible_projects(principal)),
            )
            .limit(1)
        ).first()
        if held is not None:
            task = conn.execute(sa.select(tasks).where(tasks.c.id == held.task_id)).one()
            project = conn.execute(sa.select(projects).where(projects.c.id == task.project_id)).one()
            return _task_view(conn, task, project, held.expires_at)
        conn.execute(assignments.delete().where(assignments.c.expires_at <= now))
        live = (
            sa.select(sa.func.count())
            .select_from(assignments)
            .where(assignments.c.task_id == tasks.c.id)
            .scalar_subquery()
        )
        visible = _visible_projects(principal)
        if project_id is not None:
            visible = visible.where(projects.c.id == project_id)
        query = (
            sa.select(tasks)
            .where(
                tasks.c.project_id.in_(visible.where(projects.c.state == "active")),
                tasks.c.status == "pending",
                tasks.c.n_judgements + live < tasks.c.needed,
                ~sa.exists().where(judgements.c.task_id == tasks.c.id, judgements.c.annotator_id == me),
            )
            .order_by(tasks.c.id)
            .limit(1)
        )
        task = conn.execute(query).first()
        if task is None:
            return None
        expires_at = now + ttl
        conn.execute(
            assignments.insert(),
            {"task_id": task.id, "annotator_id": me, "project_id": task.project_id, "expires_at": expires_at},
        )
        project = conn.execute(sa.select(projects).where(projects.c.id == task.project_id)).one()
        return _task_view(conn, task, project, expires_at)


def _parse_duration(body: dict) -> float | None:
    duration = body.get("duration")
    if duration is None:
        return None
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 <= duration <= MAX_DURATION:
        raise invalid(f"duration must be seconds between 0 and {MAX_DURATION:g}", param="duration")
    return float(duration)


def submit(db: Database, principal: Principal, task_id: int, body: Any) -> dict:
    """Record an annotator's judgement on an assigned task and apply the consensus policy."""
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
        held = conn.execute(
            sa.select(assignments.c.expires_at).where(
                assignments.c.task_id == task_id, assignments.c.annotator_id == me
            )
        ).first()
        if held is None or held.expires_at <= now:
            if held is not None:
                conn.execute(
                    assignments.delete().where(
                        assignments.c.task_id == task_id, assignments.c.annotator_id == me
                    )
                )
            raise Problem(
                409,
                "not_assigned",
                f"Task {task_id} is not assigned to you (or the assignment expired). "
                "Ask for the next task with GET /v1/annotator/next.",
                type="invalid_state_error",
            )
        task = conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).one()
        project = conn.execute(sa.select(projects).where(projects.c.id == task.project_id)).one()
        try:
            value = get_type(project.annotation_type).validate_value(body.get("label"), project.labels)
        except ValueError as exc:
            raise invalid(str(exc), param="label") from None
        conn.execute(
            assignments.delete().where(assignments.c.task_id == task_id, assignments.c.annotator_id == me)
        )
        conn.execute(
            judgements.insert(),
            {
                "task_id": task_id,
                "project_id": project.id,
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
                sa.select(judgements.c.value).where(
                    judgements.c.task_id == task_id, judgements.c.role == "annotator"
                )
            ).scalars()
        ]
        decision = decide(votes, project.labels, project.quality_settings, task.needed)
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
        if decision.status == "completed":
            billing.charge_task(conn, project, task_id, len(votes), expert=False)
        if decision.status != "pending":
            project_service.settle(conn, project)
    return {"object": "judgement", "task_id": task_id, "label": value, "task_status": decision.status}


def next_review(db: Database, principal: Principal, ttl: float) -> dict | None:
    """Hand a disputed task, with every vote and its agreement, to an expert."""
    _require_role(principal, "expert")
    now = time.time()
    me = principal.account_id
    with db.write() as conn:
        conn.execute(assignments.delete().where(assignments.c.expires_at <= now))
        held = conn.execute(
            sa.select(assignments.c.task_id, assignments.c.expires_at).where(
                assignments.c.annotator_id == me, assignments.c.expires_at > now
            )
        ).first()
        if held is not None:
            task = conn.execute(sa.select(tasks).where(tasks.c.id == held.task_id)).one()
            if task.status != "disputed":
                held = None
        if held is None:
            task = conn.execute(
                sa.select(tasks)
                .where(
                    tasks.c.project_id.in_(_visible_projects(principal)),
                    tasks.c.status == "disputed",
                    ~sa.exists().where(assignments.c.task_id == tasks.c.id),
                )
                .order_by(tasks.c.id)
                .limit(1)
            ).first()
            if task is None:
                return None
            expires_at = now + ttl
            conn.execute(
                assignments.insert(),
                {"task_id": task.id, "annotator_id": me, "project_id": task.project_id, "expires_at": expires_at},
            )
        else:
            expires_at = held.expires_at
        project = conn.execute(sa.select(projects).where(projects.c.id == task.project_id)).one()
        view = _task_view(conn, task, project, expires_at)
        votes = conn.execute(
            sa.select(judgements.c.annotator_id, judgements.c.value)
            .where(judgements.c.task_id == task.id, judgements.c.role == "annotator")
            .order_by(judgements.c.id)
        ).all()
        labels = [orjson.loads(v.value) for v in votes]
        counts = Counter(labels)
        view.update(
            object="review",
            votes=[{"annotator_id": v.annotator_id, "label": label} for v, label in zip(votes, labels)],
            vote_distribution={k: n / len(labels) for k, n in counts.items()} if labels else {},
            agreement=task.agreement,
        )
        return view


def decide_review(db: Database, principal: Principal, task_id: int, body: Any) -> dict:
    """An expert's final decision on a disputed task."""
    _require_role(principal, "expert")
    if not isinstance(body, dict) or set(body) - {"label", "duration"}:
        raise invalid("The body must be an object with a 'label' (and optional 'duration')", param="label")
    duration = _parse_duration(body)
    now = time.time()
    with db.write() as conn:
        task = conn.execute(
            sa.select(tasks).where(tasks.c.id == task_id, tasks.c.project_id.in_(_visible_projects(principal)))
        ).first()
        if task is None:
            raise not_found("task", task_id)
        if task.status != "disputed":
            raise Problem(409, "not_disputed", f"Task {task_id} is not awaiting review (status {task.status!r}).", type="invalid_state_error")
        project = conn.execute(sa.select(projects).where(projects.c.id == task.project_id)).one()
        try:
            value = get_type(project.annotation_type).validate_value(body.get("label"), project.labels)
        except ValueError as exc:
            raise invalid(str(exc), param="label") from None
        encoded = orjson.dumps(value).decode()
        conn.execute(assignments.delete().where(assignments.c.task_id == task_id))
        conn.execute(
            judgements.insert(),
            {"task_id": task_id, "project_id": project.id, "annotator_id": principal.account_id,
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
