"""Reading the platform's export stream (``GET /v1/projects/{id}/export?format=arrow``): an
Arrow IPC stream whose last, empty record batch carries the next incremental-export cursor.

:func:`read_ipc` gives the ``pyarrow.Table`` (``cynaps.project`` schema metadata, cursor
included); :func:`project_info` reads that metadata back. The frames built from it are in
:mod:`cynaps_data.io.export`.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson
import pyarrow as pa

from ..wire import CURSOR_KEY, PROJECT_KEY, RESTART_KEY
from .schema import python_values


def read_ipc(source: Any, *, python_columns: dict[str, list] | None = None) -> pa.Table:
    """The table of an export stream (``GET /export?format=arrow``), from its bytes or from a
    binary file object being downloaded (read as it arrives).

    The stream's last, empty record batch carries the next cursor (``cynaps.cursor``), which is
    put in the ``cynaps.project`` schema metadata. A stream ending with a ``cynaps.restart``
    batch is discarded and the next stream read instead. A stream without its cursor batch was
    cut short: :class:`~cynaps_data.errors.APIConnectionError`.

    ``python_columns``: a dict to fill with the Python values (:func:`python_values`) of the
    top-level list columns other than ``data`` (e.g. ``annotator_ids``), built on a thread
    batch by batch *while* the rest of the stream downloads; :func:`wide_frame` takes them, so
    a million lists are not made after the download.
    """
    from ..errors import APIConnectionError

    if isinstance(source, (bytes, bytearray, memoryview)):
        source = pa.BufferReader(pa.py_buffer(source))
    pool = None
    try:
        while True:
            with pa.ipc.open_stream(source) as reader:
                schema = reader.schema
                early = _listed_columns(schema) if python_columns is not None else []
                if early and pool is None:
                    pool = ThreadPoolExecutor(1, thread_name_prefix="cynaps-export-lists")
                pending: list[Future] = []
                batches, trailer, last = [], None, None
                while True:
                    try:
                        batch, meta = reader.read_next_batch_with_custom_metadata()
                    except StopIteration:
                        break
                    if batch.num_rows:
                        batches.append(batch)
                        if pool is not None and early:
                            pending.append(pool.submit(_batch_values, batch, early))
                    last = batch
                    if meta is not None and (CURSOR_KEY in meta or RESTART_KEY in meta):
                        trailer = meta
            if not batches and last is not None:  # no rows: the empty batch still has the labels
                batches = [last]
            if trailer is None:
                raise APIConnectionError("The export stream ended early; download it again.")
            if RESTART_KEY not in trailer:
                break
        if python_columns is not None:
            parts = [f.result() for f in pending]
            for name in early:
                python_columns[name] = [v for part in parts for v in part[name]]
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    table = pa.Table.from_batches(batches, schema=schema)
    info = project_info(table)
    info["cursor"] = float(trailer[CURSOR_KEY].decode())
    meta = dict(schema.metadata or {})
    meta[PROJECT_KEY] = orjson.dumps(info)
    return table.replace_schema_metadata(meta)


def _listed_columns(schema: pa.Schema) -> list[str]:
    """Top-level list columns of flat values, other than ``data``: what :func:`read_ipc` turns
    into Python lists during the download."""
    t = pa.types
    return [
        f.name
        for f in schema
        if f.name != "data"
        and (t.is_list(f.type) or t.is_large_list(f.type))
        and not t.is_nested(f.type.value_type)
    ]


def _batch_values(batch: pa.RecordBatch, names: list[str]) -> dict[str, list]:
    return {name: python_values(batch.column(name)) for name in names}


def project_info(table: pa.Table) -> dict:
    """The project description the platform put in the schema metadata."""
    raw = (table.schema.metadata or {}).get(PROJECT_KEY)
    return orjson.loads(raw) if raw else {}
