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
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import sqlalchemy as sa

from ...wire import CURSOR_KEY, PROJECT_KEY, RESTART_KEY
from ..db import Database
from ..problems import invalid
from ..tables import VOTE_SEPARATOR, judgements, tasks
from . import billing
from . import projects as project_service

#: Tasks changed within this many seconds before the export started are sent again next time
#: (a write that was in flight while we read may commit with an earlier timestamp).
CURSOR_GRACE_SECONDS = 2.0
STATUSES = ["pending", "disputed", "completed"]
LABEL_SOURCES = ["consensus", "majority", "expert", "imported", "none"]
ROLES = ["annotator", "expert"]
ORIGINS = ["platform", "imported"]
#: Tasks per chunk of the wide export on SQLite: at most, at least, and the number of chunks
#: aimed for (so that reading and building overlap for mid-sized projects too).
CHUNK_TASKS = 131_072
MIN_CHUNK_TASKS = 16_384
PIPELINE_CHUNKS = 8
#: Threads of the wide export's pipeline (one reads SQLite, one builds); 1: no pipeline.
EXPORT_THREADS = max(1, min(2, os.cpu_count() or 1))
#: Chunks read ahead of the one being sent (bounds the memory of a slow download).
READ_AHEAD = 3


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
#: Columns read (on SQLite) as their own newline-joined text rather than through the CSV rows:
#: the task data JSON, handed to ``pyarrow.json`` as it comes.
LINE_COLUMNS = frozenset({"data"})
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

        def query(
            table: str, where: str, params: tuple, columns: Columns, *, mode: str = "auto"
        ) -> Any:
            """``mode``: "auto" (a table), "fetch" (SQLite: the :class:`_Fetched` text, for
            :func:`_parse_fetched` on another thread), "rows" (DB-API rows only)."""
            schema = pa.schema([(name, dtype) for name, _, dtype in columns])
            if sqlite and mode != "rows":
                if where.startswith("project_id = ?"):
                    # walk the project's id range in rowid order (no sort, no index lookups)
                    bounds = f"(SELECT {{}}(id) FROM {table} WHERE project_id = ?)"
                    where = (
                        f"+project_id = ? AND id BETWEEN {bounds.format('min')} AND "
                        f"{bounds.format('max')}{where[len('project_id = ?') :]}"
                    )
                    params = (params[0], params[0], params[0], *params[1:])
                fetched = _fetch_text(raw, table, where, params, columns)
                if mode == "fetch":
                    return fetched
                parsed = _parse_fetched(fetched)
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


class _Fetched(NamedTuple):
    """One query's rows as SQLite built them: ``text`` (rows of U+001F-joined fields, joined
    by newlines), one newline-joined text per :data:`LINE_COLUMNS` column, the row count."""

    text: bytes | None
    lines: list[bytes]
    count: int
    columns: Columns


def _split_columns(columns: Columns) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(fields, lines)``: the ``(name, sql)`` of the columns read as separated fields of one
    text row, and of those read as their own newline-joined text (:data:`LINE_COLUMNS`)."""
    fields = [(name, expr) for name, expr, _ in columns if name not in LINE_COLUMNS]
    lines = [(name, expr) for name, expr, _ in columns if name in LINE_COLUMNS]
    return fields, lines


def _fetch_text(raw: Any, table: str, where: str, params: tuple, columns: Columns) -> _Fetched:
    # one printf per row (half the time of chaining ||, which copies the row once per field)
    fields, lines = _split_columns(columns)
    row = (
        "printf('"
        + "\x1f".join(["%s"] * len(fields))
        + "', "
        + ", ".join(expr for _, expr in fields)
        + ")"
    )
    # (as BLOBs: the UTF-8 bytes as they are, no Python str decoded and encoded again)
    aggregates = ", ".join(
        ["CAST(group_concat(x, char(10)) AS BLOB)"]
        + [f"CAST(group_concat({name}, char(10)) AS BLOB)" for name, _ in lines]
    )
    raw.execute(
        f"SELECT {aggregates}, count(*) FROM (SELECT {row} AS x"
        + "".join(f", {expr} AS {name}" for name, expr in lines)
        + f" FROM {table} WHERE {where} ORDER BY id)",
        params,
    )
    text, *line_texts, count = raw.fetchone()
    return _Fetched(text, line_texts, count, columns)


def _parse_fetched(fetched: _Fetched) -> pa.Table | None:
    """The table of :func:`_fetch_text` rows (``pyarrow.csv``, no Python object per value);
    ``None`` when a value holds a separator (then read DB-API rows)."""
    import pyarrow.csv as pa_csv

    columns, count = fetched.columns, fetched.count
    schema = pa.schema([(name, dtype) for name, _, dtype in columns])
    fields, lines = _split_columns(columns)
    text, line_texts = fetched.text, fetched.lines
    if not count:
        return schema.empty_table()
    try:
        parsed = pa_csv.read_csv(
            pa.BufferReader(text),
            read_options=pa_csv.ReadOptions(
                column_names=[name for name, _ in fields], block_size=16 << 20
            ),
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
    for (name, _), blob in zip(lines, line_texts, strict=True):
        values = _split_lines(blob, count)
        if values is None:
            return None
        parsed = parsed.append_column(name, values)
    ids = parsed["id"]
    if len(ids) > 1 and not pc.all(pc.greater(ids.slice(1), ids.slice(0, len(ids) - 1))).as_py():
        parsed = parsed.take(pc.sort_indices(ids))  # group_concat order is not promised
    return parsed.select(schema.names).cast(schema)


def _split_lines(blob: bytes, count: int) -> pa.StringArray | None:
    """``count`` newline-joined texts as a string array over the same bytes (no copy); each
    value keeps the newline that follows it (JSON whitespace). ``None`` when a text holds a
    newline itself (the count does not match) or the bytes are not UTF-8."""
    buffer = pa.py_buffer(blob)
    newlines = np.flatnonzero(np.frombuffer(buffer, dtype="uint8") == 10)
    if len(newlines) != count - 1 or len(blob) >= 2**31:
        return None
    offsets = np.concatenate([[0], newlines + 1, [len(blob)]]).astype("int32")
    values = pa.StringArray.from_buffers(count, pa.py_buffer(offsets), buffer)
    try:
        values.validate(full=True)
    except pa.ArrowInvalid:
        return None
    return values


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
        if table.num_rows != len(texts):  # an empty text, or one holding a newline
            raise pa.ArrowInvalid("not one JSON object per text")
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
    """The JSON objects as newline-delimited JSON (pyarrow.json needs the newlines to split its
    blocks). For an Arrow string array whose values already end with a newline (as read by
    :func:`_split_lines`) that is its value buffer as it is; otherwise each value gets a newline
    appended by an Arrow kernel and the new value buffer is used."""
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return pa.py_buffer("\n".join(texts).encode())
    arr = _as_string_array(texts)
    if pa.types.is_string(arr.type) and arr.null_count == 0:
        offsets = np.frombuffer(arr.buffers()[1], dtype="int32")[
            arr.offset : arr.offset + len(arr) + 1
        ]
        data = arr.buffers()[2]
        body = np.frombuffer(data, dtype="uint8") if data is not None else np.zeros(0, "uint8")
        if len(offsets) > 1 and (body[offsets[1:-1] - 1] == 10).all():
            return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
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
    ``None`` when a non-empty row does not end with the separator.

    Works on the column's UTF-8 bytes with numpy: the rows are contiguous and each ends with a
    separator, so the entries are the separator-delimited pieces of the whole value buffer."""
    arr = _as_string_array(column)
    if arr.null_count:
        arr = arr.fill_null("")
    n = len(arr)
    wide = pa.types.is_large_string(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype="int64" if wide else "int32")
    offsets = offsets[arr.offset : arr.offset + n + 1].astype("int64")
    values = arr.buffers()[2]
    body = (
        np.frombuffer(values, dtype="uint8")[offsets[0] : offsets[-1]]
        if values is not None and n
        else np.zeros(0, dtype="uint8")
    )
    bounds = offsets - (offsets[0] if n else 0)
    is_sep = body == ord(VOTE_SEPARATOR)
    ends = bounds[1:][np.diff(bounds) > 0]  # one past each non-empty row
    if len(ends) and not is_sep[ends - 1].all():
        return None
    seps = np.flatnonzero(is_sep)
    lengths = np.diff(np.searchsorted(seps, bounds)).astype("int64")
    starts = np.concatenate([[0], seps[:-1] + 1]) if len(seps) else seps
    entry_offsets = np.concatenate([[0], np.cumsum(seps - starts)]).astype("int32")
    entries = pa.StringArray.from_buffers(
        len(seps), pa.py_buffer(entry_offsets), pa.py_buffer(body[~is_sep])
    )
    return lengths, entries


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


def _task_id_range(conn: sa.Connection, project_id: str) -> tuple[int, int] | None:
    """The project's smallest and largest task id, or ``None`` without tasks.

    Index probes only: for each status present (found by hopping through the
    ``(project_id, status)`` index), SQLite reads ``min(id)``/``max(id)`` from the end of that
    index range, instead of visiting every task of the project."""
    lo = hi = None
    status = conn.execute(
        sa.select(sa.func.min(tasks.c.status)).where(tasks.c.project_id == project_id)
    ).scalar()
    while status is not None:
        of_status = (tasks.c.project_id == project_id) & (tasks.c.status == status)
        first = conn.execute(sa.select(sa.func.min(tasks.c.id)).where(of_status)).scalar()
        last = conn.execute(sa.select(sa.func.max(tasks.c.id)).where(of_status)).scalar()
        lo = first if lo is None else min(lo, first)
        hi = last if hi is None else max(hi, last)
        status = conn.execute(
            sa.select(sa.func.min(tasks.c.status)).where(
                tasks.c.project_id == project_id, tasks.c.status > status
            )
        ).scalar()
    return None if lo is None else (int(lo), int(hi))


def _id_chunks(id_range: tuple[int, int] | None, n_tasks: int) -> list[tuple[int, int]]:
    """``id_range`` split into spans of equal width, for about :data:`PIPELINE_CHUNKS` chunks
    of :data:`MIN_CHUNK_TASKS` to :data:`CHUNK_TASKS` tasks each (at least one chunk)."""
    if id_range is None:
        return [(0, -1)]
    lo, hi = id_range
    size = min(CHUNK_TASKS, max(MIN_CHUNK_TASKS, -(-n_tasks // PIPELINE_CHUNKS)))
    n = max(1, -(-max(n_tasks, 1) // size))
    step = -(-(hi - lo + 1) // n)
    return [(a, min(a + step - 1, hi)) for a in range(lo, hi + 1, step)]


class _Part(NamedTuple):
    """The wide export of one chunk of tasks."""

    columns: dict[str, Any]  # the wide columns but ``data``
    data: pa.Array  # ``data`` as parsed by :func:`parse_data`
    texts: Any  # the ``data`` JSON texts (to parse again with the other chunks' rows)
    updated: np.ndarray  # ``updated_at`` seconds


class _WidePlan(NamedTuple):
    project: Any
    since: float | None
    started: float
    chunks: list[Any]  # id ranges (SQLite) or ``[None]``: the whole project at once


def _plan_wide(db: Database, owner_id: str, project_id: str, since: float | None) -> _WidePlan:
    """Check the request (404 for another account's project, 400 for a bad ``since``) and
    split the project's tasks into chunks."""
    _check_since(since)
    started = time.time()
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
        if conn.dialect.name != "sqlite":
            return _WidePlan(project, since, started, [None])
        id_range = _task_id_range(conn, project_id)
    return _WidePlan(project, since, started, _id_chunks(id_range, project.task_count or 0))


def _chunk_where(plan: _WidePlan, id_range: tuple[int, int] | None) -> tuple[str, tuple]:
    if id_range is None:
        where, params = "project_id = ?", (plan.project.id,)
    else:
        where, params = "+project_id = ? AND id BETWEEN ? AND ?", (plan.project.id, *id_range)
    if plan.since is not None:
        where, params = where + " AND updated_at > ?", (*params, plan.since)
    return where, params


def _task_part(
    db: Database, plan: _WidePlan, id_range: tuple[int, int] | None, fetched: Any = None
) -> _Part:
    """The wide export of the project's tasks in ``id_range`` (``None``: all), from their rows
    as :func:`_fetch_text` read them (``fetched``; read now in one snapshot when not given)."""
    labels = list(plan.project.labels)
    where, params = _chunk_where(plan, id_range)
    t = _parse_fetched(fetched) if isinstance(fetched, _Fetched) else fetched
    if t is None:
        with _reader(db) as query:
            # (a value holding a separator takes the DB-API path, in a snapshot of its own)
            mode = "rows" if isinstance(fetched, _Fetched) else "auto"
            t = query("tasks", where, params, TASK_COLUMNS, mode=mode)
    votes = _votes_from_summary(t, labels)
    if votes is None:  # a worker id holding the separator: read the judgements instead
        j_where = "project_id = ? AND task_id IN (SELECT id FROM tasks WHERE " + where + ")"
        with _reader(db) as query:
            j = query("judgements", j_where, (plan.project.id, *params), VOTE_COLUMNS)
        votes = _votes_from_judgements(t["id"].to_numpy(), j, labels)
    texts = t["data"]
    return _Part(
        _wide_columns(t, votes, labels),
        parse_data(texts),
        texts,
        t["updated_us"].to_numpy() / 1e6,
    )


def _parts(db: Database, plan: _WidePlan) -> Iterator[_Part]:
    """The chunks' parts in order, from a two-stage pipeline: one thread reads the chunks from
    SQLite in one snapshot (one after the other: two threads reading SQLite at once cost
    about 3x the CPU here, SQLite's allocator being behind one process-wide mutex) while
    another builds the chunk read before (``pyarrow`` and numpy kernels, outside the GIL). At
    most :data:`READ_AHEAD` chunks are in flight (read, not yet taken by the caller)."""
    if len(plan.chunks) == 1 or EXPORT_THREADS <= 1:
        for id_range in plan.chunks:
            yield _task_part(db, plan, id_range)
        return
    reads: list[Future] = [Future() for _ in plan.chunks]
    room = threading.Semaphore(READ_AHEAD)
    stop = threading.Event()

    def read_all() -> None:
        try:
            with _reader(db) as query:
                for id_range, read in zip(plan.chunks, reads, strict=True):
                    room.acquire()
                    if stop.is_set():
                        break
                    read.set_result(
                        query("tasks", *_chunk_where(plan, id_range), TASK_COLUMNS, mode="fetch")
                    )
        except BaseException as exc:  # noqa: BLE001 - handed to the builder
            for read in reads:
                if not read.done():
                    read.set_exception(exc)
        for read in reads:
            read.cancel()  # (no-op for the ones read)

    reader = ThreadPoolExecutor(1, thread_name_prefix="cynaps-export-read")
    builder = ThreadPoolExecutor(1, thread_name_prefix="cynaps-export-build")
    builds: list[Future] = []
    try:
        reader.submit(read_all)
        builds = [
            builder.submit(lambda r=r, read=read: _task_part(db, plan, r, read.result()))
            for r, read in zip(plan.chunks, reads, strict=True)
        ]
        for build in builds:
            part = build.result()
            room.release()
            yield part
    finally:
        stop.set()
        for _ in plan.chunks:
            room.release()
        for build in builds:
            build.cancel()
        reader.shutdown(wait=False)
        builder.shutdown(wait=False)


def _data_column(parts: list[_Part]) -> Any:
    """The ``data`` struct of all parts: the parts' own parses when they agree on the types,
    else the whole column parsed at once (types then come from every row, as for one part)."""
    kept = [p for p in parts if len(p.texts)] or parts[:1]
    if len({p.data.type for p in kept}) == 1:
        pieces = [p.data for p in kept]
        return pa.chunked_array(pieces, pieces[0].type) if len(pieces) > 1 else pieces[0]
    return parse_data(pa.chunked_array([_as_string_array(p.texts) for p in kept], pa.string()))


def _assemble(parts: list[_Part], data: Any) -> pa.Table:
    """The wide table of ``parts`` (in order) with ``data`` after ``external_id``."""
    columns = {}
    for name in parts[0].columns:
        pieces = [p.columns[name] for p in parts]
        columns[name] = pa.chunked_array(pieces, pieces[0].type) if len(pieces) > 1 else pieces[0]
        if name == "external_id":
            columns["data"] = data
    return pa.table(columns)


def _wide_meta(plan: _WidePlan, cursor: float | None) -> dict[bytes, bytes]:
    return _project_meta(plan.project, plan.since, cursor, "wide")


def _build_wide(db: Database, plan: _WidePlan) -> pa.Table:
    parts = list(_parts(db, plan))
    table = _assemble(parts, _data_column(parts))
    updated = np.concatenate([p.updated for p in parts])
    cursor = _next_cursor(updated, plan.since, plan.started)
    return table.replace_schema_metadata(_wide_meta(plan, cursor))


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

    On SQLite the project's id range is read in chunks of about :data:`CHUNK_TASKS` tasks, in
    one snapshot, each chunk built while the next one is read (:func:`_parts`).
    """
    return _build_wide(db, _plan_wide(db, owner_id, project_id, since))


def _wide_columns(t: pa.Table, votes: Votes, labels: list) -> dict[str, Any]:
    """The wide columns (all but ``data``) of the task rows ``t`` and their ``votes``."""
    pos, vote_codes, workers, expert_code, expert_id = votes
    task_ids = np.asarray(t["id"].to_numpy(), dtype="int64")
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
    label_codes = _codes(t["final_label"], labels)
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
    source = _null_if(t["label_source"], "").fill_null("none")
    return {
        "task": pa.array(task_ids, pa.int64()),
        "external_id": _null_if(t["external_id"], ""),
        "gold": _dictionary(_codes(t["gold"], labels), labels),
        "label": _dictionary(label_codes, labels),
        "label_source": _dictionary(_strings_to_codes(source, LABEL_SOURCES), LABEL_SOURCES),
        "status": _dictionary(_strings_to_codes(t["status"], STATUSES), STATUSES),
        "agreement": pa.array(agreement, pa.float64(), from_pandas=True),
        "confidence": pa.array(confidence, pa.float64(), from_pandas=True),
        "n_annotations": pa.array(n_votes, pa.int64()),
        "vote_distribution": vote_distribution,
        "annotator_ids": annotator_ids,
        "expert_label": _dictionary(expert_code, labels),
        "expert_id": expert_id,
        "updated_at": _timestamps(t["updated_us"]),
    }


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


# -- IPC streams ---------------------------------------------------------------------------------
BATCH_ROWS = 65_536


class _Sink:
    """A write-only file for ``pyarrow.ipc``: keeps the written buffers (views, no copy)."""

    closed = False

    def __init__(self) -> None:
        self.parts: list[Any] = []

    def write(self, data: Any) -> int:
        self.parts.append(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _cursor_of(table: pa.Table) -> float:
    return orjson.loads(table.schema.metadata[PROJECT_KEY])["cursor"]


def _empty_batch(table: pa.Table) -> pa.RecordBatch:
    """A zero-row batch of ``table`` that keeps its dictionaries (the project's labels, states):
    a stream without rows still tells the reader every category."""
    empty = table.slice(0, 0)
    return pa.RecordBatch.from_arrays(
        [column.combine_chunks() for column in empty.columns], schema=table.schema
    )


def ipc_stream(table: pa.Table, cursor: float | None = None) -> Iterator[bytes]:
    """``table`` as one Arrow IPC stream (record batches of at most :data:`BATCH_ROWS` rows),
    in pieces of about one batch, ending with an empty batch that carries the cursor."""
    sink = _Sink()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            writer.write_batch(batch)
            yield sink.take()
        cursor = _cursor_of(table) if cursor is None else cursor
        writer.write_batch(_empty_batch(table), custom_metadata={CURSOR_KEY: repr(cursor).encode()})
    yield sink.take()


def wide_stream(
    db: Database, owner_id: str, project_id: str, *, since: float | None = None
) -> Iterator[bytes]:
    """:func:`arrow_tasks` as an Arrow IPC stream that starts before the whole table is built.

    The request is checked now (404, 400); the returned iterator then sends each chunk of tasks
    as soon as it is built (the next chunks are read and built meanwhile, :func:`_parts`,
    while the client reads). The schema is the first chunk's; its metadata holds no
    cursor (the last, empty batch does: :data:`CURSOR_KEY`). If a later chunk's ``data`` columns
    come out with other types, the stream ends with an empty :data:`RESTART_KEY` batch and the
    whole table, parsed as one (:func:`arrow_tasks`), follows as a second stream.
    """
    plan = _plan_wide(db, owner_id, project_id, since)
    if len(plan.chunks) == 1:
        return ipc_stream(_build_wide(db, plan))
    return _stream_chunks(db, plan)


def _stream_chunks(db: Database, plan: _WidePlan) -> Iterator[bytes]:
    sink, writer, schema, updated, first = _Sink(), None, None, [], None
    parts = _parts(db, plan)
    try:
        for part in parts:
            first = first or part
            if not len(part.texts):
                continue
            table = _assemble([part], part.data)
            if writer is None:
                schema = table.schema
                writer = pa.ipc.new_stream(sink, schema.with_metadata(_wide_meta(plan, None)))
            elif table.schema != schema:
                writer.write_batch(
                    pa.RecordBatch.from_pylist([], schema=schema),
                    custom_metadata={RESTART_KEY: b"data types differ between chunks"},
                )
                writer.close()
                yield sink.take()
                yield from ipc_stream(_build_wide(db, plan))
                return
            for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                writer.write_batch(batch)
            yield sink.take()
            updated.append(part.updated)
        cursor = _next_cursor(
            np.concatenate(updated) if updated else np.zeros(0), plan.since, plan.started
        )
        if writer is None:  # no task at all
            table = _assemble([first], first.data).replace_schema_metadata(_wide_meta(plan, None))
            yield from ipc_stream(table, cursor)
            return
        writer.write_batch(_empty_batch(table), custom_metadata={CURSOR_KEY: repr(cursor).encode()})
        writer.close()
        yield sink.take()
    finally:
        parts.close()


def long_stream(
    db: Database, owner_id: str, project_id: str, *, since: float | None = None
) -> Iterator[bytes]:
    """:func:`arrow_judgements` as an Arrow IPC stream (built first, then sent in pieces)."""
    return ipc_stream(arrow_judgements(db, owner_id, project_id, since=since))
