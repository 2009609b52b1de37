"""Exports: the seed's JSON and the bulk Arrow tables the typed client exports are built from.

JSON keeps the seed's shape: ``record["annotations"][0]["result"]["value"]`` is the task's final
label; the individual judgements and the consensus metadata are in the record too.

Arrow (``arrow_tasks``, ``arrow_judgements``) never builds a Python object per row beyond the
DB-API tuples: columns are assembled with pyarrow, the task ``data`` JSON text is parsed in bulk
with ``pyarrow.json`` and the per-task vote statistics are computed with numpy over the
judgement columns.

Downloading results releases the escrowed charges to the annotators (once per judgement).
"""

from __future__ import annotations

import io
import time
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.json as pa_json
import sqlalchemy as sa

from ..db import Database
from ..problems import invalid
from ..tables import judgements, tasks
from . import billing
from . import projects as project_service

#: Metadata key (Arrow schema) holding the project description as JSON.
PROJECT_KEY = b"cynaps.project"
#: Tasks changed within this many seconds before the export started are sent again next time
#: (a write that was in flight while we read may commit with an earlier timestamp).
CURSOR_GRACE_SECONDS = 2.0
STATUSES = ["pending", "disputed", "completed"]
LABEL_SOURCES = ["consensus", "majority", "expert", "imported", "none"]
ROLES = ["annotator", "expert"]
ORIGINS = ["platform", "imported"]


def _consensus(task: Any, votes: list[dict], labels: list) -> dict:
    annotator_votes = [v["label"] for v in votes if v["role"] == "annotator"]
    counts = Counter(annotator_votes)
    n = len(annotator_votes)
    return {
        "label": orjson.loads(task.final_label) if task.final_label else None,
        "label_source": task.label_source or "none",
        "status": task.status,
        "agreement": task.agreement,
        "n_annotations": n,
        "vote_distribution": {label: counts.get(label, 0) / n for label in labels} if n else {},
        "annotator_ids": [v["annotator_id"] for v in votes if v["role"] == "annotator"],
        "expert_label": next((v["label"] for v in votes if v["role"] == "expert"), None),
    }


def json_records(
    db: Database, owner_id: str, project_id: str, *, release: bool = True
) -> list[dict]:
    """The seed-shaped JSON export of every task, in upload order."""
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
        by_task: dict[int, list[dict]] = defaultdict(list)
        for j in conn.execute(
            sa.select(judgements)
            .where(judgements.c.project_id == project_id)
            .order_by(judgements.c.id)
        ):
            by_task[j.task_id].append(
                {
                    "annotator_id": j.annotator_id,
                    "role": j.role,
                    "label": orjson.loads(j.value),
                    "duration": j.duration,
                    "created_at": j.created_at,
                }
            )
        records = []
        for task in conn.execute(
            sa.select(tasks).where(tasks.c.project_id == project_id).order_by(tasks.c.id)
        ):
            votes = by_task.get(task.id, [])
            consensus = _consensus(task, votes, project.labels)
            annotations = []
            if consensus["label"] is not None:
                annotations.append(
                    {
                        "type": project.annotation_type,
                        "result": {
                            "value": consensus["label"],
                            **{k: consensus[k] for k in ("label_source", "agreement")},
                        },
                        "ground_truth": consensus["label_source"] == "expert",
                    }
                )
            records.append(
                {
                    "id": task.id,
                    "external_id": task.external_id,
                    "data": orjson.loads(task.data),
                    "gold": orjson.loads(task.gold) if task.gold else None,
                    "annotations": annotations,
                    "judgements": votes,
                    "consensus": consensus,
                }
            )
    if release:
        release_results(db, owner_id, project_id)
    return records


def release_results(db: Database, owner_id: str, project_id: str) -> int:
    """The seed's final payment: escrow → annotators for every charged, unpaid judgement."""
    with db.write() as conn:
        project = project_service.load(conn, owner_id, project_id, lock=True)
        return billing.release_escrow(conn, project)


# -- Arrow ---------------------------------------------------------------------------------------
def _cursor(conn: sa.Connection):
    """The DB-API cursor under a SQLAlchemy connection and its parameter mark."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return conn.connection.driver_connection.cursor(), mark


def _fetch_columns(conn: sa.Connection, sql: str, params: tuple, n_columns: int) -> list[tuple]:
    cursor, _ = _cursor(conn)
    try:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        return [() for _ in range(n_columns)]
    return list(zip(*rows, strict=True))


def _timestamps(seconds: Any) -> pa.Array:
    values = np.asarray(seconds, dtype="float64")
    return pa.array((values * 1e6).round().astype("int64"), pa.timestamp("us", tz="UTC"))


def _codes(json_values: Any, labels: list) -> np.ndarray:
    """int32 codes of JSON-text values in ``labels`` order; -1 for null or anything else."""
    if len(json_values) == 0:
        return np.zeros(0, dtype="int32")
    encoded = pa.array(json_values, pa.string()).dictionary_encode()
    position = {label: i for i, label in enumerate(labels) if isinstance(label, (str, int, float))}
    lookup = np.array(
        [
            position.get(orjson.loads(text), -1) if text is not None else -1
            for text in encoded.dictionary.to_pylist()
        ]
        + [-1],
        dtype="int32",
    )
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    indices = np.where(
        encoded.indices.is_null().to_numpy(zero_copy_only=False), len(lookup) - 1, indices
    )
    return lookup[indices.astype("int64")]


def _dictionary(codes: np.ndarray, names: list) -> pa.DictionaryArray:
    """A dictionary array over ``names`` (in that order); code -1 is null."""
    mask = codes < 0
    indices = pa.array(np.where(mask, 0, codes).astype("int32"), mask=mask)
    return pa.DictionaryArray.from_arrays(indices, pa.array([str(n) for n in names], pa.string()))


def _strings_to_codes(values: Any, names: list[str]) -> np.ndarray:
    position = {n: i for i, n in enumerate(names)}
    encoded = pa.array(values, pa.string()).dictionary_encode()
    lookup = np.array(
        [position.get(v, -1) for v in encoded.dictionary.to_pylist()] + [-1], dtype="int32"
    )
    indices = encoded.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)
    return lookup[indices.astype("int64")] if len(values) else np.zeros(0, dtype="int32")


def parse_data(texts: Any) -> pa.StructArray:
    """The task ``data`` JSON objects as one Arrow struct column, parsed in bulk.

    Types are inferred by ``pyarrow.json`` (int64, double, bool, string, list, struct), except
    that strings are never turned into timestamps (original dtypes come back from the upload's
    source schema on the client). Columns whose values mix JSON types fall back to one JSON text
    column each.
    """
    if len(texts) == 0:
        return pa.array([], pa.struct([]))
    blob = "\n".join(texts).encode()
    read = pa_json.ReadOptions(block_size=4 << 20)
    try:
        table = pa_json.read_json(io.BytesIO(blob), read_options=read)
        schema = _no_timestamps(table.schema)
        if schema != table.schema:
            parse = pa_json.ParseOptions(explicit_schema=schema)
            table = pa_json.read_json(io.BytesIO(blob), read_options=read, parse_options=parse)
        if table.num_columns == 0:
            return pa.array([{}] * len(texts), pa.struct([]))
        return pa.StructArray.from_arrays(
            [c.combine_chunks() for c in table.columns], names=table.column_names
        )
    except pa.ArrowInvalid:
        return _parse_rowwise(texts)


def _no_timestamps(schema: pa.Schema) -> pa.Schema:
    def fix(t: pa.DataType) -> pa.DataType:
        if pa.types.is_timestamp(t):
            return pa.string()
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, fix(f.type)) for f in t])
        if pa.types.is_list(t):
            return pa.list_(fix(t.value_type))
        return t

    return pa.schema([pa.field(f.name, fix(f.type)) for f in schema])


def _parse_rowwise(texts: Any) -> pa.StructArray:
    rows = [orjson.loads(t) for t in texts]
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    arrays, names = [], []
    for key in keys:
        values = [row.get(key) for row in rows]
        try:
            array = pa.array(values)
            if pa.types.is_timestamp(array.type):
                raise pa.ArrowInvalid("no timestamps")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            array = pa.array(
                [None if v is None else orjson.dumps(v).decode() for v in values], pa.string()
            )
        arrays.append(array)
        names.append(key)
    return pa.StructArray.from_arrays(arrays, names=names)


def _project_meta(
    project: Any, since: float | None, cursor: float, form: str
) -> dict[bytes, bytes]:
    description = {
        "project_id": project.id,
        "name": project.name,
        "annotation_type": project.annotation_type,
        "labels": project.labels,
        "quality_settings": project.quality_settings,
        "state": project.state,
        "source_schema": project.source_schema,
        "form": form,
        "since": since,
        "cursor": cursor,
        "exported_at": time.time(),
    }
    return {PROJECT_KEY: orjson.dumps(description)}


def _check_since(since: float | None) -> None:
    if since is not None and not np.isfinite(since):
        raise invalid("since must be a finite timestamp (seconds since the epoch)", param="since")


def arrow_tasks(
    db: Database, owner_id: str, project_id: str, *, since: float | None = None
) -> pa.Table:
    """One row per task (wide form), ordered by task id.

    Columns: ``task`` int64, ``external_id`` string, ``data`` struct (the task's fields),
    ``gold`` and ``label`` dictionary over the project's labels, ``label_source``, ``status``
    (dictionaries), ``agreement`` and ``confidence`` float64, ``n_annotations`` int64,
    ``vote_distribution`` struct of float64 shares per label (null without votes),
    ``annotator_ids`` list<string>, ``expert_label`` dictionary, ``expert_id`` string,
    ``updated_at`` timestamp[us, UTC]. With ``since``: only tasks changed after it. The schema
    metadata ``cynaps.project`` holds the project description and the next ``cursor``.
    """
    _check_since(since)
    started = time.time()
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
        labels = list(project.labels)
        _, mark = _cursor(conn)
        where = f"project_id = {mark}" + (f" AND updated_at > {mark}" if since is not None else "")
        params = (project_id,) if since is None else (project_id, since)
        (ids, external, data, gold, status, final, source, agreement, updated) = _fetch_columns(
            conn,
            "SELECT id, external_id, data, gold, status, final_label, label_source, agreement,"
            f" updated_at FROM tasks WHERE {where} ORDER BY id",
            params,
            9,
        )
        j_where = f"project_id = {mark}" + (
            f" AND task_id IN (SELECT id FROM tasks WHERE project_id = {mark} AND updated_at > {mark})"
            if since is not None
            else ""
        )
        j_params = (project_id,) if since is None else (project_id, project_id, since)
        j_task, j_worker, j_role, j_value = _fetch_columns(
            conn,
            f"SELECT task_id, annotator_id, role, value FROM judgements WHERE {j_where} ORDER BY id",
            j_params,
            4,
        )
    task_ids = np.asarray(ids, dtype="int64")
    n, k = len(task_ids), len(labels)
    pos = (
        np.searchsorted(task_ids, np.asarray(j_task, dtype="int64")) if n else np.zeros(0, "int64")
    )
    j_codes = _codes(j_value, labels)
    is_expert = (
        np.asarray([r == "expert" for r in j_role], dtype=bool) if j_role else np.zeros(0, bool)
    )
    votes = ~is_expert
    counts = np.bincount(
        pos[votes & (j_codes >= 0)] * k + j_codes[votes & (j_codes >= 0)], minlength=n * k
    ).reshape(n, k)
    n_votes = np.bincount(pos[votes], minlength=n).astype("int64")
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / n_votes[:, None]
    no_votes = n_votes == 0
    label_codes = _codes(final, labels)
    picked = counts[np.arange(n), np.maximum(label_codes, 0)] if n else np.zeros(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(
            (label_codes >= 0) & ~no_votes, picked / np.maximum(n_votes, 1), np.nan
        )
    # annotator ids per task, in judgement order
    worker = pa.array(j_worker, pa.string())
    order = np.argsort(pos[votes], kind="stable")
    offsets = np.concatenate([[0], np.cumsum(n_votes)]).astype("int32")
    annotator_ids = pa.ListArray.from_arrays(
        pa.array(offsets), worker.filter(pa.array(votes)).take(pa.array(order))
    )
    # the expert's verdict (last expert judgement of the task)
    expert_code = np.full(n, -1, dtype="int32")
    expert_row = np.full(n, -1, dtype="int64")
    expert_rows = np.flatnonzero(is_expert)
    expert_code[pos[expert_rows]] = j_codes[expert_rows]
    expert_row[pos[expert_rows]] = expert_rows
    expert_id = (
        worker.take(pa.array(np.where(expert_row < 0, 0, expert_row), mask=expert_row < 0))
        if len(worker)
        else pa.nulls(n, pa.string())
    )

    share_fields = [pa.array(shares[:, i], pa.float64(), mask=no_votes) for i in range(k)]
    vote_distribution = (
        pa.StructArray.from_arrays(
            share_fields, names=[str(x) for x in labels], mask=pa.array(no_votes)
        )
        if k
        else pa.nulls(n, pa.struct([]))
    )
    source_codes = _strings_to_codes(
        [s if s is not None else "none" for s in source], LABEL_SOURCES
    )
    columns = {
        "task": pa.array(task_ids, pa.int64()),
        "external_id": pa.array(external, pa.string()),
        "data": parse_data(data),
        "gold": _dictionary(_codes(gold, labels), labels),
        "label": _dictionary(label_codes, labels),
        "label_source": _dictionary(source_codes, LABEL_SOURCES),
        "status": _dictionary(_strings_to_codes(status, STATUSES), STATUSES),
        "agreement": pa.array(
            np.asarray(agreement, dtype="float64"), pa.float64(), from_pandas=True
        ),
        "confidence": pa.array(confidence, pa.float64(), from_pandas=True),
        "n_annotations": pa.array(n_votes, pa.int64()),
        "vote_distribution": vote_distribution,
        "annotator_ids": annotator_ids,
        "expert_label": _dictionary(expert_code, labels),
        "expert_id": expert_id,
        "updated_at": _timestamps(updated),
    }
    cursor = _next_cursor(updated, since, started)
    table = pa.table(columns)
    return table.replace_schema_metadata(_project_meta(project, since, cursor, "wide"))


def _next_cursor(updated: Any, since: float | None, started: float) -> float:
    """The ``since`` of the next incremental export: the newest change seen, held back by the
    grace period (so a change committed late is sent next time; a task may repeat)."""
    floor = since if since is not None else 0.0
    newest = max(updated) if len(updated) else floor
    return float(max(floor, min(newest, started - CURSOR_GRACE_SECONDS)))


def arrow_judgements(
    db: Database, owner_id: str, project_id: str, *, since: float | None = None
) -> pa.Table:
    """One row per judgement (long form), in the order they were made.

    Columns: ``task`` int64, ``worker`` string, ``label`` dictionary over the project's labels,
    ``role`` dictionary (annotator | expert), ``origin`` dictionary (platform | imported),
    ``created_at`` timestamp[us, UTC], ``duration`` float64 seconds (null when unknown),
    ``judgement`` int64 id. With ``since``: judgements made after it.
    """
    _check_since(since)
    started = time.time()
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
        labels = list(project.labels)
        _, mark = _cursor(conn)
        where = f"project_id = {mark}" + (f" AND created_at > {mark}" if since is not None else "")
        params = (project_id,) if since is None else (project_id, since)
        j_id, j_task, j_worker, j_role, j_value, j_duration, j_created, j_origin = _fetch_columns(
            conn,
            "SELECT id, task_id, annotator_id, role, value, duration, created_at, origin"
            f" FROM judgements WHERE {where} ORDER BY id",
            params,
            8,
        )
    table = pa.table(
        {
            "task": pa.array(j_task, pa.int64()),
            "worker": pa.array(j_worker, pa.string()),
            "label": _dictionary(_codes(j_value, labels), labels),
            "role": _dictionary(_strings_to_codes(j_role, ROLES), ROLES),
            "origin": _dictionary(_strings_to_codes(j_origin, ORIGINS), ORIGINS),
            "created_at": _timestamps(j_created),
            "duration": pa.array(j_duration, pa.float64()),
            "judgement": pa.array(j_id, pa.int64()),
        }
    )
    cursor = _next_cursor(j_created, since, started)
    return table.replace_schema_metadata(_project_meta(project, since, cursor, "long"))


def ipc_bytes(table: pa.Table, *, max_chunksize: int = 65_536) -> bytes:
    """The table as one Arrow IPC stream (record batches of at most ``max_chunksize`` rows)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max_chunksize)
    return sink.getvalue().to_pybytes()
