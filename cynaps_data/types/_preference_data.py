"""Task-data helpers of the preference types (``pairwise``, ``ranking``): the data fields a
config names, candidates' item ids, and the JSON keys of the stored values read with Arrow.

Item ids: a configured id entry is a data field name or a list of field names (their values
joined with ``":"``); without one, an item's id is ``"sha:"`` + 12 hex digits of the SHA-256 of
its content (a string as is, anything else as sorted-key JSON).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd

MAX_FIELD = 200


def check_field(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_FIELD:
        raise ValueError(f"{where} must be a data field name (1-{MAX_FIELD} characters)")
    return name


def check_id_spec(spec: Any, where: str) -> str | list[str]:
    """An id entry: a field name or a non-empty list of field names."""
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"{where} must name at least one field")
        return [check_field(f, f"{where}[{i}]") for i, f in enumerate(spec)]
    return check_field(spec, where)


def content_id(content: Any) -> str:
    """The id of a candidate without a configured id: ``sha:`` + 12 hex of its content."""
    text = (
        content if isinstance(content, str) else orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    )
    raw = text.encode() if isinstance(text, str) else text
    return "sha:" + hashlib.sha256(raw).hexdigest()[:12]


def field_value(data: Any, field: str, where: str) -> Any:
    """``data[field]``; a missing field (or data that is not an object) is a ``ValueError``."""
    if not isinstance(data, dict) or field not in data or data[field] is None:
        raise ValueError(f"the task's data has no {where} field {field!r}")
    return data[field]


def id_from(data: dict, spec: str | list[str], where: str) -> str:
    fields = spec if isinstance(spec, list) else [spec]
    parts = []
    for field in fields:
        value = field_value(data, field, where)
        parts.append(value if isinstance(value, str) else orjson.dumps(value).decode())
    return ":".join(parts)


def json_key(texts: Any, key: str, allowed: tuple[str, ...]) -> pa.Array:
    """The string under ``key`` in each JSON object text (one of ``allowed``), as an Arrow
    string array; null where the text is ``""``/null or lacks it. A JSON string text that is
    itself one of ``allowed`` (``'"a"'``) counts as that choice when ``key`` is ``choice``."""
    import pyarrow.compute as pc

    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), pa.string())
    if len(texts) == 0:
        return pa.array([], pa.string())
    words = "|".join(allowed)
    found = pc.extract_regex(texts, f'"{key}":"(?P<v>{words})"')
    value = pc.if_else(
        pc.is_valid(found), pc.struct_field(found, "v"), pa.scalar(None, pa.string())
    )
    if key == "choice":
        plain = pc.extract_regex(texts, f'^"(?P<v>{words})"$')
        value = pc.coalesce(
            value,
            pc.if_else(
                pc.is_valid(plain), pc.struct_field(plain, "v"), pa.scalar(None, pa.string())
            ),
        )
    return value


def _codes(values: pa.Array, allowed: tuple[str, ...]) -> np.ndarray:
    """int64 positions of ``values`` in ``allowed``; -1 for null."""
    import pyarrow.compute as pc

    if len(values) == 0:
        return np.zeros(0, dtype="int64")
    index = pc.index_in(values, value_set=pa.array(allowed, pa.string()))
    return index.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")


def pd_object(values: list, index: Any) -> Any:
    import pandas as pd

    return pd.Series(values, index=index, dtype=object)


def data_fields(config: dict) -> list[str]:
    """Every data field the config reads (prompt, candidates, id fields)."""
    fields = [config["prompt"]] if config.get("prompt") else []
    candidates = config["candidates"]
    fields += candidates if isinstance(candidates, list) else [candidates]
    ids = config.get("ids")
    if isinstance(ids, str):
        fields.append(ids)
    elif ids:
        for spec in ids:
            fields += spec if isinstance(spec, list) else [spec]
    return fields


def data_records(frame: pd.DataFrame, config: dict) -> list[dict]:
    """The config's data fields of each row of a wide frame as dicts (a data column renamed
    ``data.<name>`` by the export is found under its own name)."""
    columns = {}
    for field in dict.fromkeys(data_fields(config)):
        for name in (field, f"data.{field}"):
            if name in frame.columns:
                columns[field] = frame[name].tolist()
                break
    n = len(frame)
    return [{f: v[i] for f, v in columns.items() if not _missing(v[i])} for i in range(n)]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def candidates_of(data: Any, config: dict) -> list[tuple[str, Any]] | None:
    """``[(item_id, content), (item_id, content)]`` of a task's pair, or None when its data
    lacks a candidate (or an id field)."""
    try:
        out = []
        for i, field in enumerate(config["candidates"]):
            content = field_value(data, field, "candidate")
            ids = config.get("ids")
            item = id_from(data, ids[i], "id") if ids else content_id(content)
            out.append((item, content))
        return out
    except ValueError:
        return None


def prompt_of(data: Any, config: dict) -> Any:
    """The task's prompt (None without a prompt field or value)."""
    field = config.get("prompt")
    if not field or not isinstance(data, dict):
        return None
    return data.get(field)
