"""Task batches as an Arrow IPC stream (``Content-Type: application/vnd.apache.arrow.stream``).

The typed-ingest client (``cynaps_data.io.ingest``) builds each row's task data as JSON text with
Arrow kernels; sending those columns as Arrow saves the server from parsing one big JSON
document and walking it item by item. Body contract, one row per task:

========================  ===================================================================
column                    content
========================  ===================================================================
``data`` (required)       string: the task data as a JSON object text
``external_id``           string or integer, or null (at most 200 characters)
``gold``                  string: the gold value as JSON text, or null
``predictions``           string: the predictions as JSON text, or null
========================  ===================================================================

The schema metadata key ``cynaps.source_schema`` may carry the source schema (JSON) that the
JSON body sends as ``"source_schema"``. Every row is validated (data must parse to an object;
gold and predictions through the same :class:`~.tasks.ItemValidator` as the JSON path) before one
``executemany`` (batch-wide values as literals) with ``ON CONFLICT (project_id, external_id) DO NOTHING`` stores the batch, whole
or not at all. Errors name the row like the JSON path does (``tasks[i].field``).
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from ..db import Database
from ..problems import Problem, invalid
from . import projects as project_service
from . import tasks as rules

CONTENT_TYPE = "application/vnd.apache.arrow.stream"
COLUMNS = frozenset({"data", "external_id", "gold", "predictions"})
SCHEMA_KEY = b"cynaps.source_schema"


def read_table(raw: bytes, max_tasks: int) -> tuple[pa.Table, Any]:
    """The batch table and the source schema (or ``None``); 4xx problems for a bad body."""
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(raw))
        table = reader.read_all()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError) as exc:
        raise Problem(400, "invalid_arrow", f"The body is not an Arrow IPC stream: {exc}") from None
    unknown = sorted(set(table.column_names) - COLUMNS)
    if unknown:
        raise invalid(
            f"Unknown column {unknown[0]!r}; allowed: {sorted(COLUMNS)}", param=unknown[0]
        )
    if "data" not in table.column_names:
        raise invalid("The batch needs a 'data' column of JSON object texts", param="data")
    for name in ("data", "gold", "predictions"):
        if name in table.column_names and not pa.types.is_string(table.schema.field(name).type):
            raise invalid(
                f"Column {name!r} must hold strings (JSON text), not {table.schema.field(name).type}",
                param=name,
            )
    if "external_id" in table.column_names:
        t = table.schema.field("external_id").type
        if not (pa.types.is_string(t) or pa.types.is_integer(t) or pa.types.is_null(t)):
            raise invalid(
                f"Column 'external_id' must hold strings or integers, not {t}", param="external_id"
            )
    if table.num_rows > max_tasks:
        raise Problem(
            413,
            "batch_too_large",
            f"A batch holds at most {max_tasks} tasks, got {table.num_rows}; split it (the client does this for you).",
            param="tasks",
        )
    source_schema = None
    meta = table.schema.metadata or {}
    if SCHEMA_KEY in meta:
        try:
            source_schema = orjson.loads(meta[SCHEMA_KEY])
        except orjson.JSONDecodeError as exc:
            raise invalid(
                f"Schema metadata {SCHEMA_KEY.decode()!r} is not JSON: {exc}", param="source_schema"
            ) from None
        if not isinstance(source_schema, dict):
            raise invalid("source_schema must be a JSON object", param="source_schema")
    return table, source_schema


def _column(table: pa.Table, name: str) -> list:
    if name not in table.column_names:
        return [None] * table.num_rows
    return table.column(name).to_pylist()


def build_rows(project: Any, table: pa.Table) -> list[tuple]:
    """Validate every row; returns ``(external_id, data)`` rows, or ``(external_id, data, gold,
    predictions)`` when any row has gold or predictions. The first bad row raises, naming it."""
    data = table.column("data")
    nulls = data.null_count
    if nulls:
        i = int(pc.index(pc.is_null(data), True).as_py())
        raise rules._bad(i, "'data' must be an object of task fields", "data")
    texts = data.to_pylist()
    loads = orjson.loads
    for i, text in enumerate(texts):
        try:
            ok = type(loads(text)) is dict
        except orjson.JSONDecodeError:
            ok = False
        if not ok:
            raise rules._bad(i, "'data' must be an object of task fields (valid JSON)", "data")
    ids: list = [None] * table.num_rows
    if "external_id" in table.column_names:
        col = table.column("external_id")
        if pa.types.is_string(col.type):
            length = pc.utf8_length(col)
            bad = pc.fill_null(
                pc.or_(pc.less(length, 1), pc.greater(length, rules.MAX_EXTERNAL_ID)), False
            )
            if pc.any(bad).as_py():
                i = int(pc.index(bad, True).as_py())
                raise rules._bad(
                    i,
                    f"must be a non-empty string of at most {rules.MAX_EXTERNAL_ID} characters",
                    "external_id",
                )
            ids = col.to_pylist()
        elif pa.types.is_integer(col.type):
            ids = col.cast(pa.string()).to_pylist()
    validate = rules.ItemValidator(project)
    golds = _column(table, "gold")
    preds = _column(table, "predictions")
    for field, values, check in (
        ("gold", golds, validate.gold),
        ("predictions", preds, validate.predictions),
    ):
        for i, text in enumerate(values):
            if text is None:
                continue
            try:
                value = loads(text)
            except orjson.JSONDecodeError:
                raise rules._bad(i, "must be JSON text", field) from None
            values[i] = check(i, value)
    if any(g is not None for g in golds) or any(p is not None for p in preds):
        return list(zip(ids, texts, golds, preds, strict=True))
    return list(zip(ids, texts, strict=True))


_SAFE_ID = re.compile(r"^[A-Za-z0-9_]{1,40}$")


def insert_rows(conn: sa.Connection, project: Any, rows: list[tuple]) -> int:
    """Insert ``(external_id, data[, gold, predictions])`` rows, skipping existing ids; returns
    rows created. Same columns and conflict rule as :func:`.tasks.insert_rows`, but the values
    shared by the batch are SQL literals, so each row binds 2 or 4 parameters instead of 7
    (about twice the insert rate on SQLite)."""
    if not rows:
        return 0
    pid, needed, now = (
        project.id,
        int(project.quality_settings["min_annotators"]),
        float(time.time()),
    )
    if not _SAFE_ID.match(pid):  # never happens with platform ids; keep the bound-parameter path
        full = [
            (
                pid,
                r[0],
                r[1],
                r[2] if len(r) > 2 else None,
                r[3] if len(r) > 2 else None,
                needed,
                now,
            )
            for r in rows
        ]
        return rules.insert_rows(conn, full)
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    extras = f"{mark}, {mark}" if len(rows[0]) > 2 else "NULL, NULL"
    sql = (
        "INSERT INTO tasks (project_id, external_id, data, gold, predictions, needed, updated_at,"
        " status, n_judgements, charged, released) VALUES "
        f"('{pid}', {mark}, {mark}, {extras}, {needed}, {now!r}, 'pending', 0, false, false) "
        "ON CONFLICT (project_id, external_id) DO NOTHING"
    )
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.executemany(sql, rows)
        return cursor.rowcount
    finally:
        cursor.close()


def upload(db: Database, owner_id: str, project_id: str, raw: bytes, max_tasks: int) -> dict:
    """Validate and store one Arrow batch; returns the same summary as the JSON path."""
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
    rules._check_state(project)
    table, source_schema = read_table(raw, max_tasks)
    rows = build_rows(project, table)
    with db.write() as conn:
        project = project_service.load(conn, owner_id, project_id, lock=True)
        rules._check_state(project)  # re-checked inside the write lock
        created = insert_rows(conn, project, rows)
        return rules._finish(conn, project_id, len(rows), created, source_schema)
