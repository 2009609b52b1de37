"""Bulk task upload: validate the whole batch first, then one multi-row insert.

Wire form of one task: ``{"data": {...}, "external_id": str|int|null, "gold": label|null,
"predictions": label|list|null}``; unknown keys are rejected. ``(project_id, external_id)`` is
unique, so re-uploading the same ids inserts nothing (counted as ``duplicates``). The insert goes
through the DB-API ``executemany`` (no ORM object per row) inside one transaction: a batch is
stored whole or not at all.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import sqlalchemy as sa

from ...types import get_type
from ..db import Database
from ..problems import Problem, invalid, invalid_state
from ..tables import projects, tasks
from . import projects as project_service

WIRE_KEYS = frozenset({"data", "external_id", "gold", "predictions"})
MAX_EXTERNAL_ID = 200
UPLOAD_STATES = frozenset({"draft", "pending_deposit"})


def _bad(i: int, message: str, field: str | None = None) -> Problem:
    where = f"tasks[{i}]" + (f".{field}" if field else "")
    return invalid(f"{where}: {message}", param=where)


def parse_batch(body: Any, max_tasks: int) -> list:
    """The list of task items from a request body (a list, or ``{"tasks": [...]}``)."""
    items = body.get("tasks") if isinstance(body, dict) else body
    if isinstance(body, dict) and set(body) - {"tasks", "source_schema"}:
        extra = sorted(set(body) - {"tasks", "source_schema"})[0]
        raise invalid(f"Unknown field {extra!r} in upload body", param=extra)
    if not isinstance(items, list):
        raise invalid('The body must be a JSON list of tasks or {"tasks": [...]}', param="tasks")
    if len(items) > max_tasks:
        raise Problem(
            413,
            "batch_too_large",
            f"A batch holds at most {max_tasks} tasks, got {len(items)}; "
            "split it (the client does this for you).",
            param="tasks",
        )
    return items


def build_rows(project: Any, items: list) -> list[tuple]:
    """Validate every item and return insert rows; the first bad item raises, naming it."""
    atype = get_type(project.annotation_type)
    labels = project.labels
    needed = project.quality_settings["min_annotators"]
    now = time.time()
    pid = project.id
    dumps = orjson.dumps
    rows = []
    append = rows.append
    for i, item in enumerate(items):
        if type(item) is not dict:
            raise _bad(i, f"each task must be an object, got {type(item).__name__}")
        data = item.get("data")
        if type(data) is not dict:
            raise _bad(i, "'data' must be an object of task fields", "data")
        if len(item) > 1 and not item.keys() <= WIRE_KEYS:
            unknown = sorted(set(item) - WIRE_KEYS)[0]
            raise _bad(i, f"unknown field {unknown!r}; allowed: {sorted(WIRE_KEYS)}", unknown)
        ext = item.get("external_id")
        if ext is not None:
            if type(ext) is int:
                ext = str(ext)
            elif type(ext) is not str or not ext or len(ext) > MAX_EXTERNAL_ID:
                raise _bad(
                    i,
                    f"must be a non-empty string of at most {MAX_EXTERNAL_ID} characters",
                    "external_id",
                )
        gold = item.get("gold")
        if gold is not None:
            try:
                gold = dumps(atype.validate_value(gold, labels)).decode()
            except ValueError as exc:
                raise _bad(i, str(exc), "gold") from None
        preds = item.get("predictions")
        if preds is not None:
            values = preds if isinstance(preds, list) else [preds]
            for value in values:
                label = value.get("label") if isinstance(value, dict) else value
                try:
                    atype.validate_value(label, labels)
                except ValueError as exc:
                    raise _bad(i, str(exc), "predictions") from None
            preds = dumps(preds).decode()
        append((pid, ext, dumps(data).decode(), gold, preds, needed, now))
    return rows


def upload(db: Database, owner_id: str, project_id: str, body: Any, max_tasks: int) -> dict:
    items = parse_batch(body, max_tasks)
    source_schema = body.get("source_schema") if isinstance(body, dict) else None
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
    _check_state(project)
    rows = build_rows(project, items)
    with db.write() as conn:
        project = project_service.load(conn, owner_id, project_id, lock=True)
        _check_state(project)  # re-check inside the write lock
        created = insert_rows(conn, rows)
        if source_schema is not None:
            conn.execute(
                projects.update()
                .where(projects.c.id == project_id)
                .values(source_schema=source_schema)
            )
        total = conn.execute(
            sa.select(sa.func.count()).select_from(tasks).where(tasks.c.project_id == project_id)
        ).scalar_one()
    return {
        "object": "upload_result",
        "task_count": len(rows),
        "created": created,
        "duplicates": len(rows) - created,
        "project_task_count": int(total),
    }


def _check_state(project: Any) -> None:
    if project.state not in UPLOAD_STATES or project.deposit_cents is not None:
        raise invalid_state(
            f"Tasks can be added only before the deposit is paid (project is {project.state!r}"
            f"{', deposit paid' if project.deposit_cents is not None else ''}). "
            "Create a new project for more data."
        )


def insert_rows(conn: sa.Connection, rows: list[tuple]) -> int:
    """Insert task rows, skipping existing ``(project_id, external_id)``; returns rows created."""
    if not rows:
        return 0
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        "INSERT INTO tasks (project_id, external_id, data, gold, predictions, needed, updated_at,"
        " status, n_judgements, charged, released) VALUES "
        f"({', '.join([mark] * 7)}, 'pending', 0, false, false) "
        "ON CONFLICT (project_id, external_id) DO NOTHING"
    )
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.executemany(sql, rows)
        return cursor.rowcount
    finally:
        cursor.close()
