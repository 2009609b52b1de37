"""Importing tasks *with their judgements* (e.g. a Label Studio export) into a project.

Wire form of one item: ``{"data": {...}, "external_id": str|int|null, "gold": label|null,
"judgements": [{"worker": str, "label": label, "role": "annotator"|"expert",
"created_at": seconds|null, "duration": seconds|null}, ...]}``.

Imported judgements are recorded with ``origin = "imported"``: they are not platform work, so
they are never billed nor paid (``billed = paid = true`` from the start). Each task's state
follows the project's consensus policy over its imported annotator votes: an expert verdict is
final (``label_source = "expert"``); otherwise the type's consensus decision with ``min_annotators``
(``votes.imported_state``, through the project's annotation type) gives completed / disputed / pending (a pending task gets its missing judgements on the platform
once the project runs, and only those are charged). Like uploads, imports are allowed before the
deposit is paid; a batch is validated whole and stored whole or not at all; ``external_id``
already in the project is skipped (counted as ``duplicates``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import orjson
import sqlalchemy as sa

from ...types import get_type
from ..db import Database
from ..problems import invalid
from ..tables import tasks
from . import projects as project_service
from . import votes as vote_service
from .judgements import Judgement, store
from .tasks import bad_item, build_rows, check_state, count_created, parse_batch

ITEM_KEYS = frozenset({"data", "external_id", "gold", "predictions", "judgements"})
JUDGEMENT_KEYS = frozenset({"worker", "label", "role", "created_at", "duration"})
MAX_WORKER = 40
ROLES = ("annotator", "expert")


def _judgements(
    i: int, raw: Any, atype: Any, labels: list, now: float, data: Any = None
) -> list[tuple]:
    """Validated ``(worker, role, value_json, duration, created_at)`` of one item."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_item(i, "'judgements' must be a list", "judgements")
    out, seen = [], set()
    for j, item in enumerate(raw):
        where = f"judgements[{j}]"
        if not isinstance(item, dict):
            raise bad_item(i, "each judgement must be an object", where)
        unknown = sorted(set(item) - JUDGEMENT_KEYS)
        if unknown:
            raise bad_item(
                i,
                f"unknown field {unknown[0]!r}; allowed: {sorted(JUDGEMENT_KEYS)}",
                f"{where}.{unknown[0]}",
            )
        worker = item.get("worker")
        if isinstance(worker, int) and not isinstance(worker, bool):
            worker = str(worker)
        if not isinstance(worker, str) or not worker or len(worker) > MAX_WORKER:
            raise bad_item(
                i,
                f"worker must be a non-empty string of at most {MAX_WORKER} characters",
                f"{where}.worker",
            )
        if worker in seen:
            raise bad_item(i, f"worker {worker!r} judges this task twice", f"{where}.worker")
        seen.add(worker)
        role = item.get("role") or "annotator"
        if role not in ROLES:
            raise bad_item(i, f"role must be one of {list(ROLES)}", f"{where}.role")
        try:
            value = atype.validate_value(item.get("label"), labels, data)
        except ValueError as exc:
            raise bad_item(i, str(exc), f"{where}.label") from None
        stamps = []
        for key in ("duration", "created_at"):
            v = item.get(key)
            if v is not None and (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or v < 0
            ):
                raise bad_item(
                    i, f"{key} must be a non-negative number of seconds", f"{where}.{key}"
                )
            stamps.append(None if v is None else float(v))
        duration, created = stamps
        out.append(
            (
                worker,
                role,
                orjson.dumps(value).decode(),
                duration,
                created if created is not None else now,
            )
        )
    return out


def import_batch(db: Database, owner_id: str, project_id: str, body: Any, max_tasks: int) -> dict:
    """Validate a batch of items with judgements, then insert tasks and judgements at once."""
    items = parse_batch(body, max_tasks)
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
    check_state(project)
    atype = get_type(project.annotation_type)
    labels = project.labels
    quality = project.quality_settings
    now = time.time()
    plain, votes = [], []
    for i, item in enumerate(items):
        if type(item) is not dict:
            raise bad_item(i, f"each task must be an object, got {type(item).__name__}")
        unknown = sorted(set(item) - ITEM_KEYS)
        if unknown:
            raise bad_item(
                i, f"unknown field {unknown[0]!r}; allowed: {sorted(ITEM_KEYS)}", unknown[0]
            )
        votes.append(_judgements(i, item.get("judgements"), atype, labels, now, item.get("data")))
        plain.append({k: v for k, v in item.items() if k != "judgements"})
    rows = build_rows(project, plain)  # validates data, external_id, gold, predictions
    with db.write() as conn:
        project = project_service.load(conn, owner_id, project_id, lock=True)
        check_state(project)
        keep = _new_rows(conn, project_id, rows)
        task_rows = []
        for idx in keep:
            pid, ext, data, gold, preds, _needed, _now = rows[idx]
            state = vote_service.imported_state(atype, votes[idx], quality, labels)
            task_rows.append(
                {
                    "project_id": pid,
                    "external_id": ext,
                    "data": data,
                    "gold": gold,
                    "predictions": preds,
                    "n_judgements": sum(1 for v in votes[idx] if v[1] == "annotator"),
                    **vote_service.summary_columns(votes[idx]),
                    "charged": False,
                    "released": False,
                    "updated_at": now,
                    **state,
                }
            )
        ids = []
        if task_rows:
            ids = (
                conn.execute(
                    tasks.insert().returning(tasks.c.id, sort_by_parameter_order=True), task_rows
                )
                .scalars()
                .all()
            )
        judgement_rows = [
            Judgement(task_id, project_id, worker, role, value, duration, created)
            for task_id, idx in zip(ids, keep, strict=True)
            for worker, role, value, duration, created in votes[idx]
        ]
        store(conn, judgement_rows, origin="imported")
        if ids:
            project_service.settle(conn, project)
        total = count_created(conn, project_id, len(ids))
    return {
        "object": "import_result",
        "task_count": len(rows),
        "created": len(ids),
        "duplicates": len(rows) - len(ids),
        "judgements": len(judgement_rows),
        "project_task_count": int(total),
    }


def _new_rows(conn: sa.Connection, project_id: str, rows: list[tuple]) -> list[int]:
    """Indices of rows whose external_id is neither in the project nor earlier in the batch."""
    external = [r[1] for r in rows if r[1] is not None]
    existing: set[str] = set()
    for start in range(0, len(external), 5000):
        chunk = external[start : start + 5000]
        existing.update(
            conn.execute(
                sa.select(tasks.c.external_id).where(
                    tasks.c.project_id == project_id, tasks.c.external_id.in_(chunk)
                )
            ).scalars()
        )
    keep = []
    for idx, row in enumerate(rows):
        ext = row[1]
        if ext is not None:
            if ext in existing:
                continue
            existing.add(ext)
        keep.append(idx)
    return keep


def check_body(body: Any) -> None:
    if not isinstance(body, (dict, list)):
        raise invalid('The body must be {"tasks": [...]} with judgements per task', param="tasks")
