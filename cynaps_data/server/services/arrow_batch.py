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

Buffers may be LZ4- or ZSTD-compressed (the client sends LZ4); the decompressed size is bounded
from the stream's metadata before anything is decompressed (:func:`decoded_size`). The schema
metadata key ``cynaps.source_schema`` may carry the source schema (JSON) that the
JSON body sends as ``"source_schema"``. Every row is validated (data must parse to an object;
gold and predictions by the same rules as the JSON path) before :func:`.tasks.insert_rows` stores
the batch, whole or not at all. Validation is column-wise (Arrow kernels: a regular expression
recognises plain JSON objects, set membership recognises plain labels); only rows those do not
settle are parsed in Python, in row order. Errors name the row like the JSON path does
(``tasks[i].field``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ...wire import ARROW_STREAM, SOURCE_SCHEMA_KEY
from ..db import Database
from ..problems import Problem, invalid
from . import checkpoints, limits
from . import projects as project_service
from . import tasks as rules

CONTENT_TYPE = ARROW_STREAM
COLUMNS = frozenset({"data", "external_id", "gold", "predictions"})
SCHEMA_KEY = SOURCE_SCHEMA_KEY


MAX_DECODED_BYTES = 512 * 1024 * 1024  # a batch's buffers after decompression, at most


def _table_fields(meta: memoryview, pos: int) -> Callable[[int], int | None]:
    """Field positions of the FlatBuffers table at ``pos`` (``None``: field absent)."""
    vtable = pos - struct.unpack_from("<i", meta, pos)[0]
    size = struct.unpack_from("<H", meta, vtable)[0]

    def field(i: int) -> int | None:
        if 4 + 2 * i >= size:
            return None
        off = struct.unpack_from("<H", meta, vtable + 4 + 2 * i)[0]
        return None if off == 0 else pos + off

    return field


def _deref(meta: memoryview, pos: int) -> int:
    return pos + struct.unpack_from("<I", meta, pos)[0]


def decoded_size(message: pa.ipc.Message) -> int:
    """Bytes a record batch message's buffers take once read (decompressed), from its
    metadata and the uncompressed-length prefix of each compressed buffer, *before* anything
    is decompressed: a small LZ4/ZSTD body cannot make the server allocate more than it allows
    (:data:`MAX_DECODED_BYTES`). Arrow checks each decompressed length against its prefix."""
    meta = memoryview(message.metadata)
    body = memoryview(message.body) if message.body is not None else memoryview(b"")
    header = _table_fields(meta, _deref(meta, _table_fields(meta, _deref(meta, 0))(2)))
    buffers_at = header(2)
    if buffers_at is None:
        return 0
    vector = _deref(meta, buffers_at)
    count = struct.unpack_from("<I", meta, vector)[0]
    compressed = header(3) is not None
    total = 0
    for i in range(count):
        offset, length = struct.unpack_from("<qq", meta, vector + 4 + 16 * i)
        if offset < 0 or length < 0 or offset + length > len(body):
            raise ValueError("a buffer lies outside the message body")
        if compressed and length:
            if length < 8:
                raise ValueError("a compressed buffer is shorter than its length prefix")
            declared = struct.unpack_from("<q", body, offset)[0]
            if declared < -1:
                raise ValueError("negative uncompressed length")
            total += length - 8 if declared == -1 else declared
        else:
            total += length
    return total


def _read_stream(raw: bytes) -> pa.Table:
    """The record batches of an Arrow IPC stream, each checked by :func:`decoded_size` first."""
    schema = None
    batches = []
    total = 0
    for message in pa.ipc.MessageReader.open_stream(pa.py_buffer(raw)):
        if message.type == "schema" and schema is None:
            schema = pa.ipc.read_schema(message)
        elif message.type == "record batch" and schema is not None:
            total += decoded_size(message)
            if total > MAX_DECODED_BYTES:
                raise Problem(
                    413,
                    "batch_too_large",
                    f"The batch's Arrow buffers take more than {MAX_DECODED_BYTES} bytes once"
                    " decompressed; send smaller batches.",
                    param="tasks",
                )
            batches.append(pa.ipc.read_record_batch(message, schema))
        else:
            raise ValueError(f"unexpected {message.type} message (dictionaries are not accepted)")
    if schema is None:
        raise ValueError("no schema message")
    return pa.Table.from_batches(batches, schema)


def read_table(raw: bytes, max_tasks: int) -> tuple[pa.Table, Any]:
    """The batch table and the source schema (or ``None``); 4xx problems for a bad body.

    The stream may be LZ4- or ZSTD-compressed (Arrow IPC buffer compression; the client sends
    LZ4, which makes the body about 4x smaller for typical text)."""
    try:
        table = _read_stream(raw)
    except (
        pa.ArrowInvalid,
        pa.ArrowNotImplementedError,
        pa.ArrowTypeError,
        OSError,
        ValueError,
        struct.error,
        IndexError,
    ) as exc:
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


# A JSON object whose values are scalars, arrays of scalars or objects of scalars, written
# without whitespace (what JSON writers emit). Every text this matches is a JSON object that
# ``orjson.loads`` accepts (bounded numbers: no overflow to infinity; no surrogate escapes), so
# matching rows need no parse; the others (deeper nesting, whitespace, errors) are parsed one by
# one in order, so the first bad row is still the one reported. RE2 runs in linear time.
_STRING = (
    r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]'
    r"|\\u(?:[0-9a-ce-fA-CE-F][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}))*\""
)
_NUMBER = r"-?(?:0|[1-9][0-9]{0,19})(?:\.[0-9]{1,40})?(?:[eE][+-]?[0-9]{1,2})?"
_SCALAR = f"(?:{_STRING}|{_NUMBER}|true|false|null)"
_VALUE = (
    f"(?:{_SCALAR}|\\[(?:{_SCALAR}(?:,{_SCALAR})*)?\\]"
    f"|\\{{(?:{_STRING}:{_SCALAR}(?:,{_STRING}:{_SCALAR})*)?\\}})"
)
FLAT_OBJECT = f"^\\{{(?:{_STRING}:{_VALUE}(?:,{_STRING}:{_VALUE})*)?\\}}$"


def _flags(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array (no nulls) as numpy."""
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    return mask.to_numpy(zero_copy_only=False)


def check_data(data: pa.ChunkedArray, offset: int = 0) -> list[str]:
    """The ``data`` texts as a list, after checking that each is a JSON object (vectorised:
    rows :data:`FLAT_OBJECT` matches are objects; only the others are parsed, in row order).
    ``offset`` is the batch row number of the first row (for error messages)."""
    if data.null_count:
        i = int(pc.index(pc.is_null(data), True).as_py())
        raise rules.bad_item(offset + i, "'data' must be an object of task fields", "data")
    simple = _flags(pc.match_substring_regex(data, FLAT_OBJECT))
    texts = data.to_pylist()
    loads = orjson.loads
    for i in np.flatnonzero(~simple).tolist():
        try:
            ok = type(loads(texts[i])) is dict
        except orjson.JSONDecodeError:
            ok = False
        if not ok:
            raise rules.bad_item(
                offset + i, "'data' must be an object of task fields (valid JSON)", "data"
            )
    return texts


def check_ids(table: pa.Table, offset: int = 0) -> list[str | None] | None:
    """``external_id`` values as strings (``None`` when the column is absent or all null)."""
    if "external_id" not in table.column_names:
        return None
    col = table.column("external_id")
    if col.null_count == len(col):
        return None
    if pa.types.is_integer(col.type):
        return col.cast(pa.string()).to_pylist()
    length = pc.utf8_length(col)
    bad = pc.fill_null(pc.or_(pc.less(length, 1), pc.greater(length, rules.MAX_EXTERNAL_ID)), False)
    if pc.any(bad).as_py():
        i = int(pc.index(bad, True).as_py())
        raise rules.bad_item(
            offset + i,
            f"must be a non-empty string of at most {rules.MAX_EXTERNAL_ID} characters",
            "external_id",
        )
    return col.to_pylist()


def label_texts(check: Callable[[int, Any], str | None], labels: list) -> list[str]:
    """The JSON texts of the labels that ``check`` keeps exactly as they are (``"cat"``)."""
    out = []
    for label in labels:
        text = orjson.dumps(label).decode()
        try:
            if check(0, label) == text:
                out.append(text)
        except Problem:
            pass
    return out


def check_values(
    table: pa.Table,
    name: str,
    check: Callable[[int, Any], str | None],
    normal: list[str],
    offset: int = 0,
    data: list[str] | None = None,
) -> list[str | None] | None:
    """A ``gold``/``predictions`` column as normalised JSON texts (``None`` when absent or all
    null). Texts in ``normal`` (:func:`label_texts`) are accepted as they are, by set
    membership; every other value goes through ``check`` (the :class:`~.tasks.ItemValidator`
    rule, which words the error), in row order, with the row's task ``data`` (JSON texts) so
    that a type whose values point into the task checks them there."""
    if name not in table.column_names:
        return None
    col = table.column(name)
    if col.null_count == len(col):
        return None
    known = pc.or_kleene(pc.is_null(col), pc.is_in(col, value_set=pa.array(normal, pa.string())))
    values = col.to_pylist()
    for i in np.flatnonzero(~_flags(known)).tolist():
        try:
            value = orjson.loads(values[i])
        except orjson.JSONDecodeError:
            raise rules.bad_item(offset + i, "must be JSON text", name) from None
        values[i] = check(offset + i, value, None if data is None else orjson.loads(data[i]))
    return values


@dataclass
class Rows:
    """A validated batch as columns (see :func:`.tasks.insert_rows`)."""

    external_ids: list[str | None] | None
    data: list[str]
    gold: list[str | None] | None
    predictions: list[str | None] | None

    def __len__(self) -> int:
        return len(self.data)


class Checker:
    """Validates slices of one project's batch (see :func:`build_rows`)."""

    def __init__(self, project: Any) -> None:
        self.validate = rules.ItemValidator(project)
        self.gold_texts = label_texts(self.validate.gold, project.labels)
        self.prediction_texts = label_texts(self.validate.predictions, project.labels)

    def __call__(self, table: pa.Table, offset: int = 0) -> Rows:
        """The rows of ``table`` (batch rows ``offset`` on), validated column by column; the
        first bad row raises, naming it."""
        data = check_data(table.column("data"), offset)
        if self.validate.checks_data is not None:
            for i, text in enumerate(data):
                self.validate.data(offset + i, orjson.loads(text))
        return Rows(
            check_ids(table, offset),
            data,
            check_values(table, "gold", self.validate.gold, self.gold_texts, offset, data),
            check_values(
                table,
                "predictions",
                self.validate.predictions,
                self.prediction_texts,
                offset,
                data,
            ),
        )


def check_structure(table: pa.Table) -> None:
    """Full Arrow validation of an untrusted body: offsets in bounds, strings valid UTF-8."""
    try:
        table.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise Problem(400, "invalid_arrow", f"The Arrow body is malformed: {exc}") from None


def upload(db: Database, owner_id: str, project_id: str, raw: bytes, max_tasks: int) -> dict:
    """Validate and store one Arrow batch; returns the same summary as the JSON path.

    Every row is validated before the write transaction opens, then one
    :func:`.tasks.insert_rows` stores the batch, whole or not at all. (Validating the next
    slice on another thread while inserting one was measured slower: the GIL hand-offs between
    the two threads cost more than the overlap gained.)
    """
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
    rules.check_state(project)
    table, source_schema = read_table(raw, max_tasks)
    check_structure(table)
    rows = Checker(project)(table)
    limits.check_arrow_rows(rows)  # issue 12: the same nesting limit as JSON bodies
    checkpoints.wait(db)  # the previous batch's log copied: this write starts the log over
    with db.write() as conn:
        project = project_service.load(conn, owner_id, project_id, lock=True)
        rules.check_state(project)  # re-checked inside the write lock
        checkpoints.defer(db, conn)
        created = rules.insert_rows(
            conn, project, rows.external_ids, rows.data, rows.gold, rows.predictions
        )
        summary = rules.finish_batch(conn, project_id, len(rows), created, source_schema)
    checkpoints.start(db)  # copies this batch into the database file during the next request
    return summary
