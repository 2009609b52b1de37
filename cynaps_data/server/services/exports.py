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

import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import sqlalchemy as sa

from ..db import Database
from ..problems import invalid
from ..tables import VOTE_SEPARATOR, judgements, tasks
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
    """The seed's final payment: escrow → annotators for every charged, unpaid judgement.

    Skipped without a write transaction when no task is charged and unreleased (a reopened
    task is unreleased again until it is final and paid)."""
    with db.read() as conn:
        owed = conn.execute(
            sa.select(tasks.c.id)
            .where(tasks.c.project_id == project_id, tasks.c.charged, ~tasks.c.released)
            .limit(1)
        ).first()
        if owed is None:
            project_service.load(conn, owner_id, project_id)  # still a 404 for others
            return 0
    with db.write() as conn:
        project = project_service.load(conn, owner_id, project_id, lock=True)
        return billing.release_escrow(conn, project)


# -- Arrow ---------------------------------------------------------------------------------------
# Each query is a list of (column, SQL expression, Arrow type). Text comes as '' for NULL and
# timestamps as integer microseconds, so every column has one type.
Columns = list[tuple[str, str, pa.DataType]]
TASK_COLUMNS: Columns = [
    ("id", "id", pa.int64()),
    ("external_id", "coalesce(external_id, '')", pa.string()),
    ("data", "data", pa.string()),
    ("gold", "coalesce(gold, '')", pa.string()),
    ("status", "status", pa.string()),
    ("final_label", "coalesce(final_label, '')", pa.string()),
    ("label_source", "coalesce(label_source, '')", pa.string()),
    ("updated_us", "CAST(round(updated_at * 1000000) AS BIGINT)", pa.int64()),
    ("vote_values", "vote_values", pa.string()),
    ("vote_workers", "vote_workers", pa.string()),
    ("expert_value", "coalesce(expert_value, '')", pa.string()),
    ("expert_worker", "coalesce(expert_worker, '')", pa.string()),
]
VOTE_COLUMNS: Columns = [
    ("id", "id", pa.int64()),
    ("task_id", "task_id", pa.int64()),
    ("annotator_id", "annotator_id", pa.string()),
    ("role", "role", pa.string()),
    ("value", "value", pa.string()),
]
LONG_COLUMNS: Columns = VOTE_COLUMNS + [
    ("duration", "coalesce(printf('%.17g', duration), '')", pa.float64()),
    ("created_us", "CAST(round(created_at * 1000000) AS BIGINT)", pa.int64()),
    ("origin", "origin", pa.string()),
]


@contextlib.contextmanager
def _reader(db: Database) -> Iterator[Callable[[str, str, tuple, Columns], pa.Table]]:
    """``query(table, where, params, columns) -> pa.Table`` (ordered by id) in one snapshot.

    SQLite: the rows come back as *one* text (fields joined by U+001F, rows by newlines, built
    inside SQLite, which runs without the GIL) parsed by ``pyarrow.csv`` — no Python object per
    value. If a field holds a separator (a user id with control characters) the parse fails and
    that query falls back to DB-API rows, as on PostgreSQL. Not ADBC: its bundled SQLite would
    be a second SQLite library on the same file in the same process (``Client.local()``), which
    breaks SQLite's POSIX locking (stale reads seen here).
    """
    with db.read() as conn:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        raw = conn.connection.driver_connection.cursor()
        sqlite = conn.dialect.name == "sqlite"

        def query(table: str, where: str, params: tuple, columns: Columns) -> pa.Table:
            schema = pa.schema([(name, dtype) for name, _, dtype in columns])
            if sqlite:
                if where.startswith("project_id = ?"):
                    # walk the project's id range in rowid order (no sort, no index lookups)
                    bounds = f"(SELECT {{}}(id) FROM {table} WHERE project_id = ?)"
                    where = (
                        f"+project_id = ? AND id BETWEEN {bounds.format('min')} AND "
                        f"{bounds.format('max')}{where[len('project_id = ?') :]}"
                    )
                    params = (params[0], params[0], params[0], *params[1:])
                parsed = _query_text(raw, table, where, params, columns, schema)
                if parsed is not None:
                    return parsed
            # (float columns are read as they are: their text form is SQLite's printf)
            exprs = ", ".join(
                f"{name if pa.types.is_floating(dtype) else expr} AS {name}"
                for name, expr, dtype in columns
            )
            raw.execute(
                f"SELECT {exprs} FROM {table} WHERE {where} ORDER BY id".replace("?", mark), params
            )
            rows = raw.fetchall()
            values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
            arrays = []
            for v, (_, _, dtype) in zip(values, columns, strict=True):
                if pa.types.is_floating(dtype):
                    v = [None if x is None or x == "" else float(x) for x in v]
                arrays.append(pa.array(v, dtype))
            return pa.table(arrays, schema=schema)

        try:
            yield query
        finally:
            raw.close()


def _query_text(
    raw: Any, table: str, where: str, params: tuple, columns: Columns, schema: pa.Schema
) -> pa.Table | None:
    import pyarrow.csv as pa_csv

    # one printf per row (half the time of chaining ||, which copies the row once per field)
    fields = ", ".join(expr for _, expr, _ in columns)
    row = "printf('" + "\x1f".join(["%s"] * len(columns)) + f"', {fields})"
    raw.execute(
        # (as a BLOB: the UTF-8 bytes as they are, no Python str decoded and encoded again)
        f"SELECT CAST(group_concat(x, char(10)) AS BLOB), count(*) FROM (SELECT {row} AS x FROM {table}"
        f" WHERE {where} ORDER BY id)",
        params,
    )
    text, count = raw.fetchone()
    if not count:
        return schema.empty_table()
    try:
        parsed = pa_csv.read_csv(
            pa.BufferReader(text),
            read_options=pa_csv.ReadOptions(column_names=schema.names, block_size=16 << 20),
            parse_options=pa_csv.ParseOptions(
                delimiter="\x1f", quote_char=False, escape_char=False
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=schema,
                null_values=[""],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if parsed.num_rows != count:
        return None
    ids = parsed["id"]
    if len(ids) > 1 and not pc.all(pc.greater(ids.slice(1), ids.slice(0, len(ids) - 1))).as_py():
        parsed = parsed.take(pc.sort_indices(ids))  # group_concat order is not promised
    return parsed.select(schema.names).cast(schema)


def _null_if(arr: pa.ChunkedArray | pa.Array, value: Any) -> pa.Array:
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return pc.if_else(pc.equal(arr, value), pa.scalar(None, arr.type), arr)


def _timestamps(micros: pa.ChunkedArray) -> pa.Array:
    arr = micros.combine_chunks() if isinstance(micros, pa.ChunkedArray) else micros
    return arr.cast(pa.int64()).view(pa.timestamp("us", tz="UTC"))


def _codes(json_values: Any, labels: list) -> np.ndarray:
    """int32 codes of JSON-text values in ``labels`` order; -1 for null or anything else."""
    if len(json_values) == 0:
        return np.zeros(0, dtype="int32")
    encoded = _as_string_array(json_values).dictionary_encode()
    position = {label: i for i, label in enumerate(labels) if isinstance(label, (str, int, float))}
    lookup = np.array(
        [
            position.get(orjson.loads(text), -1) if text else -1
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
    if len(values) == 0:
        return np.zeros(0, dtype="int32")
    position = {n: i for i, n in enumerate(names)}
    encoded = _as_string_array(values).dictionary_encode()
    lookup = np.array(
        [position.get(v, -1) for v in encoded.dictionary.to_pylist()] + [-1], dtype="int32"
    )
    indices = encoded.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)
    return lookup[indices.astype("int64")]


def _as_string_array(values: Any) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values if isinstance(values, pa.Array) else pa.array(values, pa.string())


def parse_data(texts: Any) -> pa.StructArray:
    """The task ``data`` JSON objects as one Arrow struct column, parsed in bulk.

    Types are inferred by ``pyarrow.json`` (int64, double, bool, string, list, struct), except
    that strings are never turned into timestamps (original dtypes come back from the upload's
    source schema on the client). Columns whose values mix JSON types fall back to one JSON text
    column each.
    """
    if len(texts) == 0:
        return pa.array([], pa.struct([]))
    blob = _concatenated(texts)
    read = pa_json.ReadOptions(block_size=4 << 20)
    try:
        table = pa_json.read_json(pa.BufferReader(blob), read_options=read)
        schema = _no_timestamps(table.schema)
        if schema != table.schema:
            parse = pa_json.ParseOptions(explicit_schema=schema)
            table = pa_json.read_json(pa.BufferReader(blob), read_options=read, parse_options=parse)
        if table.num_columns == 0:
            return pa.array([{}] * len(texts), pa.struct([]))
        return pa.StructArray.from_arrays(
            [c.combine_chunks() for c in table.columns], names=table.column_names
        )
    except pa.ArrowInvalid:
        return _parse_rowwise(_as_string_array(texts).to_pylist())


def _concatenated(texts: Any) -> pa.Buffer:
    """The JSON objects as newline-delimited JSON: for an Arrow string array, each value gets a
    newline appended by an Arrow kernel and the value buffer is used as it is (pyarrow.json
    needs the newlines to split its blocks)."""
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return pa.py_buffer("\n".join(texts).encode())
    arr = _as_string_array(texts)
    lines = pc.binary_join_element_wise(arr, pa.scalar("", arr.type), "\n")
    if lines.offset == 0 and lines.null_count == 0 and pa.types.is_string(lines.type):
        offsets = np.frombuffer(lines.buffers()[1], dtype="int32", count=len(lines) + 1)
        return lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    return pa.py_buffer("\n".join(arr.to_pylist()).encode())


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


Votes = tuple[np.ndarray, np.ndarray, pa.Array, np.ndarray, pa.Array]


def _entries(column: Any) -> tuple[np.ndarray, pa.Array] | None:
    """Entries per row and the entries of a summary column (each entry ends with U+001E);
    ``None`` when a row does not end with the separator."""
    lists = pc.split_pattern(_as_string_array(column), VOTE_SEPARATOR)
    flat = pc.list_flatten(lists)
    ends = lists.offsets.to_numpy()[1:] - 1  # the '' after each row's last separator
    if len(ends) and not pc.all(pc.equal(flat.take(pa.array(ends)), "")).as_py():
        return None
    keep = np.ones(len(flat), dtype=bool)
    keep[ends] = False
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype("int64") - 1
    return lengths, flat.filter(pa.array(keep))


def _votes_from_summary(t: pa.Table, labels: list) -> Votes | None:
    """(task position, label code, annotator id) per annotator vote in task then judgement
    order, and per task the expert's label code and id, from the tasks' vote summary columns.
    ``None`` when a worker id holds the separator (the summary cannot be split)."""
    values, workers = _entries(t["vote_values"]), _entries(t["vote_workers"])
    if values is None or workers is None or not np.array_equal(values[0], workers[0]):
        return None
    lengths, flat_values = values
    pos = np.repeat(np.arange(t.num_rows, dtype="int64"), lengths)
    expert_value = _as_string_array(t["expert_value"])
    no_expert = pc.equal(expert_value, "")
    expert_id = pc.if_else(
        no_expert, pa.scalar(None, pa.string()), _as_string_array(t["expert_worker"])
    )
    return pos, _codes(flat_values, labels), workers[1], _codes(expert_value, labels), expert_id


def _votes_from_judgements(task_ids: np.ndarray, j: pa.Table, labels: list) -> Votes:
    """The same as :func:`_votes_from_summary`, from the judgement rows (ordered by id)."""
    task_ids = np.asarray(task_ids, dtype="int64")
    n = len(task_ids)
    pos = (
        np.searchsorted(task_ids, np.asarray(j["task_id"].to_numpy(), dtype="int64"))
        if n
        else np.zeros(0, "int64")
    )
    j_codes = _codes(j["value"], labels)
    worker = _as_string_array(j["annotator_id"])
    is_expert = pc.equal(j["role"], "expert").to_numpy(zero_copy_only=False).astype(bool)
    votes = ~is_expert
    order = np.argsort(pos[votes], kind="stable")
    workers = worker.filter(pa.array(votes)).take(pa.array(order))
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
    return pos[votes][order], j_codes[votes][order], workers, expert_code, expert_id


def arrow_tasks(
    db: Database, owner_id: str, project_id: str, *, since: float | None = None
) -> pa.Table:
    """One row per task (wide form), ordered by task id.

    Columns: ``task`` int64, ``external_id`` string, ``data`` struct (the task's fields),
    ``gold`` and ``label`` dictionary over the project's labels, ``label_source``, ``status``
    (dictionaries), ``agreement`` (the top answer's share of the annotators' current votes)
    and ``confidence`` float64, ``n_annotations`` int64,
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
    where = "project_id = ?" + (" AND updated_at > ?" if since is not None else "")
    params = (project_id,) if since is None else (project_id, since)
    with _reader(db) as query:
        t = query("tasks", where, params, TASK_COLUMNS)
        votes = _votes_from_summary(t, labels)
        if votes is None:  # a worker id holding the separator: read the judgements instead
            j_where = "project_id = ?" + (
                " AND task_id IN (SELECT id FROM tasks WHERE project_id = ? AND updated_at > ?)"
                if since is not None
                else ""
            )
            j_params = (project_id,) if since is None else (project_id, project_id, since)
            votes = _votes_from_judgements(
                t["id"].to_numpy(), query("judgements", j_where, j_params, VOTE_COLUMNS), labels
            )
    pos, vote_codes, workers, expert_code, expert_id = votes
    ids = t["id"].to_numpy()
    external = _null_if(t["external_id"], "")
    data, gold, status, final = t["data"], t["gold"], t["status"], t["final_label"]
    source = _null_if(t["label_source"], "").fill_null("none")
    updated = t["updated_us"].to_numpy() / 1e6
    task_ids = np.asarray(ids, dtype="int64")
    n, k = len(task_ids), len(labels)
    known = vote_codes >= 0
    counts = np.bincount(pos[known] * k + vote_codes[known], minlength=n * k).reshape(n, k)
    n_votes = np.bincount(pos, minlength=n).astype("int64")
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / n_votes[:, None]
    no_votes = n_votes == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(
            no_votes, np.nan, counts.max(axis=1, initial=0) / np.maximum(n_votes, 1)
        )
    label_codes = _codes(final, labels)
    picked = counts[np.arange(n), np.maximum(label_codes, 0)] if n else np.zeros(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(
            (label_codes >= 0) & ~no_votes, picked / np.maximum(n_votes, 1), np.nan
        )
    offsets = np.concatenate([[0], np.cumsum(n_votes)]).astype("int32")
    annotator_ids = pa.ListArray.from_arrays(pa.array(offsets), workers)

    share_fields = [pa.array(shares[:, i], pa.float64(), mask=no_votes) for i in range(k)]
    vote_distribution = (
        pa.StructArray.from_arrays(
            share_fields, names=[str(x) for x in labels], mask=pa.array(no_votes)
        )
        if k
        else pa.nulls(n, pa.struct([]))
    )
    source_codes = _strings_to_codes(source, LABEL_SOURCES)
    columns = {
        "task": pa.array(task_ids, pa.int64()),
        "external_id": external,
        "data": parse_data(data),
        "gold": _dictionary(_codes(gold, labels), labels),
        "label": _dictionary(label_codes, labels),
        "label_source": _dictionary(source_codes, LABEL_SOURCES),
        "status": _dictionary(_strings_to_codes(status, STATUSES), STATUSES),
        "agreement": pa.array(agreement, pa.float64(), from_pandas=True),
        "confidence": pa.array(confidence, pa.float64(), from_pandas=True),
        "n_annotations": pa.array(n_votes, pa.int64()),
        "vote_distribution": vote_distribution,
        "annotator_ids": annotator_ids,
        "expert_label": _dictionary(expert_code, labels),
        "expert_id": expert_id,
        "updated_at": _timestamps(t["updated_us"]),
    }
    cursor = _next_cursor(updated, since, started)
    table = pa.table(columns)
    return table.replace_schema_metadata(_project_meta(project, since, cursor, "wide"))


def _next_cursor(updated: Any, since: float | None, started: float) -> float:
    """The ``since`` of the next incremental export: the newest change seen, held back by the
    grace period (so a change committed late is sent next time; a task may repeat)."""
    floor = since if since is not None else 0.0
    newest = float(np.max(updated)) if len(updated) else floor
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
    where = "project_id = ?" + (" AND created_at > ?" if since is not None else "")
    params = (project_id,) if since is None else (project_id, since)
    with _reader(db) as query:
        j = query("judgements", where, params, LONG_COLUMNS)
    j_created = j["created_us"].to_numpy() / 1e6
    table = pa.table(
        {
            "task": j["task_id"],
            "worker": j["annotator_id"],
            "label": _dictionary(_codes(j["value"], labels), labels),
            "role": _dictionary(_strings_to_codes(j["role"], ROLES), ROLES),
            "origin": _dictionary(_strings_to_codes(j["origin"], ORIGINS), ORIGINS),
            "created_at": _timestamps(j["created_us"]),
            "duration": j["duration"],
            "judgement": j["id"],
        }
    )
    cursor = _next_cursor(j_created, since, started)
    return table.replace_schema_metadata(_project_meta(project, since, cursor, "long"))


def ipc_bytes(table: pa.Table, *, max_chunksize: int = 65_536) -> memoryview:
    """The table as one Arrow IPC stream (record batches of at most ``max_chunksize`` rows), as
    a view of Arrow's buffer (not copied into a ``bytes``)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max_chunksize)
    return memoryview(sink.getvalue())
