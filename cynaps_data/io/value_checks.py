"""Which values the platform cannot take, found column by column before anything is sent (the
client's upload checks, :mod:`cynaps_data.io.encoder`): Arrow types with no JSON form
(:func:`unsupported_reason`), values JSON cannot carry such as NaN/inf inside nested values
(:func:`bad_value_mask`), and text holding NUL, which PostgreSQL cannot store, in values
(:func:`nul_mask`) or in dict keys (:func:`nul_field_name`). Masks are NumPy bool arrays aligned
with the column's rows, or ``None`` when no row is bad."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["bad_value_mask", "nul_field_name", "nul_mask", "unsupported_reason"]


def unsupported_reason(dtype: pa.DataType) -> str | None:
    """Why a column of this Arrow type cannot be uploaded, or ``None`` when it can."""
    t = pa.types
    if t.is_union(dtype):
        return f"union type {dtype} is not supported"
    if isinstance(dtype, pa.BaseExtensionType):  # Python-defined and canonical (uuid, json, ...)
        if getattr(dtype, "extension_name", "") == "arrow.uuid":
            return "UUID values are not supported; upload them as text (df[column].astype(str))"
        return f"extension type {dtype} is not supported; cast it to its storage type first"
    if t.is_dictionary(dtype):
        return unsupported_reason(dtype.value_type)
    if t.is_list(dtype) or t.is_large_list(dtype) or t.is_fixed_size_list(dtype):
        return unsupported_reason(dtype.value_type)
    if t.is_list_view(dtype) or t.is_large_list_view(dtype):
        return unsupported_reason(dtype.value_type)
    if t.is_map(dtype):
        return unsupported_reason(dtype.key_type) or unsupported_reason(dtype.item_type)
    if t.is_struct(dtype):
        for i in range(dtype.num_fields):
            reason = unsupported_reason(dtype.field(i).type)
            if reason:
                return reason
    return None


def _rows_with(arr: pa.Array, leaf: Callable[[pa.Array], pa.Array | None]) -> np.ndarray | None:
    """Rows of ``arr`` holding, at any depth (dictionary values, list items, map entries,
    struct fields), a value ``leaf`` flags: ``leaf(values)`` gives a boolean Arrow array for a
    column of a type it checks, ``None`` for other types. ``None`` when no row is flagged."""
    t = pa.types
    dtype = arr.type
    if t.is_dictionary(dtype):
        inner = _rows_with(arr.dictionary, leaf)
        if inner is None:
            return None
        bad = pa.array(np.flatnonzero(inner), type=arr.indices.type)
        return pc.fill_null(pc.is_in(arr.indices, value_set=bad), False).to_numpy(
            zero_copy_only=False
        )
    if t.is_list(dtype) or t.is_large_list(dtype) or t.is_fixed_size_list(dtype) or t.is_map(dtype):
        inner = _rows_with(arr.flatten(), leaf)
        if inner is None:
            return None
        parents = pc.list_parent_indices(arr).to_numpy()
        mask = np.zeros(len(arr), dtype=bool)
        mask[parents[inner]] = True
        return mask
    if t.is_struct(dtype):
        out = None
        for child in arr.flatten():
            inner = _rows_with(child, leaf)
            if inner is not None:
                out = inner if out is None else (out | inner)
        return out
    found = leaf(arr) if len(arr) else None
    if found is None:
        return None
    mask = pc.fill_null(found, False).to_numpy(zero_copy_only=False)
    return mask if mask.any() else None


def _infinite(values: pa.Array) -> pa.Array | None:
    return pc.is_inf(values) if pa.types.is_floating(values.type) else None


def _holds_nul(values: pa.Array) -> pa.Array | None:
    t = pa.types
    if t.is_string_view(values.type):
        values = values.cast(pa.large_string())
    elif not (t.is_string(values.type) or t.is_large_string(values.type)):
        return None
    return pc.match_substring(values, "\x00")


def bad_value_mask(arr: pa.Array) -> np.ndarray | None:
    """Rows holding a value JSON cannot carry (``±inf`` at any depth), or ``None`` if none."""
    return _rows_with(arr, _infinite)


def nul_mask(arr: pa.Array) -> np.ndarray | None:
    """Rows holding text with a NUL character at any depth (the platform cannot store it), or
    ``None`` if none."""
    return _rows_with(arr, _holds_nul)


def nul_field_name(dtype: pa.DataType) -> str | None:
    """A struct field name (a dict key) holding a NUL character anywhere in ``dtype``."""
    t = pa.types
    if t.is_struct(dtype):
        for field in dtype:
            if "\x00" in field.name:
                return field.name
            found = nul_field_name(field.type)
            if found is not None:
                return found
        return None
    if t.is_dictionary(dtype):
        return nul_field_name(dtype.value_type)
    if t.is_map(dtype):
        return nul_field_name(dtype.key_type) or nul_field_name(dtype.item_type)
    if hasattr(dtype, "value_type"):  # list types
        return nul_field_name(dtype.value_type)
    return None
