"""The JSON/Arrow kernels: record batches → the body of ``POST /v1/projects/{id}/tasks/batch``.

Data contract. :class:`Encoder` checks a batch (:meth:`Encoder.check`: failure dicts naming row,
column, value) and turns it into wire columns of JSON text (:meth:`Encoder.columns`)::

    data         string  {"column": wire value, ...}       # encoding: cynaps_data.io.schema
    external_id  string  str(row[id_column]) or "sha256:" + sha256(data_json).hexdigest()[:40]
    gold         string  JSON text of the label, or null   (when the role is set)
    predictions  string  JSON text, or null                (when the role is set)

``data_json`` is the row's wire ``data`` object written compactly with its keys sorted (images
enter through their asset hash), so re-uploading the same rows is idempotent and identical rows
collapse into one task. The JSON text is assembled by Arrow string kernels
(:func:`json_fragments`, :func:`quote`), one column at a time, never a Python object per row
unless a column needs it (nested values, images, content-hash ids).

:meth:`Encoder.encode` sends the columns as an LZ4-compressed Arrow IPC stream (see
``cynaps_data.server.services.arrow_batch``) or as one JSON document.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ValidationError
from ..imagesize import image_size
from ..wire import ARROW_STREAM, JSON, SOURCE_SCHEMA_KEY
from .schema import encode_array
from .sources import URL_PREFIXES, Roles, Source, failure, sniff_image
from .value_checks import bad_value_mask, nul_field_name, nul_mask, unsupported_reason

MAX_EXTERNAL_ID = 200
MAX_RECORDED_FAILURES = 10_000


# -- validation and encoding --------------------------------------------------------------
def _classlabel_names(features: Any, column: str | None) -> list[str] | None:
    if features is None or column is None:
        return None
    import datasets

    feature = features.get(column)
    if not isinstance(feature, datasets.ClassLabel):  # Sequence(ClassLabel): top-k, label sets
        feature = getattr(feature, "feature", None)
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _labels_column(arr: pa.Array, names: list[str] | None) -> pa.Array:
    """A gold/prediction column as wire values (ClassLabel ints become their names, also in
    the lists of a ``Sequence(ClassLabel)``)."""
    t = pa.types
    if names is not None and t.is_integer(arr.type):
        known = pc.if_else(pc.less(arr, 0), pa.scalar(None, arr.type), arr)  # -1: no label
        return pc.take(pa.array(names), known)
    if (
        names is not None
        and (t.is_list(arr.type) or t.is_large_list(arr.type) or t.is_fixed_size_list(arr.type))
        and t.is_integer(arr.type.value_type)
    ):
        if t.is_fixed_size_list(arr.type):
            arr = arr.cast(pa.list_(arr.type.value_type))
        offsets = arr.offsets
        start, end = offsets[0].as_py(), offsets[-1].as_py()
        values = _labels_column(arr.values.slice(start, end - start), names)
        shifted = pc.subtract(offsets, pa.scalar(start, offsets.type))
        cls = pa.LargeListArray if t.is_large_list(arr.type) else pa.ListArray
        return cls.from_arrays(shifted, values, mask=arr.is_null())
    return encode_array(arr)


def _nul_failures(col: pa.Array, name: str, offset: int) -> list[dict]:
    """Rows of ``col`` with text holding a NUL character (the platform refuses it: checked
    here so that nothing is sent, rather than a later batch refused after earlier ones landed)."""
    mask = nul_mask(col)
    if mask is None:
        return []
    return [
        failure(
            offset + i,
            name,
            col[int(i)].as_py(),
            "text holds a NUL character (\\x00), which the platform cannot store; remove it",
        )
        for i in np.flatnonzero(mask)[:MAX_RECORDED_FAILURES]
    ]


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
        # optional type hook: a vectorised check of a whole column of values (None: per row)
        self.valid_values = getattr(self.atype, "valid_values", None)
        self.gold_names = _classlabel_names(source.features, roles.gold_column)
        self.pred_names = _classlabel_names(source.features, roles.prediction_column)
        self.asset_cache: dict[str, str] = {}  # sha256 -> content type (uploaded this run)
        self._check_schema()

    def _check_schema(self) -> None:
        for name in self.roles.data_columns:
            if "\x00" in name:
                raise ValidationError(
                    f"column name {name!r} holds a NUL character (\\x00); rename the column",
                    param=name,
                )
            dtype = self.source.schema.field(name).type
            reason = unsupported_reason(dtype)
            if reason:
                raise ValidationError(f"column {name!r}: {reason}", param=name)
            key = nul_field_name(dtype)
            if key is not None:
                raise ValidationError(
                    f"column {name!r}: the dict key {key!r} holds a NUL character (\\x00), "
                    "which the platform cannot store; rename the key",
                    param=name,
                )
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
            mask = bad_value_mask(col)
            if mask is not None:
                for i in np.flatnonzero(mask)[:MAX_RECORDED_FAILURES]:
                    failures.append(
                        failure(
                            offset + i,
                            name,
                            col[int(i)].as_py(),
                            "±inf cannot be represented in JSON; use null or a finite number",
                        )
                    )
            failures.extend(_nul_failures(col, name, offset))
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
            out.append(failure(offset + i, name, None, "the id is missing; every row needs an id"))
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        out.extend(_nul_failures(col, name, offset))
        if not pa.types.is_integer(col.type):
            length = pc.utf8_length(col)
            bad = pc.fill_null(
                pc.or_(pc.equal(length, 0), pc.greater(length, MAX_EXTERNAL_ID)), False
            )
            for i in np.flatnonzero(bad.to_numpy(zero_copy_only=False))[:MAX_RECORDED_FAILURES]:
                out.append(
                    failure(
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
        ok = self.valid_values(col, self.labels) if self.valid_values is not None else None
        if ok is not None:
            bad = np.flatnonzero(~ok)
            return [
                failure(
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
            if allow_list and isinstance(value, list) and value:
                try:  # one prediction whose value is itself a list (label set, order, spans)
                    self.atype.validate_value(value, self.labels)
                    continue
                except ValueError:
                    pass
            for v in values:
                label = v.get("label") if (allow_list and isinstance(v, dict)) else v
                try:
                    self.atype.validate_value(label, self.labels)
                except ValueError as exc:
                    out.append(failure(offset + i, name, value, f"{role}: {exc}"))
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
                except (OSError, ValueError) as exc:  # ValueError: a path with NUL in it
                    why = getattr(exc, "strerror", None) or exc
                    out.append(failure(offset + i, name, path, f"cannot read image file: {why}"))
                    continue
            else:
                head = data[:16]
            if sniff_image(head) is None:
                out.append(
                    failure(
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
            size = image_size(data)
            if size is not None:  # the pixel size, from the header (as the platform records)
                ref["width"], ref["height"] = size
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
            out["external_id"] = encode_array(batch.column(roles.id_column)).cast(pa.string())
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
                None if source_schema is None else {SOURCE_SCHEMA_KEY: orjson.dumps(source_schema)}
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
            quote(cols["external_id"], plain=plain_ids),
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
        return b'{"tasks":[' + text + tail, JSON


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


def quote(strings: pa.Array, *, plain: bool = False) -> pa.Array:
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
    enc = encode_array(arr)
    t = pa.types
    dtype = enc.type
    source = arr.type.value_type if t.is_dictionary(arr.type) else arr.type
    is_text = t.is_string(source) or t.is_large_string(source) or t.is_string_view(source)
    if as_string or t.is_string(dtype) or t.is_large_string(dtype):
        # only real text can hold quotes or control characters; formatted values cannot
        out = quote(enc, plain=not is_text and not t.is_binary(source))
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
