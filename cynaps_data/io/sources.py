"""Sources: DataFrames, Parquet, Hugging Face datasets, CSV and JSON Lines as Arrow record batches.

Data contract. A :class:`Source` yields Arrow record batches (re-iterable, any batch size) with
a fixed ``schema``; each row becomes one task (see :mod:`cynaps_data.io.uploader`). Column roles
(:class:`Roles`, Argilla's ``mapping=`` in spirit): ``data_columns`` (default: every column not
given another role), ``id_column`` (stable id → ``external_id``), ``gold_column`` (honeypot
label), ``prediction_column`` (model pre-annotations: a label, a list of labels, or
``{"label", "score"}`` structs), ``image_columns`` (uploaded as assets; found automatically for
``datasets.Image`` features, PIL images and binary columns holding PNG/JPEG/GIF/WebP bytes).

Values a source cannot hold in one typed Arrow column are not raised here: they are recorded in
``Source.failures`` (dicts made by :func:`failure`: row, column, value, error) and the uploader
reports them with the rest before anything is sent.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ValidationError

if TYPE_CHECKING:
    import datasets
    import pandas as pd

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
                    failure(i, name, v, f"expected a PIL image like row 0, got {type(v).__name__}")
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
            failures.append(failure(i, name, v, why))
            out.append(None)
    return pa.array(out, type=dtype or pa.null()), failures, False


def pd_na() -> Any:
    import pandas as pd

    return pd.NA


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def failure(row: int, column: str | None, value: Any, error: str) -> dict:
    """One bad value: ``{"row", "column", "value" (a short repr), "error"}``."""
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
        failure(
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
