"""The exports as Arrow IPC streams: sent in pieces while the wide table is still being built.

The stream's last (empty) record batch carries the next ``since`` cursor (:data:`CURSOR_KEY`);
a stream ending with a :data:`RESTART_KEY` batch is to be discarded (the whole export follows).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from ...wire import CURSOR_KEY, PROJECT_KEY, RESTART_KEY
from ..db import Database
from .exports import (
    WidePlan,
    arrow_judgements,
    assemble,
    build_wide,
    next_cursor,
    plan_wide,
    wide_meta,
    wide_parts,
)

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
    as soon as it is built (the next chunks are read and built meanwhile, :func:`wide_parts`,
    while the client reads). The schema is the first chunk's; its metadata holds no
    cursor (the last, empty batch does: :data:`CURSOR_KEY`). If a later chunk's ``data`` columns
    come out with other types, the stream ends with an empty :data:`RESTART_KEY` batch and the
    whole table, parsed as one (:func:`arrow_tasks`), follows as a second stream.
    """
    plan = plan_wide(db, owner_id, project_id, since)
    if len(plan.chunks) == 1:
        return ipc_stream(build_wide(db, plan))
    return _stream_chunks(db, plan)


def _stream_chunks(db: Database, plan: WidePlan) -> Iterator[bytes]:
    sink, writer, schema, updated, first = _Sink(), None, None, [], None
    chunks = wide_parts(db, plan)
    try:
        for part in chunks:
            first = first or part
            if not len(part.texts):
                continue
            table = assemble([part], part.data)
            if writer is None:
                schema = table.schema
                writer = pa.ipc.new_stream(sink, schema.with_metadata(wide_meta(plan, None)))
            elif table.schema != schema:
                writer.write_batch(
                    pa.RecordBatch.from_pylist([], schema=schema),
                    custom_metadata={RESTART_KEY: b"data types differ between chunks"},
                )
                writer.close()
                yield sink.take()
                yield from ipc_stream(build_wide(db, plan))
                return
            for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                writer.write_batch(batch)
            yield sink.take()
            updated.append(float(part.updated.max()))  # the cursor needs only the newest
        cursor = next_cursor(np.asarray(updated), plan.since, plan.started)
        if writer is None:  # no task at all
            table = assemble([first], first.data).replace_schema_metadata(wide_meta(plan, None))
            yield from ipc_stream(table, cursor)
            return
        writer.write_batch(_empty_batch(table), custom_metadata={CURSOR_KEY: repr(cursor).encode()})
        writer.close()
        yield sink.take()
    finally:
        chunks.close()


def long_stream(
    db: Database, owner_id: str, project_id: str, *, since: float | None = None
) -> Iterator[bytes]:
    """:func:`arrow_judgements` as an Arrow IPC stream (built first, then sent in pieces)."""
    return ipc_stream(arrow_judgements(db, owner_id, project_id, since=since))
