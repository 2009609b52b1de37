"""Exports as partitioned Parquet datasets, written while the export streams in.

Data contract
-------------
A dataset directory written by :func:`write_export` (``project.to_parquet(directory)``) holds

* ``part-00000.parquet``, ``part-00001.parquet``, ...: the export's rows in platform order, at
  most ``max_rows_per_file`` rows per file (row groups of at most ``row_group_size`` rows), each
  file a typed export exactly as :func:`cynaps_data.io.export.write_parquet` writes one (same
  columns, same Arrow types in every file, pandas metadata so that ``task`` is the index);
* ``_common_metadata``: the schema alone, with the project description (``cynaps.project``:
  labels, annotation type, quality settings, the ``cursor`` for the next incremental export)
  and the label set (``cynaps.labels``) in its metadata;
* ``_metadata``: the schema plus every file's row-group statistics (Dask and Spark plan from it).

It reads back with ``dask.dataframe.read_parquet(directory)``, ``pyarrow.dataset.dataset(
directory, format="parquet")``, DuckDB's ``read_parquet('directory/*.parquet')``, Spark's
``spark.read.parquet(directory)`` and ``datasets.load_dataset("parquet", data_files=
"directory/*.parquet")``, with the same types, and with :func:`read_dataset` into the same typed
frame as the single-file export. The client keeps at most one streamed batch (65,536 rows) and
one row group in memory, however large the project. The directory appears only when complete:
the files are written to a hidden sibling directory renamed at the end (nothing half-written).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from ..errors import APIConnectionError, ValidationError
from ..wire import CURSOR_KEY, PROJECT_KEY, RESTART_KEY
from .export import frame_to_arrow, long_frame, wide_frame, wide_table

__all__ = [
    "MAX_ROWS_PER_FILE",
    "is_dataset_path",
    "iter_ipc",
    "read_dataset",
    "write_export",
]

#: default bound on the rows of one part file
MAX_ROWS_PER_FILE = 1_000_000


def is_dataset_path(path: str | Path, partitioned: bool | None) -> bool:
    """Whether ``to_parquet(path)`` writes a dataset directory: ``partitioned`` if given, else
    when ``path`` is an existing directory or has no ``.parquet`` suffix."""
    if partitioned is not None:
        return bool(partitioned)
    p = Path(path)
    return p.is_dir() or p.suffix.lower() not in (".parquet", ".pq")


def iter_ipc(source: Any) -> Iterator[tuple[str, Any]]:
    """The events of an export stream read as it arrives: ``("batch", table)`` for each record
    batch with rows (a one-batch ``pa.Table`` carrying the stream's schema metadata),
    ``("restart", None)`` when the platform restarts the export (discard what came so far; the
    whole export follows), and finally ``("end", cursor)``. A stream cut short raises
    :class:`~cynaps_data.errors.APIConnectionError`."""
    while True:
        with pa.ipc.open_stream(source) as reader:
            schema, trailer, empty = reader.schema, None, None
            while True:
                try:
                    batch, meta = reader.read_next_batch_with_custom_metadata()
                except StopIteration:
                    break
                if meta is not None and (CURSOR_KEY in meta or RESTART_KEY in meta):
                    trailer = meta
                if batch.num_rows:
                    yield "batch", pa.Table.from_batches([batch], schema=schema)
                else:
                    empty = batch
        if trailer is None:
            raise APIConnectionError("The export stream ended early; download it again.")
        if RESTART_KEY in trailer:
            yield "restart", None
            continue
        if empty is not None:  # the closing empty batch: the schema and its dictionaries
            yield "empty", pa.Table.from_batches([empty], schema=schema)
        yield "end", float(trailer[CURSOR_KEY].decode())
        return


class _PartWriter:
    """Part files of at most ``max_rows`` rows in ``directory``, all with one schema."""

    def __init__(self, directory: Path, max_rows: int, row_group_size: int, **options: Any):
        self.directory = directory
        self.max_rows = max_rows
        self.row_group_size = row_group_size
        self.options = options
        self.schema: pa.Schema | None = None
        self.writer: Any = None
        self.rows_in_file = 0
        self.files: list[tuple[str, Any]] = []  # (name, FileMetaData)
        self.collected: list[Any] = []
        self.rows = 0

    def _conform(self, table: pa.Table) -> pa.Table:
        if self.schema is None:
            self.schema = table.schema
            return table
        if table.schema.equals(self.schema, check_metadata=False):
            return table.replace_schema_metadata(self.schema.metadata)
        try:
            return table.select(self.schema.names).cast(self.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError) as exc:
            raise ValidationError(
                f"the export's column types changed between batches ({exc}); export to one "
                "file instead (to_parquet('results.parquet'))",
                param="path",
            ) from exc

    def _close_file(self) -> None:
        if self.writer is not None:
            self.writer.close()  # appends its FileMetaData to self.collected
            self.files.append((self.files_name, self.collected[-1]))
            self.writer = None
            self.rows_in_file = 0

    def _open_file(self) -> None:
        import pyarrow.parquet as pq

        self.files_name = f"part-{len(self.files):05d}.parquet"
        self.writer = pq.ParquetWriter(
            self.directory / self.files_name,
            self.schema,
            metadata_collector=self.collected,
            **self.options,
        )

    def write(self, table: pa.Table) -> None:
        table = self._conform(table)
        offset = 0
        while offset < table.num_rows or (self.writer is None and not self.files):
            if self.writer is None:
                self._open_file()
            take = min(table.num_rows - offset, self.max_rows - self.rows_in_file)
            piece = table.slice(offset, take)
            self.writer.write_table(piece, row_group_size=self.row_group_size)
            offset += take
            self.rows_in_file += take
            self.rows += take
            if self.rows_in_file >= self.max_rows:
                self._close_file()
            if take == 0:
                break

    def finish(self, metadata: dict[bytes, bytes]) -> None:
        import pyarrow.parquet as pq

        self._close_file()
        assert self.schema is not None
        schema = self.schema.with_metadata({**(self.schema.metadata or {}), **metadata})
        pq.write_metadata(schema, self.directory / "_common_metadata")
        collected = []
        for name, md in self.files:
            md.set_file_path(name)
            collected.append(md)
        pq.write_metadata(self.schema, self.directory / "_metadata", metadata_collector=collected)


def write_export(
    source: Any,
    directory: str | Path,
    *,
    form: str = "wide",
    fetch_asset: Callable[[str], bytes] | None = None,
    max_rows_per_file: int = MAX_ROWS_PER_FILE,
    row_group_size: int = 65_536,
    compression: str = "zstd",
    overwrite: bool = False,
) -> Path:
    """Write the export stream ``source`` (a binary file object being downloaded, or bytes) as
    a dataset directory (module contract); returns the directory.

    ``form``: "wide" or "long" (the stream's form). ``fetch_asset``: fetches uploaded images
    for the wide form's image columns. An existing non-empty ``directory`` is an error unless
    ``overwrite=True`` (it is then replaced once the new dataset is complete)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = pa.BufferReader(pa.py_buffer(source))
    for name, value in (
        ("max_rows_per_file", max_rows_per_file),
        ("row_group_size", row_group_size),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValidationError(f"{name} must be a positive int, got {value!r}", param=name)
    directory = Path(directory)
    taken = directory.exists() and (not directory.is_dir() or any(directory.iterdir()))
    if taken and not overwrite:
        raise ValidationError(
            f"{directory} exists and is not an empty directory; pass overwrite=True to replace it",
            param="path",
        )
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"

    def convert(table: pa.Table) -> pa.Table:
        if form == "long":
            return frame_to_arrow(long_frame(table))
        return frame_to_arrow(wide_frame(wide_table(table, fetch_asset=fetch_asset)))

    try:
        tmp.mkdir(parents=True)
        parts = _PartWriter(tmp, max_rows_per_file, row_group_size, compression=compression)
        info: dict = {}
        for kind, value in iter_ipc(source):
            if kind == "restart":
                shutil.rmtree(tmp)
                tmp.mkdir()
                parts = _PartWriter(tmp, max_rows_per_file, row_group_size, compression=compression)
            elif kind == "batch" or (kind == "empty" and parts.rows == 0):
                table = convert(value)
                info = orjson.loads((table.schema.metadata or {}).get(PROJECT_KEY, b"{}"))
                parts.write(table)
            elif kind == "end":
                info["cursor"] = value
        meta = {PROJECT_KEY: orjson.dumps(info, option=orjson.OPT_SERIALIZE_NUMPY)}
        parts.finish(meta)
        if directory.exists():
            shutil.rmtree(directory) if directory.is_dir() else directory.unlink()
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_dataset(directory: str | Path) -> Any:
    """Read a dataset directory back into the typed frame of the single-file export (the
    project description with its cursor in ``attrs["cynaps"]``)."""
    import pyarrow.parquet as pq

    from .export import read_parquet

    directory = Path(directory)
    frame = read_parquet(directory)  # the part files (names starting with "_" are skipped)
    info = (pq.read_schema(directory / "_common_metadata").metadata or {}).get(PROJECT_KEY)
    if info:
        frame.attrs["cynaps"] = orjson.loads(info)
        labels = frame.attrs["cynaps"].get("labels")
        if labels and len(frame) == 0:  # an empty file keeps no dictionary: the schema's labels
            import pandas as pd

            for col in ("gold", "label", "expert_label"):
                if col in frame.columns:
                    frame[col] = frame[col].astype(pd.CategoricalDtype(labels))
    return frame


def is_dask_frame(data: Any) -> bool:
    """True for a Dask DataFrame, tested without importing Dask."""
    return type(data).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(
        data, "npartitions"
    )


def from_dask(ddf: Any, columns: Any) -> Any:
    """An upload source over a Dask DataFrame, one partition at a time: the client computes and
    holds one partition (as a pandas frame and its Arrow batches), never the whole frame.

    Every partition goes through :func:`cynaps_data.io.sources.from_dataframe` (the same
    conversion and checks as a pandas upload) and is cast to the types of the frame's
    metadata; a partition whose values do not convert raises
    :class:`~cynaps_data.errors.ValidationError` naming the partition, column and row. The
    upload is resumable like any other: re-running it skips the ids already uploaded."""
    from .sources import Source, from_dataframe

    meta = from_dataframe(ddf._meta, columns)  # dask's empty frame of the right dtypes
    schema = meta.schema
    starts: list[int] = []

    def batches(size: int) -> Iterator[pa.RecordBatch]:
        offset = 0
        for i in range(ddf.npartitions):
            part = ddf.get_partition(i).compute()
            src = from_dataframe(part, columns)
            if src.failures:
                first = src.failures[0]
                raise ValidationError(
                    f"partition {i}: column {first['column']!r}, row {offset + first['row']}: "
                    f"{first['error']}",
                    param=first["column"],
                )
            if len(starts) <= i:
                starts.append(offset)
            for batch in src.batches(size):
                if batch.schema != schema:
                    try:
                        batch = pa.Table.from_batches([batch]).cast(schema).to_batches()[0]
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                        raise ValidationError(
                            f"partition {i} has other column types than the frame's "
                            f"metadata ({exc}); fix the dtypes (ddf.astype) first",
                            param="df",
                        ) from exc
                yield batch
            offset += len(part)

    return Source(schema, batches, None, None, meta.image_columns, [], meta.categories)
