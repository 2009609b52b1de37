"""Reading a project's rows for the bulk exports as Arrow tables, and parsing task data.

:func:`reader` gives ``query(table, where, params, columns) -> pa.Table`` in one snapshot; on
SQLite the rows come back as one text built inside SQLite and parsed by ``pyarrow.csv`` (no
Python object per value). :func:`parse_data` turns the tasks' ``data`` JSON texts into one Arrow
struct column with ``pyarrow.json``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ..db import Database
from .votes import as_string_array

log = logging.getLogger(__name__)

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
    ("stop_reason", "coalesce(stop_reason, '')", pa.string()),
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
    # ('%!.17g': SQLite's printf keeps 16 digits without the '!'; it prints NULL as 0.0)
    (
        "duration",
        "CASE WHEN duration IS NULL THEN '' ELSE printf('%!.17g', duration) END",
        pa.float64(),
    ),
    ("created_us", "CAST(round(created_at * 1000000) AS BIGINT)", pa.int64()),
    ("origin", "origin", pa.string()),
]


Query = Callable[..., Any]
_REPEATABLE_READ = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9A-F]+)?")


@contextlib.contextmanager
def reader(db: Database) -> Iterator[Query]:
    """``query(table, where, params, columns) -> pa.Table`` (ordered by id); every query of
    one reader sees the same snapshot (SQLite: one read transaction; PostgreSQL: REPEATABLE
    READ, READ ONLY).

    SQLite: the rows come back as *one* text (fields joined by U+001F, rows by newlines, built
    inside SQLite, which runs without the GIL) parsed by ``pyarrow.csv`` — no Python object per
    value. If a field holds a separator (a user id with control characters) the parse fails and
    that query falls back to DB-API rows. PostgreSQL: the same texts, built by ``string_agg``
    (:func:`fetch_text_pg`). Not ADBC: its bundled SQLite would
    be a second SQLite library on the same file in the same process (``Client.local()``), which
    breaks SQLite's POSIX locking (stale reads seen here).
    """
    with readers(db, 1) as (query,):
        yield query


@contextlib.contextmanager
def readers(db: Database, n: int) -> Iterator[list[Query]]:
    """Up to ``n`` :func:`reader` queries that all see one snapshot, each on its own connection
    (one per thread). PostgreSQL: the first transaction exports its snapshot
    (``pg_export_snapshot``) and the others import it, so each query runs in a server process
    of its own, in parallel; only while the pool has that many idle connections (else one).
    SQLite: one (two threads reading SQLite at once cost about 3x the
    CPU here: its allocator is behind one process-wide mutex)."""
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(db.read())
        conns = [conn]
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(_REPEATABLE_READ)
            if n > 1 and _spare_connections(db) >= n - 1:
                snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
                if not _SNAPSHOT_ID.fullmatch(str(snapshot)):  # (it goes into SQL text)
                    raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
                for _ in range(n - 1):
                    other = stack.enter_context(db.read())
                    other.exec_driver_sql(_REPEATABLE_READ)
                    other.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                    conns.append(other)
        queries = []
        for c in conns:
            raw = c.connection.driver_connection.cursor()
            stack.callback(raw.close)
            queries.append(_query_on(raw, c.dialect.name, c.dialect.paramstyle))
        yield queries


def _spare_connections(db: Database) -> int:
    """Idle connections of the pool's base size: an export takes its extra readers only from
    those (never the overflow that requests need), so busy platforms read with one."""
    pool = db.engine.pool
    try:
        return int(pool.size()) - int(pool.checkedout())  # type: ignore[attr-defined]
    except AttributeError:  # a pool without a size (e.g. NullPool)
        return 0


def _query_on(raw: Any, dialect: str, paramstyle: str) -> Query:
    mark = "?" if paramstyle == "qmark" else "%s"
    sqlite = dialect == "sqlite"

    def query(
        table: str, where: str, params: tuple, columns: Columns, *, mode: str = "auto"
    ) -> Any:
        """``mode``: "auto" (a table), "fetch" (the :class:`Fetched` text, for
        :func:`parse_fetched` on another thread), "rows" (DB-API rows only)."""
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
            fetched = fetch_text(raw, table, where, params, columns)
        elif dialect == "postgresql" and mode != "rows":
            fetched = fetch_text_pg(raw, table, where.replace("?", mark), params, columns)
        else:
            fetched = None
        if fetched is not None:
            if mode == "fetch":
                return fetched
            parsed = parse_fetched(fetched)
            if parsed is not None:
                return parsed
        raw.execute(
            f"SELECT {select_list(columns)} FROM {table} WHERE {where} ORDER BY id".replace(
                "?", mark
            ),
            params,
        )
        rows = raw.fetchall()
        values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
        arrays = []
        for v, (_, _, dtype) in zip(values, columns, strict=True):
            if pa.types.is_floating(dtype):
                v = [None if x is None or x == "" else float(x) for x in v]
            arrays.append(pa.array(v, dtype))
        return pa.table(arrays, schema=schema)

    return query


def select_list(columns: Columns) -> str:
    """The SELECT list of ``columns`` for the DB-API path: each column's expression as its
    name (:func:`_portable`)."""
    return ", ".join(f"{_portable(name, expr, dtype)} AS {name}" for name, expr, dtype in columns)


def _portable(name: str, expr: str, dtype: pa.DataType) -> str:
    """A column's SQL for the paths other than SQLite's texts: float columns as they are (their
    expressions are SQLite ``printf`` texts), the others as their expression."""
    return name if pa.types.is_floating(dtype) else expr


#: Rows per text block of :func:`fetch_text_pg` (ids >> this): one PostgreSQL value holds at
#: most 1 GB, so a block of 4,096 rows fits unless its rows average over 256 KB.
PG_BLOCK_SHIFT = 12


def fetch_text_pg(
    raw: Any, table: str, where: str, params: tuple, columns: Columns
) -> Fetched | None:
    """PostgreSQL: the rows as :class:`Fetched` texts built by the server (``string_agg`` of
    U+001F-joined fields), as :func:`fetch_text` does on SQLite; ``None`` when the server could
    not build them (a block over 1 GB: then read DB-API rows, in the same snapshot).

    Not ``COPY … TO STDOUT``: psycopg hands a ``COPY`` over one Python call per row (about 1.5 s
    of GIL per million rows here), while this query returns one row per block of ids
    (:data:`PG_BLOCK_SHIFT`), joined here. Every field is cast to text and NULL is ''
    (``concat_ws`` would drop a NULL field); the texts come back as ``bytea`` in binary (UTF-8
    bytes as they are). The query runs under a savepoint, so a failure leaves the snapshot's
    transaction usable."""
    import psycopg

    fields, lines = _split_columns_pg(columns)
    raw.execute("SAVEPOINT cynaps_fetch_text")
    try:
        raw.execute(pg_text_query(table, where, fields, lines), params, binary=True)
        blocks = raw.fetchall()
    except psycopg.Error as exc:
        log.warning("export: %s rows read one by one (%s)", table, str(exc).splitlines()[0])
        raw.execute("ROLLBACK TO SAVEPOINT cynaps_fetch_text")
        return None
    raw.execute("RELEASE SAVEPOINT cynaps_fetch_text")
    if not blocks:
        return Fetched(None, [None] * len(lines), 0, columns)
    texts = [b"\n".join(block[i] for block in blocks) for i in range(1 + len(lines))]
    return Fetched(texts[0], texts[1:], sum(block[-1] for block in blocks), columns)


def pg_text_query(
    table: str, where: str, fields: list[tuple[str, str]], lines: list[tuple[str, str]]
) -> str:
    """The SQL of :func:`fetch_text_pg`: per block of ids, the fields' text, each
    :data:`LINE_COLUMNS` column's text, and the row count."""
    row = (
        "concat_ws(chr(31), "
        + ", ".join(f"coalesce(CAST({expr} AS text), '')" for _, expr in fields)
        + ")"
    )
    aggregates = ", ".join(
        ["convert_to(string_agg(x, chr(10)), 'UTF8')"]
        + [f"convert_to(string_agg({name}, chr(10)), 'UTF8')" for name, _ in lines]
    )
    block = f"id >> {PG_BLOCK_SHIFT}"
    return (
        f"SELECT {aggregates}, count(*) FROM (SELECT id, {row} AS x"
        + "".join(f", {expr} AS {name}" for name, expr in lines)
        + f" FROM {table} WHERE {where} ORDER BY id) AS rows_in_order"
        f" GROUP BY {block} ORDER BY {block}"
    )


def _split_columns_pg(columns: Columns) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """:func:`_split_columns` with each field's SQL from :func:`_portable`."""
    fields, lines = _split_columns(columns)
    portable = {name: _portable(name, expr, dtype) for name, expr, dtype in columns}
    return [(name, portable[name]) for name, _ in fields], lines


class Fetched(NamedTuple):
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


def fetch_text(raw: Any, table: str, where: str, params: tuple, columns: Columns) -> Fetched:
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
    return Fetched(text, line_texts, count, columns)


def parse_fetched(fetched: Fetched) -> pa.Table | None:
    """The table of :func:`fetch_text` rows (``pyarrow.csv``, no Python object per value);
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
                column_names=[name for name, _ in fields], block_size=16 << 20, use_threads=False
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
    # (no Arrow threads: the exports parse chunk by chunk beside their reads, and Arrow's
    # threads took twice the CPU for the same wall time on a chunk of 125k rows)
    read = pa_json.ReadOptions(block_size=4 << 20, use_threads=False)
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
        return _parse_rowwise(as_string_array(texts).to_pylist())


def _concatenated(texts: Any) -> pa.Buffer:
    """The JSON objects as newline-delimited JSON (pyarrow.json needs the newlines to split its
    blocks). For an Arrow string array whose values already end with a newline (as read by
    :func:`_split_lines`) that is its value buffer as it is; otherwise each value gets a newline
    appended by an Arrow kernel and the new value buffer is used."""
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return pa.py_buffer("\n".join(texts).encode())
    arr = as_string_array(texts)
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


def _as_text(value: Any) -> str | None:
    """A value of a data field whose values mix JSON types, as text: a string as it is,
    anything else (number, bool, list, object) as its JSON text, null as null."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


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
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed JSON types: one text column
            array = pa.array([_as_text(v) for v in values], pa.string())
        arrays.append(array)
        names.append(key)
    return pa.StructArray.from_arrays(arrays, names=names)
