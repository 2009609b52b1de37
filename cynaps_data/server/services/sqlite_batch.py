"""SQLite fast path for task batches: screen and insert in SQL, never row by row in Python.

The raw JSON text of the request goes to SQLite's ``json_each``. One query screens every item
for the structural rules of :class:`~.tasks.ItemValidator` (object, ``data`` object, known keys,
``external_id`` type and length) and returns the first failing index; that single item is then
parsed and handed to the validator, so every error message comes from one place. Items carrying
``gold`` or ``predictions`` are checked and normalised by the validator (the annotation type owns
those rules) into a temporary table; then one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` stores
the batch in item order. When no item can carry those keys, the screen runs on another core
during the insert and a failure rolls the insert back.
"""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import sqlalchemy as sa

from ..problems import Problem, invalid
from . import tasks as rules

_SCREEN = """
SELECT min(CAST(j.key AS INTEGER)) FROM json_each(:body, :path) AS j
WHERE CASE WHEN j.type != 'object' THEN 1 ELSE
      coalesce(json_type(j.value, '$.data'), '') != 'object'
   OR coalesce(json_type(j.value, '$.external_id'), 'null') NOT IN ('null', 'integer', 'text')
   OR (json_type(j.value, '$.external_id') = 'text'
       AND length(json_extract(j.value, '$.external_id')) NOT BETWEEN 1 AND :max_ext)
   OR json_remove(j.value, '$.data', '$.external_id', '$.gold', '$.predictions') != '{}'
   END
"""

_NEEDS_TYPE_CHECK = """
SELECT CAST(j.key AS INTEGER), j.value FROM json_each(:body, :path) AS j
WHERE coalesce(json_type(j.value, '$.gold'), 'null') != 'null'
   OR coalesce(json_type(j.value, '$.predictions'), 'null') != 'null'
"""

_DATA = """
SELECT CAST(j.key AS INTEGER), json_extract(j.value, '$.data') FROM json_each(:body, :path) AS j
"""

_INSERT = """
INSERT INTO tasks (project_id, external_id, data, gold, predictions, needed, updated_at,
                   status, n_judgements, charged, released)
SELECT :project_id, CAST(json_extract(j.value, '$.external_id') AS TEXT),
       json_extract(j.value, '$.data'), x.gold, x.predictions, :needed, :now,
       'pending', 0, 0, 0
FROM json_each(:body, :path) AS j LEFT JOIN temp._upload_extras AS x ON x.idx = j.key
WHERE true
ON CONFLICT (project_id, external_id) DO NOTHING
"""


_SHAPE = """
SELECT top,
       CASE top WHEN 'object' THEN json_type(:body, '$.tasks') ELSE top END,
       CASE top WHEN 'object' THEN json_array_length(:body, '$.tasks')
                WHEN 'array' THEN json_array_length(:body) END,
       CASE top WHEN 'object' THEN json_extract(:body, '$.source_schema') END,
       CASE top WHEN 'object' THEN json_remove(:body, '$.tasks', '$.source_schema') END
FROM (SELECT CASE WHEN json_valid(:body) THEN json_type(:body) END AS top)
"""


def _shape(db: sqlite3.Connection, text: str, max_tasks: int) -> tuple[str, int, Any]:
    """``(path to the task array, task count, source_schema)``; 4xx for a malformed body.

    One statement, so SQLite parses the body once for all of these (its JSON parse cache).
    """
    top, array_type, received, raw_schema, rest = db.execute(_SHAPE, {"body": text}).fetchone()
    if top is None:
        try:
            orjson.loads(text)
            detail = "rejected by the JSON parser"
        except orjson.JSONDecodeError as exc:
            detail = str(exc)
        raise Problem(400, "invalid_json", f"The body is not valid JSON: {detail}")
    source_schema = None
    path = "$"
    if top == "object":
        extra = sorted(orjson.loads(rest))
        if extra:
            raise invalid(f"Unknown field {extra[0]!r} in upload body", param=extra[0])
        path = "$.tasks"
        if raw_schema is not None:
            source_schema = orjson.loads(raw_schema) if isinstance(raw_schema, str) else raw_schema
    if array_type != "array":
        raise invalid('The body must be a JSON list of tasks or {"tasks": [...]}', param="tasks")
    if received > max_tasks:
        raise Problem(
            413,
            "batch_too_large",
            f"A batch holds at most {max_tasks} tasks, got {received}; "
            "split it (the client does this for you).",
            param="tasks",
        )
    return path, received, source_schema


def _first_bad(db: sqlite3.Connection, params: dict) -> int | None:
    return db.execute(_SCREEN, {**params, "max_ext": rules.MAX_EXTERNAL_ID}).fetchone()[0]


def _screen_alone(params: dict) -> int | None:
    """The screen on a private in-memory connection (it reads no table), in a worker thread."""
    db = sqlite3.connect(":memory:")
    try:
        return _first_bad(db, params)
    finally:
        db.close()


def _explain(db: sqlite3.Connection, params: dict, index: int, validate: Any) -> Problem:
    """The validator's own error for the item the screen flagged."""
    item_text = db.execute(
        "SELECT CASE WHEN type IN ('object', 'array', 'true', 'false', 'null')"
        " THEN CASE type WHEN 'object' THEN value WHEN 'array' THEN value ELSE type END"
        " ELSE json_quote(value) END FROM json_each(:body, :path) WHERE key = :i",
        {**params, "i": index},
    ).fetchone()[0]
    item = orjson.loads(item_text)
    try:
        validate(index, item)
    except Problem as problem:
        return problem
    return rules.bad_item(index, "invalid task")


def handles(text: str) -> bool:
    """Whether this path can take the body: SQLite's JSON paths do not match keys written with
    ``\\u`` escapes, so such (rare) bodies go through the Python validator instead."""
    return "\\u" not in text


def may_carry_extras(text: str) -> bool:
    """Whether any item could hold ``gold`` or ``predictions``."""
    return '"gold"' in text or '"predictions"' in text


_screener: ThreadPoolExecutor | None = None


def insert(conn: sa.Connection, project: Any, text: str, max_tasks: int) -> tuple[int, int, Any]:
    """Screen and insert one batch; returns ``(received, created, source_schema)``.

    When no item can carry gold or predictions (the common case) the screen runs on another
    core while the insert does: SQLite releases the GIL, and a failed screen raises before the
    write transaction commits, so the batch is rolled back whole.
    """
    global _screener
    db = conn.connection.driver_connection
    path, received, source_schema = _shape(db, text, max_tasks)
    params = {"body": text, "path": path}
    validate = rules.ItemValidator(project)
    db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS _upload_extras"
        " (idx INTEGER PRIMARY KEY, gold TEXT, predictions TEXT)"
    )
    db.execute("DELETE FROM temp._upload_extras")
    screened = None
    if may_carry_extras(text) or validate.checks_data is not None:
        bad = _first_bad(db, params)
        if bad is not None:
            raise _explain(db, params, bad, validate)
        if validate.checks_data is not None:  # the type reads task fields: check each task
            for i, data in db.execute(_DATA, params):
                validate.data(i, orjson.loads(data))
        extras = [
            (
                i,
                validate.gold(i, item.get("gold"), item.get("data")),
                validate.predictions(i, item.get("predictions"), item.get("data")),
            )
            for i, item in (
                (i, orjson.loads(value)) for i, value in db.execute(_NEEDS_TYPE_CHECK, params)
            )
        ]
        if extras:
            db.executemany("INSERT INTO temp._upload_extras VALUES (?, ?, ?)", extras)
    else:
        if _screener is None:
            _screener = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cynaps-screen")
        screened = _screener.submit(_screen_alone, params)
    failure: sqlite3.Error | None = None
    try:
        cursor = db.execute(
            _INSERT,
            {
                **params,
                "project_id": project.id,
                "needed": project.quality_settings["min_annotators"],
                "now": time.time(),
            },
        )
    except sqlite3.Error as exc:  # a malformed item the parallel screen is about to name
        failure = exc
    bad = screened.result() if screened is not None else None
    if bad is not None:
        raise _explain(db, params, bad, validate)  # rolls the insert back
    if failure is not None:
        raise failure
    db.execute("DELETE FROM temp._upload_extras")
    return received, cursor.rowcount, source_schema
