"""Expert review: disputed tasks, with every vote and the task's consensus metadata, handed
to experts of the project's team (or the platform pool), and the expert's final decision.

Experts see only disputed tasks of the projects they may review. The decision is stored by
``judgements.store`` like every judgement, finalises the task (``label_source = "expert"``,
``stop_reason = "expert"``), credits the voters of an adaptive project's task with the verdict in
the skill model (``overlap.after_expert``) and charges it through ``billing``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import sqlalchemy as sa

from ...types import get_type
from .. import lanes
from ..db import Database
from ..problems import Problem, invalid, not_found
from ..tables import assignments, judgements, projects, tasks
from . import billing, outbox, overlap
from . import projects as project_service
from . import votes as vote_service
from .accounts import Principal
from .assignment import require_role, task_view, visible_projects, with_project
from .fastsql import Raw
from .judgements import Judgement, lock_task, parse_duration, store
from .quality import is_adaptive


def review_view(conn: sa.Connection, row: Any, expires_at: float) -> dict:
    """What an expert sees of a disputed task: the assignment view, every annotator vote, and
    the task's consensus metadata (``agreement``, ``n_annotations`` and the type's summary)."""
    view = task_view(row, expires_at)
    rows = conn.execute(
        sa.select(judgements.c.annotator_id, judgements.c.role, judgements.c.value)
        .where(judgements.c.task_id == row.id, judgements.c.role == "annotator")
        .order_by(judgements.c.id)
    ).all()
    votes = [
        {"annotator_id": v.annotator_id, "role": v.role, "label": orjson.loads(v.value)}
        for v in rows
    ]
    consensus = vote_service.task_consensus(get_type(row.annotation_type), None, row, votes)
    for key in ("label", "label_source", "status", "annotator_ids", "expert_label"):
        consensus.pop(key)
    view.update(
        object="review",
        votes=[{"annotator_id": v["annotator_id"], "label": v["label"]} for v in votes],
        **consensus,
    )
    return view


def next_review(db: Database, principal: Principal, ttl: float) -> dict | None:
    """Hand a disputed task, with every vote and its agreement, to an expert."""
    require_role(principal, "expert")
    now = time.time()
    me = principal.account_id
    visible = visible_projects(principal)
    with lanes.write(db) as conn:
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
        row = conn.execute(with_project(tasks.c.id == task_id)).one()
        return review_view(conn, row, expires_at)


def decide_review(db: Database, principal: Principal, task_id: int, body: Any) -> dict:
    """An expert's final decision on a disputed task of a project it may review."""
    require_role(principal, "expert")
    if not isinstance(body, dict) or set(body) - {"label", "duration"}:
        raise invalid(
            "The body must be an object with a 'label' (and optional 'duration')", param="label"
        )
    duration = parse_duration(body)
    now = time.time()
    me = principal.account_id
    with lanes.write(db) as conn:
        lock_task(conn, task_id)
        task = conn.execute(
            sa.select(tasks).where(
                tasks.c.id == task_id, tasks.c.project_id.in_(visible_projects(principal))
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
                body.get("label"), project.labels, orjson.loads(task.data)
            )
        except ValueError as exc:
            raise invalid(str(exc), param="label") from None
        encoded = orjson.dumps(value).decode()
        conn.execute(assignments.delete().where(assignments.c.task_id == task_id))
        store(conn, [Judgement(task_id, project.id, me, "expert", encoded, duration, now)])
        conn.execute(
            tasks.update()
            .where(tasks.c.id == task_id)
            .values(
                status="completed",
                final_label=encoded,
                label_source="expert",
                stop_reason="expert",
                updated_at=now,
                expert_value=encoded,
                expert_worker=me,
            )
        )
        if is_adaptive(project.quality_settings):  # the verdict is the truth for the skills
            overlap.after_expert(
                Raw(conn),
                get_type(project.annotation_type),
                project.labels,
                project.id,
                task_id,
                value,
            )
        billing.charge_task(conn, project, task_id, task.n_judgements, expert=True)
        outbox.task_decided(conn, project.owner_id, project.id, task_id, "completed")
        project_service.settle(conn, project)
    return {
        "object": "review_decision",
        "task_id": task_id,
        "label": value,
        "task_status": "completed",
    }
