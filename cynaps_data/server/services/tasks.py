"""Bulk task upload: validate the whole batch first, then one multi-row insert.

Wire form of one task: ``{"data": {...}, "external_id": str|int|null, "gold": label|null,
"predictions": label|list|null}``; unknown keys are rejected. ``(project_id, external_id)`` is
unique, so re-uploading the same ids inserts nothing (counted as ``duplicates``). No ORM object
is built per row, and a batch is stored in one transaction: whole or not at all.

On SQLite the batch never becomes Python objects: :mod:`.sqlite_batch` screens it in SQL
(``json_each``) and inserts it with one ``INSERT … SELECT``; only items that need the annotation
type's own check (gold, predictions) or that fail the screen are parsed, by :class:`ItemValidator`,
which words every error. Other databases parse the body and use ``executemany``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from ...types import get_type
from .. import pg_copy
from ..db import Database
from ..problems import Problem, invalid, invalid_state
from ..tables import projects
from . import limits, sqlite_batch
from . import projects as project_service

WIRE_KEYS = frozenset({"data", "external_id", "gold", "predictions"})
MAX_EXTERNAL_ID = 200
UPLOAD_STATES = frozenset({"draft", "pending_deposit"})


def bad_item(i: int, message: str, field: str | None = None) -> Problem:
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


class ItemValidator:
    """Validates one wire item against a project; the only place that words item errors."""

    def __init__(self, project: Any) -> None:
        self.atype = get_type(project.annotation_type)
        self.labels = project.labels
        #: the type's own check of the task fields it reads (optional hook), else None
        self.checks_data = getattr(self.atype, "validate_data", None)

    def data(self, i: int, data: Any) -> None:
        """The type's upload check of one task's data (e.g. boxes need the image size): a task
        no annotator could answer is refused now, not after its deposit is locked."""
        if self.checks_data is not None:
            try:
                self.checks_data(data, self.labels)
            except ValueError as exc:
                raise bad_item(i, str(exc), "data") from None

    def gold(self, i: int, gold: Any, data: Any = None) -> str | None:
        if gold is None:
            return None
        try:
            return orjson.dumps(self.atype.validate_value(gold, self.labels, data)).decode()
        except ValueError as exc:
            raise bad_item(i, str(exc), "gold") from None

    def _one_value(self, value: list, data: Any) -> bool:
        try:
            self.atype.validate_value(value, self.labels, data)
        except ValueError:
            return False
        return True

    def predictions(self, i: int, preds: Any, data: Any = None) -> str | None:
        """``predictions``: one value, ``{"label": value, ...}``, or a list of those; a
        non-empty list that is itself a valid value of the type (a label set, an order, a
        list of spans or boxes) is one prediction and stored as a list of one."""
        if preds is None:
            return None
        if isinstance(preds, list) and preds and self._one_value(preds, data):
            preds = [preds]  # one prediction whose value is a list (label set, order, spans)
        for value in preds if isinstance(preds, list) else [preds]:
            label = value.get("label") if isinstance(value, dict) else value
            try:
                self.atype.validate_value(label, self.labels, data)
            except ValueError as exc:
                raise bad_item(i, str(exc), "predictions") from None
        return orjson.dumps(preds).decode()

    def __call__(self, i: int, item: Any) -> tuple[str | None, str, str | None, str | None]:
        """``(external_id, data_json, gold_json, predictions_json)`` or a 422 naming the item."""
        if type(item) is not dict:
            raise bad_item(i, f"each task must be an object, got {type(item).__name__}")
        data = item.get("data")
        if type(data) is not dict:
            raise bad_item(i, "'data' must be an object of task fields", "data")
        self.data(i, data)
        if len(item) > 1 and not item.keys() <= WIRE_KEYS:
            unknown = sorted(set(item) - WIRE_KEYS)[0]
            raise bad_item(i, f"unknown field {unknown!r}; allowed: {sorted(WIRE_KEYS)}", unknown)
        ext = item.get("external_id")
        if ext is not None:
            if type(ext) is int:
                ext = str(ext)
            elif type(ext) is not str or not ext or len(ext) > MAX_EXTERNAL_ID:
                raise bad_item(
                    i,
                    f"must be a non-empty string of at most {MAX_EXTERNAL_ID} characters",
                    "external_id",
                )
        return (
            ext,
            orjson.dumps(data).decode(),
            self.gold(i, item.get("gold"), data),
            self.predictions(i, item.get("predictions"), data),
        )


def build_rows(project: Any, items: list) -> list[tuple]:
    """Validate every item and return insert rows; the first bad item raises, naming it."""
    validate = ItemValidator(project)
    needed = project.quality_settings["min_annotators"]
    now = time.time()
    return [(project.id, *validate(i, item), needed, now) for i, item in enumerate(items)]


def decode_body(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problem(400, "invalid_utf8", f"The body is not valid UTF-8: {exc}") from None


def upload(db: Database, owner_id: str, project_id: str, raw: bytes, max_tasks: int) -> dict:
    """Validate and store one batch (the raw JSON body); returns the upload summary."""
    limits.check_body(raw)  # one nesting limit every export can serialise (issue 12)
    with db.read() as conn:
        check_state(project_service.load(conn, owner_id, project_id))
    text = decode_body(raw) if db.is_sqlite else ""
    if db.is_sqlite and sqlite_batch.handles(text):
        with db.write() as conn:
            project = project_service.load(conn, owner_id, project_id, lock=True)
            check_state(project)  # re-checked inside the write lock
            received, created, source_schema = sqlite_batch.insert(conn, project, text, max_tasks)
            return finish_batch(conn, project_id, received, created, source_schema)
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "invalid_json", f"The body is not valid JSON: {exc}") from None
    items = parse_batch(body, max_tasks)
    source_schema = body.get("source_schema") if isinstance(body, dict) else None
    with db.read() as conn:
        rows = build_rows(project_service.load(conn, owner_id, project_id), items)
    with db.write() as conn:
        project = project_service.load(conn, owner_id, project_id, lock=True)
        check_state(project)
        gold = [r[3] for r in rows] if any(r[3] is not None for r in rows) else None
        preds = [r[4] for r in rows] if any(r[4] is not None for r in rows) else None
        created = insert_rows(
            conn, project, [r[1] for r in rows], [r[2] for r in rows], gold, preds
        )
        return finish_batch(conn, project_id, len(rows), created, source_schema)


def count_created(conn: sa.Connection, project_id: str, created: int) -> int:
    """Add ``created`` to the project's task count (same transaction); returns the new count."""
    return int(
        conn.execute(
            projects.update()
            .where(projects.c.id == project_id)
            .values(task_count=projects.c.task_count + created)
            .returning(projects.c.task_count)
        ).scalar_one()
    )


def finish_batch(
    conn: sa.Connection, project_id: str, received: int, created: int, source_schema: Any
) -> dict:
    if source_schema is not None:
        conn.execute(
            projects.update().where(projects.c.id == project_id).values(source_schema=source_schema)
        )
    total = count_created(conn, project_id, created)
    return {
        "object": "upload_result",
        "task_count": received,
        "created": created,
        "duplicates": received - created,
        "project_task_count": int(total),
    }


def check_state(project: Any) -> None:
    if project.state not in UPLOAD_STATES or project.deposit_cents is not None:
        raise invalid_state(
            f"Tasks can be added only before the deposit is paid (project is {project.state!r}"
            f"{', deposit paid' if project.deposit_cents is not None else ''}). "
            "Create a new project for more data."
        )


_SAFE_ID = re.compile(r"^[A-Za-z0-9_]{1,40}$")
UPLOAD_CACHE_KIB = 64 * 1024  # SQLite page cache of a connection that stored an upload batch
ROWS_PER_STATEMENT = 250  # rows per multi-row INSERT (SQLite allows 32,766 parameters)


def insert_rows(
    conn: sa.Connection,
    project: Any,
    external_ids: Sequence[str | None] | None,
    data: Sequence[str],
    gold: Sequence[str | None] | None = None,
    predictions: Sequence[str | None] | None = None,
) -> int:
    """Insert validated task rows given as columns, in order, skipping ``(project_id,
    external_id)`` pairs already present; returns the rows created. The one task insert of
    every upload path but SQLite's JSON fast path (:mod:`.sqlite_batch`) and imports (which
    need the new ids).

    ``data`` holds JSON object texts, ``gold``/``predictions`` JSON texts or ``None``; a column
    given as ``None`` is NULL for every row. Each statement inserts :data:`ROWS_PER_STATEMENT`
    rows (multi-row ``VALUES``: about 40% less SQLite time per row than one row per execution);
    values shared by the batch (project id, ``needed``, absent columns) are SQL literals, the
    timestamp is one parameter per statement on SQLite, so each row binds only its own values.
    """
    if conn.dialect.name == "postgresql":  # COPY into a staging table (server/pg_copy.py)
        return pg_copy.copy_tasks(conn, project, external_ids, data, gold, predictions)
    n = len(data)
    if not n:
        return 0
    sqlite = conn.dialect.name == "sqlite"
    now = float(time.time())
    columns: list[Sequence] = []
    template: list[str] = []
    if _SAFE_ID.match(project.id):  # always true for platform ids; else bind it
        template.append(f"'{project.id}'")
    else:
        template.append("{}")
        columns.append([project.id] * n)
    for column in (external_ids, data, gold, predictions):
        if column is None:
            template.append("NULL")
        else:
            if len(column) != n:
                raise ValueError("task columns differ in length")
            template.append("{}")
            columns.append(column)
    template.append(str(int(project.quality_settings["min_annotators"])))
    if sqlite:
        template.append("?1")  # the statement's first parameter: the timestamp
    else:
        template.append("{}")
        columns.append([now] * n)
    row = "(" + ", ".join(template) + ", 'pending', 0, false, false)"
    width = len(columns)

    def statement(rows: int) -> str:
        if sqlite:
            marks = iter(f"?{i}" for i in range(2, 2 + rows * width))
        else:
            marks = iter(["%s"] * (rows * width))
        values = ", ".join(row.format(*(next(marks) for _ in range(width))) for _ in range(rows))
        return (
            "INSERT INTO tasks (project_id, external_id, data, gold, predictions, needed,"
            f" updated_at, status, n_judgements, charged, released) VALUES {values}"
            " ON CONFLICT (project_id, external_id) DO NOTHING"
        )

    flat: list[Any] = [None] * (n * width)
    for j, column in enumerate(columns):
        flat[j::width] = column
    head = [now] if sqlite else []
    step = ROWS_PER_STATEMENT * width
    full = (n // ROWS_PER_STATEMENT) * step
    created = 0
    cursor = conn.connection.driver_connection.cursor()
    try:
        if sqlite:
            # room for the task indexes' pages, so that consecutive batches find them cached
            cursor.execute(f"PRAGMA cache_size = -{UPLOAD_CACHE_KIB}")
        if full:
            cursor.executemany(
                statement(ROWS_PER_STATEMENT),
                (head + flat[i : i + step] for i in range(0, full, step)),
            )
            created += cursor.rowcount
        if full < len(flat):
            cursor.execute(statement(n - full // width), head + flat[full:])
            created += cursor.rowcount
        return created
    finally:
        cursor.close()
