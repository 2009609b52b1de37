"""Projects: creation, owner-scoped lookup, status, and the state-changing calls."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from ...types import DEFAULT_TYPE, get_type
from ..db import Database
from ..ids import random_id
from ..problems import invalid, invalid_state, not_found
from ..tables import projects, tasks
from . import billing, outbox, overlap, states
from .quality import validate_quality

MAX_NAME = 500
MAX_INSTRUCTIONS = 100_000


def create(db: Database, owner_id: str, body: dict[str, Any]) -> dict:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid("name must be a non-empty string", param="name")
    if len(name) > MAX_NAME:
        raise invalid(f"name is longer than {MAX_NAME} characters", param="name")
    type_name = body.get("annotation_type", DEFAULT_TYPE)
    if not isinstance(type_name, str):
        raise invalid(
            "annotation_type must be the name of an annotation type (a string)",
            param="annotation_type",
        )
    try:
        atype = get_type(type_name)
    except KeyError as exc:
        raise invalid(str(exc.args[0]), param="annotation_type") from None
    try:
        labels = atype.validate_config(body.get("labels"))
    except ValueError as exc:
        raise invalid(str(exc), param="labels") from None
    instructions = body.get("instructions")
    if instructions is None:
        instructions = ""
    if not isinstance(instructions, str) or len(instructions) > MAX_INSTRUCTIONS:
        raise invalid(
            f"instructions must be a string of at most {MAX_INSTRUCTIONS} characters",
            param="instructions",
        )
    quality = validate_quality(body.get("quality_settings"))
    overlap.check_supported(atype, labels, quality)  # adaptive mode: only where the type can
    now = time.time()
    row = {
        "id": random_id("proj"),
        "owner_id": owner_id,
        "name": name,
        "annotation_type": type_name,
        "labels": labels,
        "instructions": instructions,
        "quality_settings": quality,
        "state": "draft",
        "created_at": now,
        "updated_at": now,
    }
    with db.write() as conn:
        conn.execute(projects.insert(), row)
    return get(db, owner_id, row["id"])


def load(conn: sa.Connection, owner_id: str | None, project_id: str, *, lock: bool = False) -> Any:
    """The project row, scoped to its owner: another account's project is a 404."""
    query = sa.select(projects).where(projects.c.id == project_id)
    if owner_id is not None:
        query = query.where(projects.c.owner_id == owner_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise not_found("project", project_id)
    return row


def counts(conn: sa.Connection, project_id: str) -> dict[str, int]:
    rows = conn.execute(
        sa.select(tasks.c.status, sa.func.count())
        .where(tasks.c.project_id == project_id)
        .group_by(tasks.c.status)
    ).all()
    by_status = {status: int(n) for status, n in rows}
    return {
        "total": sum(by_status.values()),
        "completed": by_status.get("completed", 0),
        "disputed": by_status.get("disputed", 0),
        "pending": by_status.get("pending", 0),
    }


def as_dict(conn: sa.Connection, row: Any) -> dict:
    c = counts(conn, row.id)
    return {
        "id": row.id,
        "object": "project",
        "name": row.name,
        "annotation_type": row.annotation_type,
        "labels": row.labels,
        "instructions": row.instructions,
        "quality_settings": row.quality_settings,
        "state": row.state,
        "task_count": c["total"],
        "deposit_paid": row.deposit_cents is not None,
        "source_schema": row.source_schema,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def get(db: Database, owner_id: str, project_id: str) -> dict:
    with db.read() as conn:
        return as_dict(conn, load(conn, owner_id, project_id))


def list_for(db: Database, owner_id: str, limit: int = 100, offset: int = 0) -> list[dict]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(projects)
            .where(projects.c.owner_id == owner_id)
            .order_by(projects.c.created_at.desc(), projects.c.id)
            .limit(limit)
            .offset(offset)
        ).all()
        return [as_dict(conn, row) for row in rows]


def status(db: Database, owner_id: str, project_id: str) -> dict:
    with db.read() as conn:
        row = load(conn, owner_id, project_id)
        c = counts(conn, row.id)
        n_judgements = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(tasks.c.n_judgements), 0)).where(
                tasks.c.project_id == row.id
            )
        ).scalar_one()
    total = c["total"]
    progress = int(100 * c["completed"] / total) if total else 0
    return {
        "object": "project_status",
        "project_id": row.id,
        "state": row.state,
        "progress": progress,
        "completed": c["completed"],
        "total": total,
        "disputed": c["disputed"],
        "pending": c["pending"],
        "judgements": int(n_judgements),
        "is_complete": row.state == "completed",
        "deposit_paid": row.deposit_cents is not None,
        "next_step": states.next_step(row.state),
    }


def set_state(conn: sa.Connection, project_id: str, state: str) -> None:
    outbox.state_changing(conn, project_id, state)  # webhook event, same transaction
    conn.execute(
        projects.update()
        .where(projects.c.id == project_id)
        .values(state=state, updated_at=time.time())
    )


def transition(db: Database, owner_id: str, project_id: str, action: str) -> dict:
    """``start``, ``pause``, ``resume`` or ``cancel``."""
    with db.write() as conn:
        row = load(conn, owner_id, project_id, lock=True)
        target = states.check(action, row.state)
        if action == "start":
            if row.deposit_cents is None:
                raise invalid_state(
                    "Cannot start: the security deposit is not paid. "
                    "Next step: call pay_deposit(payment_method=...)."
                )
            if counts(conn, row.id)["total"] == 0:
                raise invalid_state("Cannot start a project without tasks; upload tasks first.")
        if action == "resume":
            target = refresh_state(conn, row.id, "active")
            if target == "completed":  # its last task was judged while paused: settle now
                billing.refund_deposit(conn, row)
        if action == "cancel":
            billing.settle_escrow(conn, row)  # escrow ends empty: billed work paid (issue 12)
            billing.refund_deposit(conn, row)
        set_state(conn, row.id, target)
    return status(db, owner_id, project_id)


def refresh_state(conn: sa.Connection, project_id: str, state: str) -> str:
    """The state an active/review project should be in given its tasks."""
    if state not in ("active", "review"):
        return state
    c = counts(conn, project_id)
    if c["total"] and c["completed"] == c["total"]:
        return "completed"
    if c["pending"] == 0 and c["disputed"] > 0:
        return "review"
    return "active"


def settle(conn: sa.Connection, project: Any) -> str:
    """After task changes: move active ⇄ review → completed, refunding the deposit on completion."""
    target = refresh_state(conn, project.id, project.state)
    if target != project.state:
        if target == "completed":
            billing.refund_deposit(conn, project)
        set_state(conn, project.id, target)
    return target
