"""The one place that knows how task-data values travel as JSON and how they come back.

Upload encodes each data column of an Arrow table to JSON-native values (vectorised, per
record batch); the platform stores the JSON; export decodes it with :func:`restore_columns`
using the *source schema* that the upload stored on the project.

Wire encoding of each Arrow type (``None``/``NaN``/``pd.NA``/``NaT`` are JSON ``null``
everywhere):

========================================  ==================================================
Arrow type (pandas / ``datasets``)          JSON value on the wire
========================================  ==================================================
bool                                        ``true`` / ``false``
int8..int64, uint8..uint64                  integer
float16/32/64                               number; ``NaN`` -> ``null``; ``±inf`` is an error
decimal128/256                              string, exact (``"12.50"``)
string, large_string                        string
date32/date64                               ``"YYYY-MM-DD"``
timestamp[unit] (naive)                     ``"YYYY-MM-DDTHH:MM:SS[.fraction]"`` at the unit's
                                            precision
timestamp[unit, tz]                         the same instant in UTC with ``Z``; the zone is
                                            restored from the schema
time32/time64                               ``"HH:MM:SS[.fraction]"``
duration[unit] (timedelta64)                integer count of ``unit`` (``duration[ns]``:
                                            nanoseconds)
dictionary (pandas ``category``,            the decoded value; categories and their order are
``datasets.ClassLabel`` is int64)           kept in the source schema
binary, large_binary, fixed_size_binary     base64 string (standard alphabet, padded)
list, large_list, fixed_size_list           JSON array of encoded items
struct (dicts)                              JSON object of encoded fields
map                                         JSON array of ``{"key": k, "value": v}`` objects
null                                        ``null``
image column (``datasets.Image``, PIL,      ``{"asset": sha256 hex, "content_type":
image bytes, local image paths)             "image/png", "url": "/v1/projects/<id>/assets/<sha>"
                                            [, "width": px, "height": px] [, "path": original
                                            path]}`` — the image itself is uploaded once as a
                                            content-addressed asset; width/height come from
                                            its header (``cynaps_data.imagesize``)
========================================  ==================================================

Union and extension types are refused with a :class:`~cynaps_data.errors.ValidationError`
naming the column.

The source schema is a JSON-able dict stored on the project (``projects.source_schema``)::

    {"version": 1,
     "arrow_schema": base64 of the IPC-serialised Arrow schema of the data columns,
     "columns": [{"name", "type", "role": "data", "image": bool}, ...],
     "data_columns": [...], "id_column", "gold_column", "prediction_column",
     "image_columns": [...],
     "features": datasets Features dict of the data columns, or null,
     "categories": {column: [category values in order]}}
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ValidationError

if TYPE_CHECKING:
    import datasets
    import pandas as pd

SCHEMA_VERSION = 1
MAX_STORED_CATEGORIES = 100_000
ASSET_KEYS = ("asset", "content_type", "url")


# -- source schema ------------------------------------------------------------------------
def _as_schema(table_or_schema: pa.Table | pa.RecordBatch | pa.Schema) -> pa.Schema:
    return table_or_schema if isinstance(table_or_schema, pa.Schema) else table_or_schema.schema


def source_schema_from(
    table_or_schema: pa.Table | pa.RecordBatch | pa.Schema,
    features: datasets.Features | None = None,
    *,
    data_columns: Sequence[str],
    id_column: str | None = None,
    gold_column: str | None = None,
    prediction_column: str | None = None,
    image_columns: Iterable[str] = (),
    categories: dict[str, list] | None = None,
) -> dict:
    """The JSON-able description of an upload's source, stored with the project.

    ``table_or_schema`` holds at least the data columns in their original Arrow types. For
    dictionary columns the categories are taken from ``categories`` or, for a table, from the
    column's dictionary (up to :data:`MAX_STORED_CATEGORIES`).
    """
    schema = _as_schema(table_or_schema)
    missing = [c for c in data_columns if c not in schema.names]
    if missing:
        raise ValidationError(f"data column {missing[0]!r} is not in the source", param=missing[0])
    images = [c for c in image_columns if c in data_columns]
    fields = [schema.field(c) for c in data_columns]
    data_schema = pa.schema(fields, metadata=_pandas_metadata_for(schema, data_columns))
    cats = dict(categories or {})
    if isinstance(table_or_schema, pa.Table):
        for f in fields:
            if pa.types.is_dictionary(f.type) and f.name not in cats:
                chunks = table_or_schema[f.name].chunks
                if chunks and len(chunks[0].dictionary) <= MAX_STORED_CATEGORIES:
                    cats[f.name] = chunks[0].dictionary.to_pylist()
    feats = None
    if features is not None:
        feats = {c: v for c, v in features.to_dict().items() if c in data_columns}
    return {
        "version": SCHEMA_VERSION,
        "arrow_schema": base64.b64encode(data_schema.serialize().to_pybytes()).decode(),
        "columns": [
            {"name": f.name, "type": str(f.type), "role": "data", "image": f.name in images}
            for f in fields
        ],
        "data_columns": list(data_columns),
        "id_column": id_column,
        "gold_column": gold_column,
        "prediction_column": prediction_column,
        "image_columns": images,
        "features": feats,
        "categories": {k: _jsonable(v) for k, v in cats.items() if k in data_columns},
    }


def _jsonable(values: list) -> list:
    """Category values as JSON values (the wire encoding of the dictionary's value type)."""
    arr = encode_array(pa.array(values))
    return arr.to_pylist()


def _pandas_metadata_for(schema: pa.Schema, columns: Sequence[str]) -> dict | None:
    """The schema's pandas metadata cut down to ``columns`` with a default index."""
    import json

    meta = schema.metadata or {}
    raw = meta.get(b"pandas")
    if raw is None:
        return None
    info = json.loads(raw)
    keep = set(columns)
    info["columns"] = [c for c in info.get("columns", []) if c.get("field_name") in keep]
    info["index_columns"] = []
    info["column_indexes"] = []
    return {b"pandas": json.dumps(info).encode()}


def arrow_schema(source_schema: dict) -> pa.Schema:
    """The Arrow schema of the data columns (with pandas metadata when the source was pandas)."""
    raw = base64.b64decode(source_schema["arrow_schema"])
    return pa.ipc.read_schema(pa.py_buffer(raw))


def features_from(source_schema: dict | None) -> datasets.Features | None:
    """The ``datasets.Features`` of the data columns, when the source was a Dataset."""
    if not source_schema or not source_schema.get("features"):
        return None
    import datasets

    return datasets.Features.from_dict(source_schema["features"])


# -- encoding (upload) --------------------------------------------------------------------
def _rebuild_list(arr: pa.Array, values: pa.Array) -> pa.Array:
    """A list array with the shape (lengths, nulls) of fixed-size list ``arr`` over ``values``."""
    n = arr.type.list_size
    offsets = pa.array(np.arange(len(arr) + 1, dtype=np.int32) * n)
    return pa.ListArray.from_arrays(offsets, values, mask=arr.is_null())


def _b64(arr: pa.Array) -> pa.Array:
    return pa.array(
        [None if v is None else base64.b64encode(v).decode("ascii") for v in arr.to_pylist()],
        type=pa.string(),
    )


def encode_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``arr`` converted to JSON-native Arrow types (see the table in the module docstring).

    The result holds only null, bool, int, float64, string, list and struct types, so
    ``to_pylist()`` yields JSON values. Callers check
    :func:`~cynaps_data.io.value_checks.bad_value_mask` first.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = pa.types
    dtype = arr.type
    if t.is_null(dtype) or t.is_boolean(dtype) or t.is_integer(dtype):
        return arr
    if t.is_string(dtype) or t.is_large_string(dtype) or t.is_string_view(dtype):
        return arr
    if t.is_floating(dtype):
        arr = arr.cast(pa.float64()) if dtype != pa.float64() else arr
        nan = pc.is_nan(arr)
        if len(arr) and pc.any(nan).as_py():
            arr = pc.if_else(nan, pa.scalar(None, pa.float64()), arr)
        return arr
    if t.is_decimal(dtype) or t.is_date(dtype) or t.is_time(dtype):
        return arr.cast(pa.string())
    if t.is_timestamp(dtype):
        if dtype.tz is not None:
            arr = arr.cast(pa.timestamp(dtype.unit, "UTC"))
        # cast is ~25x faster than strftime; it writes "YYYY-MM-DD HH:MM:SS[.f][Z]"
        return pc.replace_substring(arr.cast(pa.string()), " ", "T", max_replacements=1)
    if t.is_duration(dtype):
        return arr.cast(pa.int64())
    if (
        t.is_binary(dtype)
        or t.is_large_binary(dtype)
        or t.is_fixed_size_binary(dtype)
        or t.is_binary_view(dtype)
    ):
        return _b64(arr)
    if t.is_dictionary(dtype):
        return encode_array(arr.dictionary_decode())
    if t.is_map(dtype):
        offsets = arr.offsets
        start, end = offsets[0].as_py(), offsets[-1].as_py()
        entries = pa.StructArray.from_arrays(
            [
                encode_array(arr.keys.slice(start, end - start)),
                encode_array(arr.items.slice(start, end - start)),
            ],
            names=["key", "value"],
        )
        shifted = pc.subtract(offsets, pa.scalar(start, offsets.type))
        return pa.ListArray.from_arrays(shifted, entries, mask=arr.is_null())
    if t.is_list(dtype) or t.is_large_list(dtype) or t.is_fixed_size_list(dtype):
        if t.is_fixed_size_list(dtype):
            n = dtype.list_size
            return _rebuild_list(arr, encode_array(arr.values.slice(arr.offset * n, len(arr) * n)))
        offsets = arr.offsets
        start, end = offsets[0].as_py(), offsets[-1].as_py()
        values = encode_array(arr.values.slice(start, end - start))
        shifted = pc.subtract(offsets, pa.scalar(start, offsets.type))
        cls = pa.LargeListArray if t.is_large_list(dtype) else pa.ListArray
        return cls.from_arrays(shifted, values, mask=arr.is_null())
    if t.is_list_view(dtype) or t.is_large_list_view(dtype):
        return encode_array(arr.cast(pa.large_list(dtype.value_type)))
    if t.is_struct(dtype):
        children = [encode_array(c) for c in arr.flatten()]
        names = [dtype.field(i).name for i in range(dtype.num_fields)]
        if not names:
            return pa.array(
                [None if v is None else {} for v in arr.to_pylist()], type=pa.struct([])
            )
        return pa.StructArray.from_arrays(children, names=names, mask=arr.is_null())
    raise ValidationError(f"values of type {dtype} cannot be uploaded")


# -- decoding (export) --------------------------------------------------------------------
def _py_decoder(dtype: pa.DataType) -> Callable[[Any], Any]:
    """A function from one wire value to a Python value ``pa.array(type=dtype)`` accepts."""
    t = pa.types
    if t.is_timestamp(dtype):
        import pandas as pd

        def ts(v: Any) -> Any:
            if v is None:
                return None
            stamp = pd.Timestamp(v)
            if dtype.tz is not None:
                stamp = (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).tz_convert(
                    dtype.tz
                )
            return stamp

        return ts
    if t.is_duration(dtype):
        import pandas as pd

        return lambda v: None if v is None else pd.Timedelta(int(v), unit=dtype.unit)
    if t.is_date(dtype):
        import datetime

        return lambda v: None if v is None else datetime.date.fromisoformat(v)
    if t.is_time(dtype):
        import datetime

        return lambda v: None if v is None else datetime.time.fromisoformat(v)
    if t.is_decimal(dtype):
        import decimal

        return lambda v: None if v is None else decimal.Decimal(str(v))
    if t.is_binary(dtype) or t.is_large_binary(dtype) or t.is_fixed_size_binary(dtype):
        return lambda v: None if v is None else (v if isinstance(v, bytes) else base64.b64decode(v))
    if t.is_dictionary(dtype):
        return _py_decoder(dtype.value_type)
    if t.is_map(dtype):
        kd, vd = _py_decoder(dtype.key_type), _py_decoder(dtype.item_type)
        return lambda v: None if v is None else [(kd(p["key"]), vd(p["value"])) for p in v]
    if t.is_list(dtype) or t.is_large_list(dtype) or t.is_fixed_size_list(dtype):
        inner = _py_decoder(dtype.value_type)
        return lambda v: None if v is None else [inner(x) for x in v]
    if t.is_struct(dtype):
        fields = [
            (dtype.field(i).name, _py_decoder(dtype.field(i).type)) for i in range(dtype.num_fields)
        ]
        return lambda v: None if v is None else {name: dec(v.get(name)) for name, dec in fields}
    if t.is_floating(dtype):
        return lambda v: None if v is None else float(v)
    return lambda v: v


def _vector_decode(col: pa.Array, dtype: pa.DataType) -> pa.Array | None:
    """Fast decode of a top-level column by casts, or ``None`` to use the Python path."""
    t = pa.types
    src = col.type
    if t.is_null(src):
        return pa.nulls(len(col), dtype)
    if t.is_string(src) or t.is_large_string(src):
        if t.is_timestamp(dtype):
            parsed = col.cast(pa.timestamp(dtype.unit, "UTC" if dtype.tz else None))
            return parsed.cast(dtype) if dtype.tz else parsed
        if t.is_date(dtype) or t.is_time(dtype) or t.is_decimal(dtype):
            return col.cast(dtype)
        if t.is_string(dtype) or t.is_large_string(dtype):
            return col.cast(dtype)
        return None
    if t.is_duration(dtype) and t.is_integer(src):
        return col.cast(pa.int64()).cast(dtype)
    if (t.is_integer(dtype) or t.is_floating(dtype) or t.is_boolean(dtype)) and (
        t.is_integer(src) or t.is_floating(src) or t.is_boolean(src)
    ):
        if t.is_integer(dtype) and t.is_floating(src) and len(col):
            _refuse_rounded_integers(col)
        return col.cast(dtype)
    return None


def _refuse_rounded_integers(col: pa.Array) -> None:
    """Integers that reached the client as floating point (the platform's export parses a JSON
    integer past the int64 range, a uint64 above 2**63, as a double) are exact only up to 2**53:
    refuse rather than cast a rounded value to a wrong integer."""
    biggest = pc.max(pc.abs(col)).as_py()
    if biggest is not None and biggest >= 2.0**53:
        raise ValueError(
            f"integers up to {biggest:.0f} arrived as floating point from the platform's Arrow "
            "export and may have been rounded; read the exact values from the JSON export: "
            "cynaps_data.io.table_from_wire([r['data'] for r in project.export()], "
            "project.source_schema)"
        )


def decode_array(
    col: pa.Array | pa.ChunkedArray, dtype: pa.DataType, categories: list | None = None
) -> pa.Array:
    """Wire values (as an Arrow array of JSON-decoded values) back to ``dtype``."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    if col.type == dtype:
        return col
    if pa.types.is_dictionary(dtype):
        values = decode_array(col, dtype.value_type)
        if categories is not None:
            dictionary = decode_array(pa.array(categories), dtype.value_type)
            indices = pc.index_in(values, value_set=dictionary)
            unknown = pc.and_(pc.is_null(indices), pc.is_valid(values))
            if not pc.any(unknown).as_py():
                return pa.DictionaryArray.from_arrays(
                    indices.cast(dtype.index_type), dictionary, ordered=dtype.ordered
                )
        encoded = values.dictionary_encode()
        return pa.DictionaryArray.from_arrays(
            encoded.indices.cast(dtype.index_type), encoded.dictionary, ordered=dtype.ordered
        )
    try:
        fast = _vector_decode(col, dtype)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        fast = None
    if fast is not None:
        return fast
    decode = _py_decoder(dtype)
    return pa.array([decode(v) for v in col.to_pylist()], type=dtype)


def is_asset_ref(value: Any) -> bool:
    """Whether a wire value is an image asset reference (see the module docstring)."""
    return isinstance(value, dict) and isinstance(value.get("asset"), str) and "url" in value


def _restore_image(
    col: pa.Array, dtype: pa.DataType, fetch: Callable[[str], bytes] | None
) -> pa.Array | None:
    """An image column back to its original type (``fetch(sha256) -> bytes``), or ``None``."""
    t = pa.types
    refs = col.to_pylist()
    if t.is_string(dtype) or t.is_large_string(dtype):
        return pa.array(
            [None if r is None else (r.get("path") if is_asset_ref(r) else r) for r in refs],
            type=dtype,
        )
    if fetch is None:
        return None
    blobs = [None if not is_asset_ref(r) else fetch(r["asset"]) for r in refs]
    if t.is_struct(dtype):  # datasets.Image: struct<bytes: binary, path: string>
        rows = [
            None if r is None else {"bytes": b, "path": r.get("path")}
            for r, b in zip(refs, blobs, strict=True)
        ]
        return pa.array(rows, type=dtype)
    return pa.array(blobs, type=dtype)


def restore_columns(
    table: pa.Table,
    source_schema: dict | None,
    *,
    fetch_asset: Callable[[str], bytes] | None = None,
) -> pa.Table:
    """Cast the data columns of ``table`` (JSON-decoded wire values) back to their source types.

    Columns not in the source schema are left as they are. Image columns become their original
    type (bytes, ``datasets.Image`` struct) when ``fetch_asset(sha256) -> bytes`` is given, and
    stay asset references otherwise (path columns get their paths back either way). The
    schema's pandas metadata is attached, so ``.to_pandas()`` gives categoricals, time zones
    and nullable dtypes back; see also :func:`restore_frame`.
    """
    if not source_schema:
        return table
    schema = arrow_schema(source_schema)
    images = set(source_schema.get("image_columns") or ())
    categories = source_schema.get("categories") or {}
    columns = []
    names = []
    for name in table.column_names:
        col = table[name]
        if name in schema.names:
            dtype = schema.field(name).type
            try:
                if name in images:
                    restored = _restore_image(col.combine_chunks(), dtype, fetch_asset)
                    col = col if restored is None else restored
                else:
                    col = decode_array(col, dtype, categories.get(name))
            except (
                pa.ArrowInvalid,
                pa.ArrowTypeError,
                ValueError,
                TypeError,
                binascii.Error,
            ) as exc:
                raise ValidationError(
                    f"column {name!r} cannot be restored to {dtype}: {exc}", param=name
                ) from exc
        columns.append(col)
        names.append(name)
    out = pa.table(columns, names=names)
    meta = _pandas_metadata_for(schema, [n for n in names if n in schema.names])
    if meta:
        out = out.replace_schema_metadata(meta)
    return out


def restore_frame(
    table: pa.Table,
    source_schema: dict | None,
    *,
    fetch_asset: Callable[[str], bytes] | None = None,
) -> pd.DataFrame:
    """:func:`restore_columns`, then to pandas with the source's dtypes (default RangeIndex)."""
    restored = restore_columns(table, source_schema, fetch_asset=fetch_asset)
    return to_pandas_nested_as_python(restored)


def nested_as_python(
    table: pa.Table, frame: pd.DataFrame, ready: dict[str, list] | None = None
) -> pd.DataFrame:
    """``frame`` (``table.to_pandas()``, same column names) with its *object* columns of Arrow
    struct/list/map type rebuilt from ``table`` as the plain Python values (dicts, lists, None)
    an object column of a DataFrame holds. pyarrow's own conversion makes numpy arrays of
    lists and converts a struct's int field with a null to float; this keeps what was uploaded.
    Columns mapped to ``pd.ArrowDtype`` are left as they are. ``ready``: a column's values
    already made (as :func:`python_values` makes them), used when the length matches."""
    import pandas as pd

    ready = ready or {}
    for field in table.schema:
        if (
            field.name in frame.columns
            and frame[field.name].dtype == object
            and _is_nested(field.type)
        ):
            values = ready.get(field.name)
            if values is None or len(values) != len(frame):
                values = python_values(table.column(field.name))
            frame[field.name] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def to_pandas_nested_as_python(
    table: pa.Table, ready: dict[str, list] | None = None
) -> pd.DataFrame:
    """``nested_as_python(table, table.to_pandas())`` without pyarrow's own conversion of the
    nested columns (numpy arrays per row, thrown away): they go to pandas as null placeholders
    and are then filled from :func:`python_values`. Columns the pandas metadata maps to
    ``pd.ArrowDtype`` convert as pyarrow does."""
    arrow_mapped = _arrow_dtype_columns(table.schema)
    light = table
    for i, field in enumerate(table.schema):
        if _is_nested(field.type) and field.name not in arrow_mapped:
            light = light.set_column(i, field, pa.nulls(len(table), field.type))
    return nested_as_python(table, light.to_pandas(), ready)


def python_values(column: pa.Array | pa.ChunkedArray) -> list:
    """The column's values as Python objects (``to_pylist``); a list column of flat values
    (strings, numbers) is sliced from one flat list, about 5x faster for a million rows."""
    t = pa.types
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (t.is_list(arr.type) or t.is_large_list(arr.type)) or _is_nested(arr.type.value_type):
        return arr.to_pylist()
    offsets = np.asarray(arr.offsets)  # (relative to the sliced array's values)
    flat = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_pylist()
    offsets = (offsets - offsets[0]).tolist()
    out = [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    if arr.null_count:
        for i in np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False)).tolist():
            out[i] = None
    return out


def _is_nested(dtype: pa.DataType) -> bool:
    t = pa.types
    return any(
        check(dtype)
        for check in (t.is_struct, t.is_list, t.is_large_list, t.is_map, t.is_fixed_size_list)
    )


def _arrow_dtype_columns(schema: pa.Schema) -> set[str]:
    """Columns whose pandas metadata names an ``ArrowDtype`` (``…[pyarrow]``)."""
    import json

    meta = (schema.metadata or {}).get(b"pandas")
    if not meta:
        return set()
    try:
        columns = json.loads(meta).get("columns", [])
    except ValueError:
        return set()
    return {
        c.get("name")
        for c in columns
        if isinstance(c, dict) and str(c.get("numpy_type", "")).endswith("[pyarrow]")
    }


def _simple(dtype: pa.DataType) -> bool:
    t = pa.types
    return (
        t.is_integer(dtype) or t.is_boolean(dtype) or t.is_string(dtype) or t.is_large_string(dtype)
    )


def table_from_wire(
    rows: Sequence[dict],
    source_schema: dict | None,
    *,
    fetch_asset: Callable[[str], bytes] | None = None,
) -> pa.Table:
    """Task ``data`` dicts (JSON-decoded, e.g. from the JSON export) as a typed Arrow table.

    Unlike ``pa.Table.from_pylist`` + :func:`restore_columns` this never infers a type, so
    values inference cannot hold (uint64 above 2**63, all-null columns) come back exactly.
    Keys not in the source schema are added after the schema's columns, types inferred.
    """
    if not source_schema:
        return pa.Table.from_pylist(list(rows))
    schema = arrow_schema(source_schema)
    images = set(source_schema.get("image_columns") or ())
    columns: dict[str, pa.Array] = {}
    for f in schema:
        values = [r.get(f.name) for r in rows]
        if f.name not in images and _simple(f.type):
            try:
                columns[f.name] = pa.array(values, type=f.type)
                continue
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                pass
        try:
            inferred = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            decode = _py_decoder(f.type)
            columns[f.name] = pa.array([decode(v) for v in values], type=f.type)
            continue
        columns[f.name] = inferred
    extra = sorted({k for r in rows for k in r} - set(schema.names))
    for name in extra:
        columns[name] = pa.array([r.get(name) for r in rows])
    table = pa.table(columns) if columns else pa.table({})
    return restore_columns(table, source_schema, fetch_asset=fetch_asset)
