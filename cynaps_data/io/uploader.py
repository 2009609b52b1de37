"""The uploader: a :class:`~cynaps_data.io.sources.Source` → tasks on the platform, checked whole first.

Data contract. Each row of the source becomes one task::

    {"data": {column: wire value for each data column},   # encoding: cynaps_data.io.schema
     "external_id": str(row[id_column]) or the content hash (cynaps_data.io.encoder),
     "gold": row[gold_column] (a label) or absent,
     "predictions": row[prediction_column] or absent}

Two passes: the whole source is checked first (vectorised per batch; ids are checked for
repeats in bounded memory, :mod:`.id_keys`), so bad values are reported — as a table naming row, column and
value (:class:`IngestError`) — before anything is sent; then batches are encoded and sent one
at a time (the next batch is encoded while the previous one is in flight), each body halved
until it is under :data:`MAX_BODY_BYTES`. Memory stays bounded by a few batches: nothing holds
the whole input as Python dicts. Re-running an interrupted upload creates nothing twice (the
platform reports those rows as ``duplicates``).

This module never imports the client: the caller passes ``send_batch(body, content_type) -> dict``
and ``put_asset(sha256, data, content_type) -> None``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ..errors import ValidationError
from ..wire import CLIENT_BODY_BYTES as MAX_BODY_BYTES
from ..wire import DEFAULT_BATCH_SIZE, JSON
from .encoder import Encoder
from .id_keys import IdKeys, id_keys
from .schema import source_schema_from
from .sources import Source, failure, resolve_roles

if TYPE_CHECKING:
    import pandas as pd

ON_ERROR = ("raise", "warn", "skip")


class IngestError(ValidationError):
    """Rows that cannot be uploaded; ``failures`` is a DataFrame (row, column, value, error)."""

    def __init__(self, message: str, failures: pd.DataFrame, *, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.failures = failures


@dataclass
class IngestResult:
    """Outcome of an ingest upload.

    ``task_count`` rows sent, ``created`` new tasks, ``duplicates`` already present (a resumed
    upload), ``failed`` rows skipped (``failures`` holds them: row, column, value, error).
    """

    task_count: int = 0
    created: int = 0
    duplicates: int = 0
    failed: int = 0
    project_task_count: int = 0
    batches: int = 0
    assets_uploaded: int = 0
    seconds: float = 0.0
    failures: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def rows_per_second(self) -> float:
        return self.task_count / self.seconds if self.seconds else 0.0

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th>{k}</th><td>{v}</td></tr>"
            for k, v in (
                ("tasks sent", self.task_count),
                ("created", self.created),
                ("duplicates", self.duplicates),
                ("failed rows", self.failed),
                ("project tasks", self.project_task_count),
                ("assets uploaded", self.assets_uploaded),
                ("rows/s", f"{self.rows_per_second:,.0f}"),
            )
        )
        return f"<table><caption>IngestResult</caption>{rows}</table>"


def failures_frame(failures: list[dict]) -> pd.DataFrame:
    """Failures as a DataFrame with columns row, column, value, error (sorted by row)."""
    import pandas as pd

    frame = pd.DataFrame(failures, columns=["row", "column", "value", "error"])
    return frame.sort_values(["row", "column"], kind="stable").reset_index(drop=True)


def upload(
    source: Source,
    *,
    project_id: str,
    annotation_type: str,
    labels: list,
    existing_schema: dict | None,
    existing_tasks: int,
    send_batch: Callable[[bytes, str], dict],
    put_asset: Callable[[str, bytes, str], None],
    data_columns: Sequence[str] | None = None,
    id_column: str | None = None,
    gold_column: str | None = None,
    prediction_column: str | None = None,
    image_columns: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_error: str = "raise",
    progress: bool = True,
    wire_format: str = "arrow",
) -> IngestResult:
    """Check the whole source, then send it batch by batch; see the module docstring."""
    if on_error not in ON_ERROR:
        raise ValidationError(
            f"on_error must be one of {ON_ERROR}, got {on_error!r}", param="on_error"
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValidationError("batch_size must be a positive integer", param="batch_size")
    if wire_format not in ("arrow", "json"):
        raise ValidationError(
            f"wire_format must be 'arrow' or 'json', got {wire_format!r}", param="wire_format"
        )
    started = time.perf_counter()
    roles = resolve_roles(
        source,
        data_columns=data_columns,
        id_column=id_column,
        gold_column=gold_column,
        prediction_column=prediction_column,
        image_columns=image_columns,
    )
    encoder = Encoder(
        source, roles, project_id=project_id, annotation_type=annotation_type, labels=labels
    )
    source_schema = source_schema_from(
        source.schema,
        source.features,
        data_columns=roles.data_columns,
        id_column=roles.id_column,
        gold_column=roles.gold_column,
        prediction_column=roles.prediction_column,
        image_columns=roles.image_columns,
        categories=source.categories,
    )
    _check_compatible(existing_schema, existing_tasks, source_schema)

    # Pass 1: every row checked before anything is sent.
    # conversion failures of every column the upload uses (a gold, prediction or id value
    # that did not fit was nulled by the source: dropping its failure sent a silent null)
    used = {*roles.data_columns, roles.id_column, roles.gold_column, roles.prediction_column}
    failures = [f for f in source.failures if f["column"] in used - {None}]
    with IdKeys(source.num_rows) as keys:
        offset = 0
        for batch in source.batches(batch_size):
            failures.extend(encoder.check(batch, offset))
            if roles.id_column:
                keys.add(id_keys(batch.column(roles.id_column)))
            offset += batch.num_rows
        total_rows = offset
        if roles.id_column:
            failures.extend(_duplicate_ids(source, roles.id_column, keys, batch_size))
            failures.sort(key=lambda f: f["row"])
    # a value the source could not convert was nulled: its own failure says why, not the
    # later checks of that null ("the id is missing")
    seen: set[tuple[int, Any]] = set()
    failures = [
        f
        for f in failures
        if (f["row"], f["column"]) not in seen and not seen.add((f["row"], f["column"]))
    ]
    failed_rows = sorted({f["row"] for f in failures})
    table = failures_frame(failures)
    if failures:
        first = table.iloc[0]
        summary = (
            f"{len(failed_rows)} of {total_rows} rows cannot be uploaded; first: row {first['row']}, "
            f"column {first['column']!r}, value {first['value']}: {first['error']}"
        )
        if on_error == "raise":
            raise IngestError(
                summary + ". Nothing was sent; see .failures for every bad row.",
                table,
                param=str(first["column"]),
            )
        if on_error == "warn":
            warnings.warn(
                summary + "; those rows are skipped (result.failures lists them).", stacklevel=3
            )

    # Pass 2: encode and send, one batch in flight while the next is encoded.
    from tqdm.auto import tqdm

    result = IngestResult(failures=table, failed=len(failed_rows))
    skip = np.asarray(failed_rows, dtype=np.int64)
    bar = tqdm(
        total=total_rows - len(failed_rows), unit="task", desc="Uploading", disable=not progress
    )
    pending: Future | None = None
    pending_rows = 0

    def collect(future: Future, rows: int) -> None:
        body = future.result()
        result.task_count += rows
        result.created += body["created"]
        result.duplicates += body["duplicates"]
        result.project_task_count = body["project_task_count"]
        result.batches += 1
        bar.update(rows)

    schema_to_send: dict | None = source_schema
    offset = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cynaps-upload") as pool:
        try:
            for batch in source.batches(batch_size):
                n = batch.num_rows
                if len(skip):
                    lo, hi = np.searchsorted(skip, [offset, offset + n])
                    if hi > lo:
                        keep = np.ones(n, dtype=bool)
                        keep[skip[lo:hi] - offset] = False
                        batch = batch.filter(pa.array(keep))
                offset += n
                if batch.num_rows == 0:
                    continue
                for part, body, content_type in _bodies(
                    encoder, batch, put_asset, schema_to_send, wire_format
                ):
                    schema_to_send = None
                    if pending is not None:
                        collect(pending, pending_rows)
                    pending, pending_rows = pool.submit(send_batch, body, content_type), part
            if pending is not None:
                collect(pending, pending_rows)
                pending = None
            if result.batches == 0:  # nothing to send: still record the schema
                body = send_batch(orjson.dumps({"tasks": [], "source_schema": source_schema}), JSON)
                result.project_task_count = body["project_task_count"]
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
            bar.close()
    result.assets_uploaded = len(encoder.asset_cache)
    result.seconds = time.perf_counter() - started
    return result


def _duplicate_ids(source: Source, id_column: str, keys: IdKeys, batch_size: int) -> list[dict]:
    """Failures for rows whose id an earlier row of the same source already has (the platform
    would keep the first and drop the rest unseen). Keys that repeat (:class:`IdKeys`, bounded
    memory) are confirmed on the real values by one more pass over the source, reading only the
    rows with such a key, so a hash collision never rejects a row."""
    repeated_keys = keys.repeated()
    if not repeated_keys.size:
        return []
    values: dict[int, Any] = {}
    candidates = []
    offset = 0
    for batch in source.batches(batch_size):
        col = batch.column(id_column)
        for row in np.flatnonzero(np.isin(id_keys(col), repeated_keys)):
            values[offset + int(row)] = col[int(row)].as_py()
            candidates.append(offset + int(row))
        offset += batch.num_rows
    first: dict[Any, int] = {}
    out = []
    for row in candidates:
        value = values[int(row)]
        if value is None:
            continue
        if value in first:
            out.append(
                failure(
                    int(row),
                    id_column,
                    value,
                    f"duplicate id {value!r}: row {first[value]} already has it (ids must be "
                    "unique within an upload)",
                )
            )
        else:
            first[value] = int(row)
    return out


def _bodies(
    encoder: Encoder,
    batch: pa.RecordBatch,
    put_asset: Callable[[str, bytes, str], None],
    source_schema: dict | None,
    wire_format: str,
) -> Iterator[tuple[int, bytes, str]]:
    """``(rows, body, content type)`` for a batch, halved until each body is under
    :data:`MAX_BODY_BYTES`."""
    body, content_type = encoder.encode(batch, put_asset, source_schema, wire_format=wire_format)
    if len(body) <= MAX_BODY_BYTES or batch.num_rows == 1:
        yield batch.num_rows, body, content_type
        return
    half = batch.num_rows // 2
    yield from _bodies(encoder, batch.slice(0, half), put_asset, source_schema, wire_format)
    yield from _bodies(encoder, batch.slice(half), put_asset, None, wire_format)


def _check_compatible(existing: dict | None, existing_tasks: int, new: dict) -> None:
    """Refuse to mix tasks of different data schemas in one project (exports could not type them)."""
    if not existing or not existing_tasks:
        return
    old_cols = [(c["name"], c["type"]) for c in existing.get("columns", [])]
    new_cols = [(c["name"], c["type"]) for c in new["columns"]]
    if old_cols != new_cols:
        raise ValidationError(
            f"this project already holds {existing_tasks} tasks with data columns {old_cols}; "
            f"the new data has {new_cols}. Upload the same columns and types, or create a new project.",
            param="data_columns",
        )
