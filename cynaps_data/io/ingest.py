"""DataFrames, Parquet and Hugging Face datasets → task batches (typed, idempotent, streaming).

Data contract. A *source* is read as Arrow record batches; each row becomes one task::

    {"data": {column: wire value for each data column},   # encoding: cynaps_data.io.schema
     "external_id": str(row[id_column]) or the content hash below,
     "gold": row[gold_column] (a label) or absent,
     "predictions": row[prediction_column] or absent}

Column roles (Argilla's ``mapping=`` in spirit): ``data_columns`` (default: every column not
given another role), ``id_column`` (stable id → ``external_id``), ``gold_column`` (honeypot
label), ``prediction_column`` (model pre-annotations: a label, a list of labels, or
``{"label", "score"}`` structs), ``image_columns`` (uploaded as assets; found automatically for
``datasets.Image`` features, PIL images and binary columns holding PNG/JPEG/GIF/WebP bytes).

Without ``id_column`` the external id is the *content hash*
``"sha256:" + sha256(data_json).hexdigest()[:40]`` where ``data_json`` is the row's wire
``data`` object written compactly with its keys sorted (images enter through their asset hash),
so re-uploading the same rows is idempotent; identical rows collapse into one task.

Two passes: the whole source is checked first (vectorised per batch), so bad values are
reported — as a table naming row, column and value — before anything is sent; then batches
are encoded and sent one at a time (the next batch is encoded while the previous one is in
flight). Memory stays bounded by a few batches: nothing holds the whole input as Python dicts.

Batches travel as LZ4-compressed Arrow IPC streams of JSON-text columns (``wire_format="arrow"``, see
``cynaps_data.server.services.arrow_batch``) or as one JSON document (``"json"``).

This module never imports the client: the caller passes ``send_batch(body, content_type) -> dict``
and ``put_asset(sha256, data, content_type) -> None``.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ValidationError
from . import schema as wire

if TYPE_CHECKING:
    import datasets
    import pandas as pd

DEFAULT_BATCH_SIZE = 50_000
MAX_EXTERNAL_ID = 200
MAX_RECORDED_FAILURES = 10_000
ARROW_STREAM = "application/vnd.apache.arrow.stream"
MAX_BODY_BYTES = 64 * 1024 * 1024  # the platform accepts 256 MiB; keep requests moderate
ON_ERROR = ("raise", "warn", "skip")
IMAGE_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
)
URL_PREFIXES = ("http://", "https://", "data:", "s3://", "gs://")


def sniff_image(head: bytes) -> str | None:
    """The image content type from the first bytes (PNG/JPEG/GIF/WebP), else ``None``."""
    for magic, offset, content_type in IMAGE_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if content_type == "image/webp" and head[:4] != b"RIFF":
                continue
            return content_type
    return None


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


@dataclass
class Roles:
    """Which source column plays which part (see the module docstring)."""

    data_columns: list[str]
    id_column: str | None = None
    gold_column: str | None = None
    prediction_column: str | None = None
    image_columns: list[str] = field(default_factory=list)


# -- sources ------------------------------------------------------------------------------
@dataclass
class Source:
    """Arrow record batches from a DataFrame, Parquet file/dir or Dataset (re-iterable)."""

    schema: pa.Schema
    batches: Callable[[int], Iterator[pa.RecordBatch]]
    num_rows: int | None
    features: datasets.Features | None = None
    image_columns: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)  # found while converting
    categories: dict[str, list] = field(default_factory=dict)


def _py_scalar(value: Any) -> Any:
    """numpy and Arrow scalars as plain Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pa.Scalar):
        return value.as_py()
    return value


def _is_pil(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "save")


def _pil_bytes(image: Any) -> bytes:
    """A PIL image's original file bytes when it came from a file, else PNG bytes."""
    import io

    filename = getattr(image, "filename", "") or ""
    if filename and os.path.isfile(filename) and getattr(image, "format", None):
        with open(filename, "rb") as fh:
            return fh.read()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _describe(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: what converting a Python/pandas value to Arrow raises when the value does not fit
_CONVERSION_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    TypeError,
    ValueError,
    OverflowError,  # ints beyond 64 bits
)


def _convert_series(name: str, series: pd.Series) -> tuple[pa.Array, list[dict], bool]:
    """One pandas column as Arrow; returns ``(array, failures, is_image)``.

    Object columns may hold numpy/Arrow scalars (converted), PIL images (encoded to bytes).
    Values Arrow cannot hold in one typed column are reported row by row and nulled.
    """
    try:
        return pa.array(series, from_pandas=True), [], False
    except _CONVERSION_ERRORS:
        pass
    values = series.tolist()
    first = next((v for v in values if v is not None and v is not pd_na() and not _is_nan(v)), None)
    if first is not None and _is_pil(first):
        out, failures = [], []
        for i, v in enumerate(values):
            if v is None or _is_nan(v):
                out.append(None)
            elif _is_pil(v):
                out.append(_pil_bytes(v))
            else:
                failures.append(
                    _failure(i, name, v, f"expected a PIL image like row 0, got {type(v).__name__}")
                )
                out.append(None)
        return pa.array(out, type=pa.binary()), failures, True
    plain = [None if (v is None or v is pd_na() or _is_nan(v)) else _py_scalar(v) for v in values]
    try:
        return pa.array(plain), [], False
    except _CONVERSION_ERRORS:
        pass
    # Find the rows that do not fit the type of the first value.
    first_i = next((i for i, v in enumerate(plain) if v is not None), 0)
    try:
        dtype = pa.array([plain[first_i]]).type
    except _CONVERSION_ERRORS as exc:
        dtype = None
        reason = f"{type(plain[first_i]).__name__} values cannot be stored ({exc})"
    failures, out = [], []
    for i, v in enumerate(plain):
        if v is None:
            out.append(None)
            continue
        try:
            if dtype is None:
                raise TypeError(reason)
            pa.array([v], type=dtype)
            out.append(v)
        except _CONVERSION_ERRORS as exc:
            why = (
                str(exc)
                if dtype is None
                else (
                    f"{type(v).__name__} value does not fit the column's type {dtype} "
                    f"(set by row {first_i}, a {type(plain[first_i]).__name__})"
                )
            )
            failures.append(_failure(i, name, v, why))
            out.append(None)
    return pa.array(out, type=dtype or pa.null()), failures, False


def pd_na() -> Any:
    import pandas as pd

    return pd.NA


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _failure(row: int, column: str | None, value: Any, error: str) -> dict:
    return {"row": int(row), "column": column, "value": _describe(value), "error": error}


def from_dataframe(df: pd.DataFrame, columns: Sequence[str]) -> Source:
    """A source over the named columns of a DataFrame (converted to Arrow once)."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValidationError(f"expected a pandas DataFrame, got {type(df).__name__}")
    dup = df.columns[df.columns.duplicated()]
    if len(dup):
        raise ValidationError(f"column {dup[0]!r} appears more than once", param=str(dup[0]))
    bad = [c for c in df.columns if not isinstance(c, str)]
    if bad:
        raise ValidationError(
            f"column names must be strings, got {bad[0]!r}; rename the columns", param=str(bad[0])
        )
    frame = df[list(columns)]
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        failures: list[dict] = []
        images = [c for c in columns if _looks_like_image_binary(table[c])]
    except _CONVERSION_ERRORS:
        arrays, failures, images = [], [], []
        for name in columns:
            array, col_failures, is_image = _convert_series(name, frame[name])
            arrays.append(array)
            failures.extend(col_failures)
            if is_image or _looks_like_image_binary(array):
                images.append(name)
        fields = [pa.field(n, a.type) for n, a in zip(columns, arrays, strict=True)]
        try:
            meta = pa.Schema.from_pandas(frame.head(0)).metadata
        except _CONVERSION_ERRORS:
            meta = None
        table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))
    for name in columns:
        if frame[name].dtype == object:
            failures.extend(_mixed_time_zones(name, frame[name], table.schema.field(name).type))

    def batches(size: int) -> Iterator[pa.RecordBatch]:
        yield from table.to_batches(max_chunksize=size)

    return Source(table.schema, batches, table.num_rows, None, images, failures, _categories(table))


def _mixed_time_zones(name: str, series: pd.Series, dtype: pa.DataType) -> list[dict]:
    """Rows of an object column of datetimes whose time-zone awareness differs from the first
    datetime's: Arrow would silently read a naive value as UTC among aware ones (or drop the
    zone of an aware one among naive ones), and two different rows could become one task."""
    if not pa.types.is_timestamp(dtype):
        return []
    stamps = [(i, v) for i, v in enumerate(series) if isinstance(v, datetime.datetime)]
    if not stamps:
        return []
    first_row, first = stamps[0]
    aware = first.tzinfo is not None
    kind = f"time-zone aware ({first.tzinfo})" if aware else "naive"
    return [
        _failure(
            i,
            name,
            v,
            f"mixes naive and time-zone aware datetimes (row {first_row} is {kind}); "
            "make them all one kind, e.g. pd.to_datetime(column, utc=True)",
        )
        for i, v in stamps
        if (v.tzinfo is not None) != aware
    ]


def _categories(table: pa.Table) -> dict[str, list]:
    out = {}
    for f in table.schema:
        if pa.types.is_dictionary(f.type) and table[f.name].num_chunks:
            out[f.name] = table[f.name].chunks[0].dictionary.to_pylist()
    return out


def _looks_like_image_binary(col: pa.Array | pa.ChunkedArray) -> bool:
    """A binary column whose first non-null value starts with image magic bytes."""
    t = col.type
    if not (pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        return False
    valid = pc.drop_null(col)
    return len(valid) > 0 and sniff_image(valid[0].as_py()[:16]) is not None


def from_parquet(path: str | os.PathLike, columns: Sequence[str] | None = None) -> Source:
    """A streaming source over a Parquet file or a directory of Parquet files."""
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    if not os.path.exists(path):
        raise ValidationError(
            f"No such Parquet file or directory: {os.fspath(path)!r}", param="path"
        )
    dataset = pads.dataset(os.fspath(path), format="parquet")
    schema = dataset.schema
    cols = list(columns) if columns is not None else schema.names
    missing = [c for c in cols if c not in schema.names]
    if missing:
        raise ValidationError(
            f"column {missing[0]!r} is not in {os.fspath(path)!r}", param=missing[0]
        )

    out_schema = pa.schema([schema.field(c) for c in cols], metadata=schema.metadata)
    files = sorted(dataset.files)

    def batches(size: int) -> Iterator[pa.RecordBatch]:
        # One file at a time, no pre-buffering and a small read buffer: memory stays at about
        # one batch plus one column chunk, whatever the file size (the dataset scanner's
        # read-ahead costs several row groups).
        for name in files:
            reader = pq.ParquetFile(name, pre_buffer=False, buffer_size=1 << 20)
            try:
                for batch in reader.iter_batches(batch_size=size, columns=cols):
                    if batch.schema != out_schema:
                        batch = (
                            pa.Table.from_batches([batch]).cast(out_schema).to_batches()[0]
                            if batch.num_rows
                            else batch
                        )
                        if batch.num_rows == 0:
                            continue
                    yield batch
            finally:
                reader.close()

    return Source(out_schema, batches, dataset.count_rows(), None, [])


def _arrow_tables(
    ds: Any, size: int, features: datasets.Features | None = None
) -> Iterator[pa.Table]:
    """``ds`` in Arrow tables of ``size`` rows, typed by ``features`` when given.

    A ``Dataset`` (and an ``IterableDataset`` over Arrow data) is read through datasets' Arrow
    format, zero copy. A generator-backed ``IterableDataset`` yields Python rows, which datasets'
    own Arrow conversion types row by row (a None where other rows hold a string breaks it even
    with declared features), so those are typed here, a batch at a time, by the features; rows
    that fit no one type are a clear error naming the fix, not an Arrow trace."""
    ex_iterable = getattr(ds, "_ex_iterable", None)
    arrow_native = ex_iterable is None or getattr(ex_iterable, "iter_arrow", None) is not None
    try:
        if arrow_native:
            yield from ds.with_format("arrow").iter(batch_size=size)
            return
        schema = features.arrow_schema if features is not None else None
        for batch in ds.iter(batch_size=size):
            try:
                if features is not None:
                    batch = features.encode_batch(batch)
                table = pa.Table.from_pydict(batch, schema=schema)
            except (ValueError, TypeError) as exc:  # e.g. int("many") in encode_batch
                raise pa.ArrowInvalid(f"{type(exc).__name__}: {exc}") from exc
            schema = table.schema  # without features: the first batch's types hold for all
            yield table
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValidationError(
            "the dataset's rows do not fit one type per column ("
            + " ".join(str(exc).split())
            + "); give it explicit features, e.g. IterableDataset.from_generator(gen, "
            "features=datasets.Features({'text': datasets.Value('string'), ...}))",
            param="features",
        ) from exc


def from_dataset(ds: Any, columns: Sequence[str] | None = None) -> Source:
    """A source over a ``datasets.Dataset`` (Arrow, zero copy) or ``IterableDataset``."""
    import datasets

    if isinstance(ds, datasets.DatasetDict | datasets.IterableDatasetDict):
        raise ValidationError(
            f"got a DatasetDict with splits {list(ds)}; upload one split, e.g. ds['train']"
        )
    if not isinstance(ds, datasets.Dataset | datasets.IterableDataset):
        raise ValidationError(
            f"expected a datasets.Dataset or IterableDataset, got {type(ds).__name__}"
        )
    features = ds.features
    if features is None:  # an IterableDataset of unknown features: look at the first rows
        first = next(_arrow_tables(ds, 1000), None)
        if first is None:
            raise ValidationError("the IterableDataset yields no rows and declares no features")
        features = datasets.Features.from_arrow_schema(first.schema)
    cols = list(columns) if columns is not None else list(features)
    missing = [c for c in cols if c not in features]
    if missing:
        raise ValidationError(f"column {missing[0]!r} is not in the dataset", param=missing[0])
    features = datasets.Features({c: features[c] for c in cols})
    schema = features.arrow_schema
    images = [c for c, f in features.items() if isinstance(f, datasets.Image)]
    selected = ds.select_columns(cols)
    num_rows = len(ds) if isinstance(ds, datasets.Dataset) else None

    def batches(size: int) -> Iterator[pa.RecordBatch]:
        for table in _arrow_tables(selected, size, features):
            table = table.select(cols)
            if table.schema != schema:
                table = table.cast(schema)
            yield from table.to_batches()

    return Source(schema, batches, num_rows, features, images)


def from_csv(path: str | os.PathLike, columns: Sequence[str] | None = None) -> Source:
    """A streaming source over a CSV file (types inferred by Arrow from the first block;
    empty fields are null, as in pandas)."""
    import pyarrow.csv as pacsv

    path = _existing(path)
    read = pacsv.ReadOptions(block_size=8 << 20)
    convert = pacsv.ConvertOptions(
        include_columns=list(columns) if columns is not None else None, strings_can_be_null=True
    )
    with pacsv.open_csv(path, read_options=read, convert_options=convert) as reader:
        schema = reader.schema

    def batches(size: int) -> Iterator[pa.RecordBatch]:
        with pacsv.open_csv(path, read_options=read, convert_options=convert) as reader:
            for batch in reader:
                try:
                    batch = batch.cast(schema)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # pragma: no cover - rare
                    raise ValidationError(
                        f"{path}: a later block does not fit the column types of the first: {exc}"
                    ) from exc
                yield from pa.Table.from_batches([batch]).to_batches(max_chunksize=size)

    return Source(schema, batches, None)


def from_jsonl(path: str | os.PathLike, columns: Sequence[str] | None = None) -> Source:
    """A source over a JSON Lines file (read into Arrow memory, never into Python dicts)."""
    import pyarrow.json as pajson

    table = pajson.read_json(_existing(path))
    if columns is not None:
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ValidationError(
                f"column {missing[0]!r} is not in {os.fspath(path)!r}", param=missing[0]
            )
        table = table.select(list(columns))

    def batches(size: int) -> Iterator[pa.RecordBatch]:
        yield from table.to_batches(max_chunksize=size)

    return Source(table.schema, batches, table.num_rows)


def from_file(path: str | os.PathLike, columns: Sequence[str] | None = None) -> Source:
    """A source chosen by suffix: ``.parquet``/``.pq`` (or a directory), ``.csv``, ``.jsonl``/``.ndjson``."""
    text = os.fspath(path).lower()
    if os.path.isdir(path) or text.endswith((".parquet", ".pq")):
        return from_parquet(path, columns)
    if text.endswith((".csv", ".csv.gz")):
        return from_csv(path, columns)
    if text.endswith((".jsonl", ".ndjson", ".jsonl.gz")):
        return from_jsonl(path, columns)
    raise ValidationError(
        f"cannot tell the format of {os.fspath(path)!r}; use .parquet, .csv or .jsonl", param="path"
    )


def _existing(path: str | os.PathLike) -> str:
    if not os.path.isfile(path):
        raise ValidationError(f"No such file: {os.fspath(path)!r}", param="path")
    return os.fspath(path)


# -- validation and encoding --------------------------------------------------------------
def _classlabel_names(features: Any, column: str | None) -> list[str] | None:
    if features is None or column is None:
        return None
    import datasets

    feature = features.get(column)
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _labels_column(arr: pa.Array, names: list[str] | None) -> pa.Array:
    """A gold/prediction column as wire values (ClassLabel ints become their names)."""
    if names is not None and pa.types.is_integer(arr.type):
        known = pc.if_else(pc.less(arr, 0), pa.scalar(None, arr.type), arr)  # -1: no label
        return pc.take(pa.array(names), known)
    return wire.encode_array(arr)


class Encoder:
    """Validates and encodes record batches for one project (labels, roles, schema)."""

    def __init__(
        self,
        source: Source,
        roles: Roles,
        *,
        project_id: str,
        annotation_type: str,
        labels: list,
    ) -> None:
        self.source = source
        self.roles = roles
        self.project_id = project_id
        self.labels = labels
        from ..types import get_type

        self.atype = get_type(annotation_type)
        self.fast_labels = annotation_type == "classification"
        self.gold_names = _classlabel_names(source.features, roles.gold_column)
        self.pred_names = _classlabel_names(source.features, roles.prediction_column)
        self.asset_cache: dict[str, str] = {}  # sha256 -> content type (uploaded this run)
        self._check_schema()

    def _check_schema(self) -> None:
        for name in self.roles.data_columns:
            reason = wire.unsupported_reason(self.source.schema.field(name).type)
            if reason:
                raise ValidationError(f"column {name!r}: {reason}", param=name)
        if self.roles.id_column:
            t = self.source.schema.field(self.roles.id_column).type
            if pa.types.is_dictionary(t):
                t = t.value_type
            if not (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)):
                raise ValidationError(
                    f"id column {self.roles.id_column!r} must hold integers or strings, not {t}",
                    param=self.roles.id_column,
                )

    # validation pass -----------------------------------------------------------------------
    def check(self, batch: pa.RecordBatch, offset: int) -> list[dict]:
        """Failures in one batch (row numbers are positions in the whole source)."""
        failures: list[dict] = []
        roles = self.roles
        for name in roles.data_columns:
            col = batch.column(name)
            if name in roles.image_columns:
                failures.extend(self._check_images(col, name, offset))
                continue
            mask = wire.bad_value_mask(col)
            if mask is not None:
                for i in np.flatnonzero(mask)[:MAX_RECORDED_FAILURES]:
                    failures.append(
                        _failure(
                            offset + i,
                            name,
                            col[int(i)].as_py(),
                            "±inf cannot be represented in JSON; use null or a finite number",
                        )
                    )
        if roles.id_column:
            failures.extend(self._check_ids(batch.column(roles.id_column), offset))
        if roles.gold_column:
            col = _labels_column(batch.column(roles.gold_column), self.gold_names)
            failures.extend(self._check_labels(col, roles.gold_column, offset, allow_list=False))
        if roles.prediction_column:
            col = _labels_column(batch.column(roles.prediction_column), self.pred_names)
            failures.extend(
                self._check_labels(col, roles.prediction_column, offset, allow_list=True)
            )
        return failures

    def _check_ids(self, col: pa.Array, offset: int) -> list[dict]:
        name = self.roles.id_column
        out = []
        nulls = col.is_null().to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(nulls)[:MAX_RECORDED_FAILURES]:
            out.append(_failure(offset + i, name, None, "the id is missing; every row needs an id"))
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        if not pa.types.is_integer(col.type):
            length = pc.utf8_length(col)
            bad = pc.fill_null(
                pc.or_(pc.equal(length, 0), pc.greater(length, MAX_EXTERNAL_ID)), False
            )
            for i in np.flatnonzero(bad.to_numpy(zero_copy_only=False))[:MAX_RECORDED_FAILURES]:
                out.append(
                    _failure(
                        offset + i,
                        name,
                        col[int(i)].as_py(),
                        f"ids must be non-empty strings of at most {MAX_EXTERNAL_ID} characters",
                    )
                )
        return out

    def _check_labels(
        self, col: pa.Array, name: str, offset: int, *, allow_list: bool
    ) -> list[dict]:
        role = "prediction" if allow_list else "gold label"
        if self.fast_labels and (
            pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        ):
            ok = pc.or_(
                pc.is_null(col), pc.is_in(col, value_set=pa.array(self.labels, type=col.type))
            )
            bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
            return [
                _failure(
                    offset + i,
                    name,
                    col[int(i)].as_py(),
                    f"{role} {col[int(i)].as_py()!r} is not one of the project's labels {self.labels}",
                )
                for i in bad[:MAX_RECORDED_FAILURES]
            ]
        out = []
        for i, value in enumerate(col.to_pylist()):
            if value is None:
                continue
            values = value if (allow_list and isinstance(value, list)) else [value]
            for v in values:
                label = v.get("label") if (allow_list and isinstance(v, dict)) else v
                try:
                    self.atype.validate_value(label, self.labels)
                except ValueError as exc:
                    out.append(_failure(offset + i, name, value, f"{role}: {exc}"))
                    break
            if len(out) >= MAX_RECORDED_FAILURES:
                break
        return out

    def _image_values(self, col: pa.Array) -> list[tuple[bytes | None, str | None, str | None]]:
        """``(bytes or None, path or None, url or None)`` per row of an image column."""
        t = col.type
        out: list[tuple[bytes | None, str | None, str | None]] = []
        for v in col.to_pylist():
            if v is None:
                out.append((None, None, None))
            elif isinstance(v, bytes):
                out.append((v, None, None))
            elif isinstance(v, str):
                if v.startswith(URL_PREFIXES):
                    out.append((None, None, v))
                else:
                    out.append((None, v, None))
            elif pa.types.is_struct(t) and isinstance(v, dict):
                data, path = v.get("bytes"), v.get("path")
                if data is None and path and path.startswith(URL_PREFIXES):
                    out.append((None, None, path))
                else:
                    out.append((data, path, None))
            else:
                out.append((None, None, None))
        return out

    def _check_images(self, col: pa.Array, name: str, offset: int) -> list[dict]:
        out = []
        for i, (data, path, _url) in enumerate(self._image_values(col)):
            if data is None and path is None:
                continue
            if data is None:
                try:
                    with open(path, "rb") as fh:
                        head = fh.read(16)
                except OSError as exc:
                    out.append(
                        _failure(
                            offset + i, name, path, f"cannot read image file: {exc.strerror or exc}"
                        )
                    )
                    continue
            else:
                head = data[:16]
            if sniff_image(head) is None:
                out.append(
                    _failure(
                        offset + i, name, path or data[:16], "not a PNG, JPEG, GIF or WebP image"
                    )
                )
        return out

    # encoding pass -------------------------------------------------------------------------
    def _image_refs(self, col: pa.Array, put_asset: Callable[[str, bytes, str], None]) -> list:
        refs: list[Any] = []
        for data, path, url in self._image_values(col):
            if url is not None:
                refs.append(url)  # never fetched: stored as a string
                continue
            if data is None and path is None:
                refs.append(None)
                continue
            if data is None:
                with open(path, "rb") as fh:
                    data = fh.read()
            sha = hashlib.sha256(data).hexdigest()
            content_type = self.asset_cache.get(sha)
            if content_type is None:
                content_type = sniff_image(data[:16])
                if content_type is None:  # checked in the first pass; the file changed since
                    raise ValidationError(
                        f"image {path or sha} is not a PNG, JPEG, GIF or WebP image"
                    )
                put_asset(sha, data, content_type)
                self.asset_cache[sha] = content_type
            ref = {
                "asset": sha,
                "content_type": content_type,
                "url": f"/v1/projects/{self.project_id}/assets/{sha}",
            }
            if path is not None:
                ref["path"] = path
            refs.append(ref)
        return refs

    def columns(
        self, batch: pa.RecordBatch, put_asset: Callable[[str, bytes, str], None]
    ) -> dict[str, pa.Array]:
        """A batch as wire columns of JSON text: ``data`` (object text), ``external_id`` (plain
        string), and ``gold`` / ``predictions`` (JSON text or null) when those roles are set.

        The JSON text is assembled by Arrow string kernels, one column at a time (see
        :func:`json_fragments`); no Python object is made per row unless a column needs it
        (nested values, images, content-hash ids).
        """
        roles = self.roles
        fragments: dict[str, pa.Array] = {}
        for name in roles.data_columns:
            col = batch.column(name)
            if name in roles.image_columns:
                refs = self._image_refs(col, put_asset)
                fragments[name] = pa.array(
                    [orjson.dumps(r).decode() for r in refs], type=pa.string()
                )
            else:
                fragments[name] = json_fragments(col)
        out = {"data": _object_text(fragments, list(roles.data_columns))}
        if roles.id_column:
            out["external_id"] = wire.encode_array(batch.column(roles.id_column)).cast(pa.string())
        else:
            names = list(roles.data_columns)
            canonical = (
                out["data"] if names == sorted(names) else _object_text(fragments, sorted(names))
            )
            sha = hashlib.sha256
            out["external_id"] = pa.array(
                ["sha256:" + sha(t.encode()).hexdigest()[:40] for t in canonical.to_pylist()],
                type=pa.string(),
            )
        if roles.gold_column:
            gold = _labels_column(batch.column(roles.gold_column), self.gold_names)
            out["gold"] = json_fragments(gold, keep_null=True)
        if roles.prediction_column:
            preds = _labels_column(batch.column(roles.prediction_column), self.pred_names)
            out["predictions"] = json_fragments(preds, keep_null=True)
        return out

    def encode(
        self,
        batch: pa.RecordBatch,
        put_asset: Callable[[str, bytes, str], None],
        source_schema: dict | None = None,
        *,
        wire_format: str = "arrow",
    ) -> tuple[bytes, str]:
        """One batch as the body of ``POST /v1/projects/{id}/tasks/batch``: ``(body, content type)``.

        ``"arrow"``: an Arrow IPC stream of the wire columns (the source schema in the schema
        metadata); ``"json"``: ``{"tasks": [...], "source_schema": ...}``.
        """
        cols = self.columns(batch, put_asset)
        if wire_format == "arrow":
            meta = (
                None
                if source_schema is None
                else {b"cynaps.source_schema": orjson.dumps(source_schema)}
            )
            table = pa.table(cols).replace_schema_metadata(meta)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
                writer.write_table(table)
            return sink.getvalue().to_pybytes(), ARROW_STREAM
        plain_ids = self.roles.id_column is not None and pa.types.is_integer(
            _value_type(batch.column(self.roles.id_column).type)
        )
        pieces: list[Any] = [
            '{"data":',
            cols["data"],
            ',"external_id":',
            _quote(cols["external_id"], plain=plain_ids),
        ]
        for key in ("gold", "predictions"):
            if key in cols:
                pieces += [f',"{key}":', pc.fill_null(cols[key], "null")]
        pieces.append("},")
        rows = pc.binary_join_element_wise(*pieces, "")
        text = _string_buffer(rows)[:-1]  # drop the last comma
        tail = (
            b"]}"
            if source_schema is None
            else b'],"source_schema":' + orjson.dumps(source_schema) + b"}"
        )
        return b'{"tasks":[' + text + tail, "application/json"


# LZ4 buffer compression: the JSON text of a typical batch shrinks ~4x for ~0.2 µs a row, so
# the platform receives and hashes (Idempotency-Key) a quarter of the bytes.
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(
    compression="lz4" if pa.Codec.is_available("lz4") else None, use_threads=False
)


def _value_type(dtype: pa.DataType) -> pa.DataType:
    return dtype.value_type if pa.types.is_dictionary(dtype) else dtype


_PLAIN_INT = r"^-?[0-9]+$"
_RARE_CONTROL = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]"


_NEEDS_ESCAPE = '["\\\\\\x00-\\x1f]'


def _quote(strings: pa.Array, *, plain: bool = False) -> pa.Array:
    """Arrow strings as JSON string literals (escaped and quoted); nulls stay null.

    ``plain=True`` promises there is nothing to escape (ids made of digits, ISO dates).
    """
    if not pa.types.is_string(strings.type):
        strings = strings.cast(pa.string())
    if (
        plain
        or not len(strings)
        or not pc.any(pc.match_substring_regex(strings, _NEEDS_ESCAPE)).as_py()
    ):
        return pc.binary_join_element_wise('"', strings, '"', "")
    out = pc.replace_substring(strings, "\\", "\\\\")
    out = pc.replace_substring(out, '"', '\\"')
    out = pc.replace_substring(out, "\n", "\\n")
    out = pc.replace_substring(out, "\r", "\\r")
    out = pc.replace_substring(out, "\t", "\\t")
    out = pc.binary_join_element_wise('"', out, '"', "")
    rare = pc.fill_null(pc.match_substring_regex(strings, _RARE_CONTROL), False)
    if pc.any(rare).as_py():  # other control characters: let orjson escape them
        values = out.to_pylist()
        originals = strings.to_pylist()
        for i in np.flatnonzero(rare.to_numpy(zero_copy_only=False)):
            values[i] = orjson.dumps(originals[i]).decode()
        out = pa.array(values, type=pa.string())
    return out


def json_fragments(
    arr: pa.Array | pa.ChunkedArray, *, as_string: bool = False, keep_null: bool = False
) -> pa.Array:
    """The JSON text of each value of ``arr`` (wire encoding of :mod:`.schema`); nulls become
    ``null`` (or stay null with ``keep_null``).

    ``as_string=True`` makes every value a JSON string (ids). Strings, numbers and booleans
    are formatted by Arrow kernels; nested values go through ``orjson`` one value at a time.
    """
    enc = wire.encode_array(arr)
    t = pa.types
    dtype = enc.type
    source = arr.type.value_type if t.is_dictionary(arr.type) else arr.type
    is_text = t.is_string(source) or t.is_large_string(source) or t.is_string_view(source)
    if as_string or t.is_string(dtype) or t.is_large_string(dtype):
        # only real text can hold quotes or control characters; formatted values cannot
        out = _quote(enc, plain=not is_text and not t.is_binary(source))
    elif t.is_null(dtype):
        out = pa.nulls(len(enc), pa.string())
    elif t.is_integer(dtype) or t.is_boolean(dtype):
        out = enc.cast(pa.string())
    elif t.is_floating(dtype):
        out = enc.cast(pa.string())
        whole = pc.fill_null(pc.match_substring_regex(out, _PLAIN_INT), False)
        if len(out) and pc.any(whole).as_py():  # 3.0 is written "3": keep it a JSON float
            out = pc.if_else(whole, pc.binary_join_element_wise(out, ".0", ""), out)
    else:
        dumps = orjson.dumps
        out = pa.array(
            [None if v is None else dumps(v).decode() for v in enc.to_pylist()], type=pa.string()
        )
    return out if keep_null else pc.fill_null(out, "null")


def _object_text(fragments: dict[str, pa.Array], keys: Sequence[str]) -> pa.Array:
    """``{"key": fragment, ...}`` per row from per-column JSON fragments."""
    if not keys:
        n = len(next(iter(fragments.values()))) if fragments else 0
        return pa.array(["{}"] * n, type=pa.string())
    pieces: list[Any] = []
    for i, key in enumerate(keys):
        pieces.append(("{" if i == 0 else ",") + orjson.dumps(key).decode() + ":")
        pieces.append(fragments[key])
    pieces.append("}")
    return pc.binary_join_element_wise(*pieces, "")


def _string_buffer(strings: pa.Array) -> bytes:
    """The concatenated UTF-8 bytes of a non-null string array (one copy, no per-row objects)."""
    width = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    offsets = np.frombuffer(strings.buffers()[1], dtype=width)[
        strings.offset : strings.offset + len(strings) + 1
    ]
    return strings.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]] if len(strings) else b""


# -- the upload ---------------------------------------------------------------------------
def resolve_roles(
    source: Source,
    *,
    data_columns: Sequence[str] | None,
    id_column: str | None,
    gold_column: str | None,
    prediction_column: str | None,
    image_columns: Sequence[str] | None,
) -> Roles:
    """Check the named columns exist and fill in the defaults."""
    names = source.schema.names
    for param, col in (
        ("id_column", id_column),
        ("gold_column", gold_column),
        ("prediction_column", prediction_column),
    ):
        if col is not None and col not in names:
            raise ValidationError(f"{param} {col!r} is not a column; columns: {names}", param=param)
    others = {c for c in (id_column, gold_column, prediction_column) if c is not None}
    if data_columns is None:
        data = [c for c in names if c not in others]
    else:
        data = list(data_columns)
        for c in data:
            if c not in names:
                raise ValidationError(
                    f"data column {c!r} is not a column; columns: {names}", param="data_columns"
                )
    if gold_column in data or prediction_column in data:
        clash = gold_column if gold_column in data else prediction_column
        raise ValidationError(
            f"column {clash!r} cannot be task data and gold/predictions at once (annotators would see it)",
            param="data_columns",
        )
    if not data:
        raise ValidationError(
            "no data columns: tasks need at least one column of task data", param="data_columns"
        )
    if image_columns is None:
        images = [c for c in source.image_columns if c in data]
    else:
        images = list(image_columns)
        for c in images:
            if c not in data:
                raise ValidationError(
                    f"image column {c!r} is not a data column", param="image_columns"
                )
    return Roles(data, id_column, gold_column, prediction_column, images)


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
    source_schema = wire.source_schema_from(
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
    failures = [f for f in source.failures if f["column"] in roles.data_columns]
    id_keys = _IdKeys(source.num_rows)
    offset = 0
    for batch in source.batches(batch_size):
        failures.extend(encoder.check(batch, offset))
        if roles.id_column:
            id_keys.add(_id_keys(batch.column(roles.id_column)))
        offset += batch.num_rows
    total_rows = offset
    if roles.id_column:
        failures.extend(_duplicate_ids(source, roles.id_column, id_keys, batch_size))
        failures.sort(key=lambda f: f["row"])
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
                body = send_batch(
                    orjson.dumps({"tasks": [], "source_schema": source_schema}), "application/json"
                )
                result.project_task_count = body["project_task_count"]
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
            bar.close()
    result.assets_uploaded = len(encoder.asset_cache)
    result.seconds = time.perf_counter() - started
    return result


def _id_keys(col: pa.Array) -> np.ndarray:
    """One 64-bit key per row of an id column (the value itself for integer ids, a hash for the
    rest; a null id gets its row's own key, never a duplicate): 8 bytes a row, so a 10M-row
    source is checked for repeated ids in 80 MB."""
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_integer(col.type):
        keys = col.cast(pa.int64()).fill_null(0).to_numpy().view(np.uint64).copy()
    else:
        from pandas.util import hash_array

        keys = hash_array(col.to_numpy(zero_copy_only=False), categorize=False)
    nulls = col.is_null().to_numpy(zero_copy_only=False)
    if nulls.any():  # unique per row: the high bit is never set by small row numbers' complement
        keys[nulls] = ~np.flatnonzero(nulls).astype(np.uint64)
    return keys


class _IdKeys:
    """Pass 1's id keys (:func:`_id_keys`) in one array: preallocated when the source knows its
    row count (8 bytes a row, never a second copy), else gathered per batch and joined once."""

    def __init__(self, num_rows: int | None) -> None:
        self.buffer = np.empty(num_rows, dtype=np.uint64) if num_rows else None
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, keys: np.ndarray) -> None:
        end = self.size + len(keys)
        if self.buffer is not None and end <= len(self.buffer):
            self.buffer[self.size : end] = keys
        else:  # row count unknown (or the source yielded more rows than it announced)
            if self.buffer is not None:
                self.parts.append(self.buffer[: self.size])
                self.buffer = None
            self.parts.append(keys)
        self.size = end

    def take(self) -> np.ndarray:
        """All keys, in row order; the collector is empty afterwards."""
        if self.buffer is not None:
            out = self.buffer[: self.size]
        else:
            out = np.concatenate(self.parts) if self.parts else np.empty(0, dtype=np.uint64)
        self.buffer, self.parts, self.size = None, [], 0
        return out


def _duplicate_ids(source: Source, id_column: str, keys: _IdKeys, batch_size: int) -> list[dict]:
    """Failures for rows whose id an earlier row of the same source already has (the platform
    would keep the first and drop the rest unseen). The keys are sorted in place (no copy: a
    10M-row source is checked in its 80 MB); keys that repeat are confirmed on the real values
    by one more pass over the source, reading only the rows with such a key, so a hash
    collision never rejects a row."""
    sorted_keys = keys.take()
    if sorted_keys.size < 2:
        return []
    sorted_keys.sort()
    repeated = sorted_keys[1:] == sorted_keys[:-1]
    if not repeated.any():
        return []
    repeated_keys = np.unique(sorted_keys[1:][repeated])
    del sorted_keys, repeated
    values: dict[int, Any] = {}
    candidates = []
    offset = 0
    for batch in source.batches(batch_size):
        col = batch.column(id_column)
        for row in np.flatnonzero(np.isin(_id_keys(col), repeated_keys)):
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
                _failure(
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
