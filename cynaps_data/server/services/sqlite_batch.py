"""SQLite fast path for task batches: screen and insert in SQL, never row by row in Python.

The raw JSON text of the request goes to SQLite's ``json_each``. One query screens every item
for the structural rules of :class:`~.tasks.ItemValidator` (object, ``data`` object, known keys,
``external_id`` type and length) and returns the first failing index; that single item is then
parsed and handed to the validator, so every error message comes from one place. Items carrying
``gold`` or ``predictions`` are checked and normalised by the validator (the annotation type owns
those rules) into a temporary table; then one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` stores
the batch in item order.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import sqlalchemy as sa

from ..problems import Problem, invalid
from . import tasks as rules

_SCREEN = """
SELECT min(CAST(j.key AS INTEGER)) FROM json_each(:body, :path) AS j
WHERE j.type != 'object'
   OR coalesce(json_type(j.value, '$.data'), '') != 'object'
   OR coalesce(json_type(j.value, '$.external_id'), 'null') NOT IN ('null', 'integer', 'text')
   OR (json_type(j.value, '$.external_id') = 'text'
       AND length(json_extract(j.value, '$.external_id')) NOT BETWEEN 1 AND :max_ext)
   OR json_remove(j.value, '$.data', '$.external_id', '$.gold', '$.predictions') != '{}'
"""

_NEEDS_TYPE_CHECK = """
SELECT CAST(j.key AS INTEGER), j.value FROM json_each(:body, :path) AS j
WHERE coalesce(json_type(j.value, '$.gold'), 'null') != 'null'
   OR coalesce(json_type(j.value, '$.predictions'), 'null') != 'null'
"""

_INSERT = """
INSERT INTO tasks (project_id, external_id, data, gold, predictions, needed, updated_at,
                   status, n_judgements, charged, released)
SELECT :project_id, CAST(json_extract(j.value, '$.external_id') AS TEXT),
       json_extract(j.value, '$.data'), x.gold, x.predictions, :needed, :now,
       'pending', 0, 0, 0
FROM json_each(:body, :path) AS j LEFT JOIN temp._upload_extras AS x ON x.idx = j.key
WHERE true ORDER BY CAST(j.key AS INTEGER)
ON CONFLICT (project_id, external_id) DO NOTHING
"""


def insert(conn: sa.Connection, project: Any, text: str, max_tasks: int) -> tuple[int, int, Any]:
    """Screen and insert one batch; returns ``(received, created, source_schema)``."""
    db = conn.connection.driver_connection
    if not db.execute("SELECT json_valid(?)", (text,)).fetchone()[0]:
        try:
            orjson.loads(text)
            detail = "rejected by the JSON parser"
        except orjson.JSONDecodeError as exc:
            detail = str(exc)
        raise Problem(400, "invalid_json", f"The body is not valid JSON: {detail}")
    top = db.execute("SELECT json_type(?)", (text,)).fetchone()[0]
    source_schema = None
    path = "$"
    if top == "object":
        keys = {k for (k,) in db.execute("SELECT key FROM json_each(?)", (text,))}
        extra = sorted(keys - {"tasks", "source_schema"})
        if extra:
            raise invalid(f"Unknown field {extra[0]!r} in upload body", param=extra[0])
        path = "$.tasks"
        raw_schema = db.execute("SELECT json_extract(?, '$.source_schema')", (text,)).fetchone()[0]
        if raw_schema is not None:
            source_schema = orjson.loads(raw_schema) if isinstance(raw_schema, str) else raw_schema
    if db.execute("SELECT json_type(?, ?)", (text, path)).fetchone()[0] != "array":
        raise invalid('The body must be a JSON list of tasks or {"tasks": [...]}', param="tasks")
    received = db.execute("SELECT json_array_length(?, ?)", (text, path)).fetchone()[0]
    if received > max_tasks:
        raise Problem(
            413,
            "batch_too_large",
            f"A batch holds at most {max_tasks} tasks, got {received}; "
            "split it (the client does this for you).",
            param="tasks",
        )
    params = {"body": text, "path": path}
    validate = rules.ItemValidator(project)
    bad = db.execute(_SCREEN, {**params, "max_ext": rules.MAX_EXTERNAL_ID}).fetchone()[0]
    if bad is not None:
        item_text = db.execute(
            "SELECT value FROM json_each(:body, :path) WHERE key = :i", {**params, "i": bad}
        ).fetchone()[0]
        item = orjson.loads(item_text) if isinstance(item_text, str) else item_text
        validate(bad, item)  # raises with the exact reason
        raise rules._bad(bad, "invalid task")
    db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS _upload_extras"
        " (idx INTEGER PRIMARY KEY, gold TEXT, predictions TEXT)"
    )
    db.execute("DELETE FROM temp._upload_extras")
    extras = [
        (i, validate.gold(i, item.get("gold")), validate.predictions(i, item.get("predictions")))
        for i, item in (
            (i, orjson.loads(value)) for i, value in db.execute(_NEEDS_TYPE_CHECK, params)
        )
    ]
    if extras:
        db.executemany("INSERT INTO temp._upload_extras VALUES (?, ?, ?)", extras)
    cursor = db.execute(
        _INSERT,
        {
            **params,
            "project_id": project.id,
            "needed": project.quality_settings["min_annotators"],
            "now": time.time(),
        },
    )
    created = cursor.rowcount
    if extras:
        db.execute("DELETE FROM temp._upload_extras")
    return received, created, source_schema
