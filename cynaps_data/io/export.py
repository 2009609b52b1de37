"""Typed exports: the platform's Arrow tables → pandas, Parquet, ``datasets``, CSV, JSONL.

Data contracts
--------------
Wide form (:func:`wide_table`, :func:`wide_frame`), one row per task, index ``task`` (int64, the
platform's task id), columns in this order:

* the task's own data columns, with the dtypes they were uploaded with (restored from the
  project's source schema; inferred from the JSON for plain uploads). A data column whose name
  clashes with a metadata column below is renamed ``data.<name>``;
* ``external_id`` (str), ``gold`` (category over the project's labels, declared order);
* ``label`` (category over the project's labels in declared order; missing while not final);
* ``label_source`` (category: consensus | majority | expert | imported | none);
* ``status`` (category: pending | disputed | completed — partial exports say so per row);
* ``stop_reason`` (category: agreement | confident | max_annotators | disagreement | expert |
  no_funds | imported; missing while the task collects judgements): why it stopped
  (docs/configuration.md, adaptive overlap);
* ``agreement`` (float64: the top answer's share of the annotators' votes, the platform's policy);
* ``confidence`` (float64: share of the annotators' votes that agree with ``label``);
* ``n_annotations`` (int64: annotator judgements);
* ``vote_distribution.<label>`` (float64, one column per label in declared order: the label's
  share of the annotators' votes; NaN before any vote). :func:`soft_labels` gives them as one
  (n_tasks, n_labels) float frame;
* ``annotator_ids`` (object: a Python list of str per row, in judgement order);
* ``expert_label`` (category) and ``expert_id`` (str): the expert's verdict where reviewed;
* ``updated_at`` (datetime64[us, UTC]).

With ``method=`` (client-side re-aggregation by :mod:`cynaps_data.consensus`) three more:
``<method>_label`` (category), ``<method>_confidence`` (float64, the top posterior) and
``<method>_proba.<label>`` (float64 posterior per label, one column each: soft labels for
training; ``soft_labels(frame, method)``).

Every column is a numpy dtype, a pandas categorical or an object column of plain Python values,
so a frame survives ``to_parquet``/``read_parquet``, ``to_feather``/``read_feather``, pickle,
``to_csv``/``read_csv`` and ``datasets.Dataset.from_pandas`` with default arguments (nested
``pd.ArrowDtype`` columns do not: pandas-dev/pandas#53011). Nested *data* columns hold dicts and
lists.

Long form (:func:`long_frame`), one row per judgement, RangeIndex: ``task`` (int64), ``worker``
(str), ``label`` (category), ``role`` (category: annotator | expert), ``origin`` (category:
platform | imported), ``created_at`` (datetime64[us, UTC]), ``duration`` (float64 seconds),
``judgement`` (int64). ``task``/``worker``/``label`` are what crowd-kit and
:func:`cynaps_data.consensus.aggregate` take.

``frame.attrs["cynaps"]`` holds the project description (labels, annotation type, quality
settings, state) and the ``cursor`` for the next incremental export (``since=``).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ..errors import ValidationError
from ..wire import PROJECT_KEY
from .ipc import project_info, read_ipc  # noqa: F401 - re-exported: the stream's reader
from .schema import to_pandas_nested_as_python

if TYPE_CHECKING:
    import datasets
    import pandas as pd

METADATA_COLUMNS = (
    "external_id",
    "gold",
    "label",
    "label_source",
    "status",
    "stop_reason",
    "agreement",
    "confidence",
    "n_annotations",
    "vote_distribution",
    "annotator_ids",
    "expert_label",
    "expert_id",
    "updated_at",
)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# -- Arrow ----------------------------------------------------------------------------------


def wide_table(table: pa.Table, *, fetch_asset: Callable[[str], bytes] | None = None) -> pa.Table:
    """The platform's wide table flattened: data columns restored to their source types, then
    the metadata columns; ``task`` first. Schema metadata: ``cynaps.project`` plus, when the
    source was pandas, the data columns' pandas metadata."""
    from .schema import restore_columns

    info = project_info(table)
    data = table.column("data")  # (chunks as streamed: flattened per chunk, not copied)
    names = [data.type.field(i).name for i in range(data.type.num_fields)]
    data_table = pa.table(data.flatten(), names=names) if names else pa.table({})
    source_schema = info.get("source_schema")
    pandas_meta = None
    if source_schema:
        # columns no exported row holds (no task yet, or none changed since a cursor) are
        # still the project's: typed nulls, restored below like the rest
        missing = [c for c in source_schema.get("data_columns", []) if c not in names]
        for name in missing:
            data_table = data_table.append_column(name, pa.nulls(table.num_rows))
        names += missing
    if source_schema and names:
        data_table = restore_columns(data_table, source_schema, fetch_asset=fetch_asset)
        pandas_meta = (data_table.schema.metadata or {}).get(b"pandas")
        # upload order of the columns, as in the source
        order = [c for c in source_schema.get("data_columns", []) if c in data_table.column_names]
        order += [c for c in data_table.column_names if c not in order]
        data_table = data_table.select(order)
    columns = {"task": table.column("task")}
    renamed = {}
    for name in data_table.column_names:
        # a data column named like a metadata or type column (e.g. a type's ``width``) is renamed
        taken = name in METADATA_COLUMNS or name == "task" or name in table.column_names
        out = f"data.{name}" if taken else name
        renamed[name] = out
        columns[out] = data_table.column(name)
    for name in table.column_names:
        if name not in ("task", "data"):
            columns[name] = table.column(name)
    out = pa.table(columns)
    meta = {PROJECT_KEY: orjson.dumps({**info, "data_columns": list(renamed.values())})}
    if pandas_meta is not None:
        pm = json.loads(pandas_meta)
        for col in pm.get("columns", []):
            if col.get("field_name") in renamed:
                col["field_name"] = col["name"] = renamed[col["field_name"]]
        meta[b"cynaps.pandas_data"] = json.dumps(pm).encode()
    return out.replace_schema_metadata(meta)


def flatten_structs(table: pa.Table) -> pa.Table:
    """``table`` with each struct column replaced, in place, by one column per field named
    ``<column>.<field>`` (a null struct row is null in every field)."""
    names: list[str] = []
    columns: list[Any] = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_struct(column.type):
            for field, child in zip(column.type, column.flatten(), strict=True):
                names.append(f"{name}.{field.name}")
                columns.append(child)
        else:
            names.append(name)
            columns.append(column)
    return pa.table(columns, names=names).replace_schema_metadata(table.schema.metadata)


def wide_frame(table: pa.Table, python_columns: dict[str, list] | None = None) -> pd.DataFrame:
    """A :func:`wide_table` as the typed DataFrame of the module contract (index ``task``).
    ``python_columns``: values of list columns already made (:func:`read_ipc`)."""
    import pandas as pd

    meta = table.schema.metadata or {}
    info = orjson.loads(meta.get(PROJECT_KEY, b"{}"))
    data_names = info.get("data_columns", [])
    data_part = table.select(data_names)
    pandas_meta = meta.get(b"cynaps.pandas_data")
    if pandas_meta is not None:
        data_part = data_part.replace_schema_metadata({b"pandas": pandas_meta})
    data_df = to_pandas_nested_as_python(data_part)
    rest = flatten_structs(table.drop_columns(data_names))
    rest_df = to_pandas_nested_as_python(rest, python_columns)
    index = pd.Index(rest_df.pop("task").to_numpy(dtype="int64"), name="task")
    data_df.index = index
    rest_df.index = index
    frame = pd.concat([data_df, rest_df], axis=1) if len(data_df.columns) else rest_df
    frame.attrs["cynaps"] = {k: v for k, v in info.items() if k != "data_columns"}
    atype, config = project_type(frame)
    to_pandas_columns = getattr(atype, "to_pandas_columns", None)
    if to_pandas_columns is not None:
        attrs = frame.attrs
        frame = to_pandas_columns(frame, config)
        frame.attrs = attrs
    return frame


def long_frame(table: pa.Table) -> pd.DataFrame:
    """The platform's long (per judgement) table as a DataFrame of the module contract."""
    frame = to_pandas_nested_as_python(table)
    frame.attrs["cynaps"] = project_info(table)
    return frame


def incremental(previous: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """Apply an incremental wide export (``since=``) to an earlier one: changed tasks replace
    their rows, new tasks are appended; the result is ordered by task id."""
    import pandas as pd

    if changes.empty:
        return previous
    kept = previous[~previous.index.isin(changes.index)]
    out = pd.concat([kept, changes]).sort_index()
    out.attrs = dict(changes.attrs)
    return out


# -- re-aggregation ----------------------------------------------------------------------------
def add_reaggregation(
    frame: pd.DataFrame, judgements: pd.DataFrame, method: Any, **params: Any
) -> pd.DataFrame:
    """Add the columns of the project type's client-side re-aggregation (``<method>_label``,
    ``<method>_confidence``, soft labels... — see the type's ``aggregate``) from the annotators'
    judgements (experts' verdicts are not votes). ``frame.attrs["cynaps"]`` names the type and
    its config; tasks without votes get missing values."""
    import inspect

    import pandas as pd

    atype, config = project_type(frame)
    votes = judgements[judgements["role"] == "annotator"]
    if "tasks" in inspect.signature(atype.aggregate).parameters:
        params = {**params, "tasks": frame}  # the type reads the tasks' data (e.g. their text)
    added = atype.aggregate(votes, method, config, **params).reindex(frame.index)
    out = pd.concat([frame, added], axis=1)
    out.attrs = frame.attrs
    return out


def check_method(info: dict, method: Any, **params: Any) -> None:
    """Fail on an unknown re-aggregation method or parameter before anything is downloaded."""
    import pandas as pd

    atype, config = _type_of(info)
    empty = pd.DataFrame({"task": pd.Series([], dtype="int64"), "worker": [], "label": []})
    atype.aggregate(empty, method, config, **params)


def project_type(frame: pd.DataFrame) -> tuple[Any, Any]:
    """The annotation type object and label config of an exported frame (``attrs``)."""
    return _type_of(frame.attrs.get("cynaps") or {})


def _type_of(info: dict) -> tuple[Any, Any]:
    from ..types import DEFAULT_TYPE, get_type

    return get_type(info.get("annotation_type") or DEFAULT_TYPE), info.get("labels")


def method_name(method: Any) -> str:
    """The column prefix of a re-aggregation method (a name or an aggregator instance)."""
    from ..types.base import method_prefix

    return method_prefix(method)


def soft_labels(frame: pd.DataFrame, method: Any = None) -> pd.DataFrame:
    """Soft labels of a wide export as an (n_tasks, n_labels) float64 DataFrame.

    Index: ``frame``'s (``task``); columns: the labels in the project's order (``name="label"``).
    ``method=None``: the platform's vote shares (``vote_distribution.<label>``); a method name
    (e.g. ``"dawid_skene"``, exported with ``to_pandas(method=...)``): its posteriors
    (``<method>_proba.<label>``). NaN where a task has no vote. ``.to_numpy()`` gives the matrix
    cleanlab and most trainers take. Works on a frame read back from Parquet, feather or CSV.
    """
    import pandas as pd

    prefix = "vote_distribution." if method is None else f"{method_name(method)}_proba."
    columns = [c for c in frame.columns if isinstance(c, str) and c.startswith(prefix)]
    if not columns:
        how = (
            "project.to_pandas()"
            if method is None
            else (f"project.to_pandas(method={method_name(method)!r})")
        )
        raise ValidationError(
            f"no {prefix}<label> columns in the frame; export it with {how}", param="method"
        )
    out = frame[columns].astype("float64")
    names = [c[len(prefix) :] for c in columns]
    labels = (frame.attrs.get("cynaps") or {}).get("labels")
    if labels is not None and [str(x) for x in labels] == names:
        names = list(labels)
    out.columns = pd.Index(names, name="label")
    return out


# -- Parquet -----------------------------------------------------------------------------------
def frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """A wide/long DataFrame as an Arrow table that keeps its dtypes (pandas metadata) and the
    project description (``cynaps.project``: labels, annotation type, quality settings...)."""
    table = pa.Table.from_pandas(frame, preserve_index=frame.index.name is not None)
    info = frame.attrs.get("cynaps") or {}
    meta = dict(table.schema.metadata or {})
    if b"pandas" in meta:  # nested Arrow dtypes: pandas cannot parse their names back
        pandas_meta = json.loads(meta[b"pandas"])
        for col in pandas_meta.get("columns", []):
            if str(col.get("numpy_type", "")).startswith(
                ("struct<", "list<", "large_list<", "map<")
            ):
                col["numpy_type"] = "object"
        meta[b"pandas"] = json.dumps(pandas_meta).encode()
    meta[PROJECT_KEY] = orjson.dumps(info, option=orjson.OPT_SERIALIZE_NUMPY)
    if info.get("labels") is not None:
        meta[b"cynaps.labels"] = orjson.dumps(info["labels"])
        meta[b"cynaps.annotation_type"] = str(info.get("annotation_type", "")).encode()
        meta[b"cynaps.quality_settings"] = orjson.dumps(info.get("quality_settings"))
    return table.replace_schema_metadata(meta)


def write_parquet(frame: pd.DataFrame, path: str | Path, **kwargs: Any) -> Path:
    """Write a typed export to Parquet (``kwargs`` go to ``pyarrow.parquet.write_table``)."""
    import pyarrow.parquet as pq

    path = Path(path)
    pq.write_table(frame_to_arrow(frame), path, **kwargs)
    return path


def read_parquet(path: str | Path) -> pd.DataFrame:
    """Read a Parquet export back to the same typed frame (with ``attrs["cynaps"]``)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    frame = to_pandas_nested_as_python(table)
    info = (table.schema.metadata or {}).get(PROJECT_KEY)
    if info:
        frame.attrs["cynaps"] = orjson.loads(info)
    return frame


# -- CSV and JSONL -----------------------------------------------------------------------------
def escape_formula(value: Any) -> Any:
    """A string that a spreadsheet would run as a formula, made inert with a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def to_csv(frame: pd.DataFrame, path: str | Path | None = None) -> str | Path:
    """CSV of a typed export, safe to open in a spreadsheet.

    Text cells starting with ``= + - @`` tab or CR are prefixed with ``'`` (formula injection);
    lists and dicts are written as JSON text.
    """
    import pandas as pd

    out = pd.DataFrame(index=frame.index)
    for name in frame.columns:
        col = frame[name]
        dtype = col.dtype
        if isinstance(dtype, pd.ArrowDtype) or pd.api.types.is_object_dtype(dtype):
            values = [_csv_cell(v) for v in col.tolist()]
            out[name] = [escape_formula(v) for v in values]
        elif isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
            out[name] = col.astype(object).map(escape_formula, na_action="ignore")
        else:
            out[name] = col
    # the header is data too (a data column's name): escaped like the cells
    out.columns = [escape_formula(str(c)) for c in out.columns]
    out.index.name = escape_formula(out.index.name)
    # CRLF rows (RFC 4180): cells holding CR or LF are quoted, so they cannot break a row
    if path is None:
        return out.to_csv(lineterminator="\r\n")
    out.to_csv(path, lineterminator="\r\n")
    return Path(path)


def _csv_cell(value: Any) -> Any:
    """One value of an object column as a CSV cell: text as it is, lists, dicts and arrays as
    JSON text, bytes as base64 (as on the wire), other scalars (numbers, Decimal, dates) as
    pandas writes them; missing as empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        return _json_text(value)
    return value


def _json_default(value: Any) -> Any:
    """What orjson cannot write by itself: Decimal as its exact text, bytes as base64."""
    import decimal

    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} values cannot be written as JSON")


def _json_text(value: Any) -> str:
    if hasattr(value, "tolist"):
        value = value.tolist()
    return orjson.dumps(
        value,
        default=_json_default,
        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
    ).decode()


def to_jsonl(records: list[dict], path: str | Path | None = None) -> str | Path:
    """The seed-shaped records, one JSON object per line."""
    text = b"".join(orjson.dumps(r) + b"\n" for r in records)
    if path is None:
        return text.decode()
    Path(path).write_bytes(text)
    return Path(path)


# -- datasets ----------------------------------------------------------------------------------
def to_dataset(
    table: pa.Table, *, features_of_data: datasets.Features | None = None
) -> datasets.Dataset:
    """A :func:`wide_table` as a ``datasets.Dataset``.

    The value columns (``label``, ``gold``, ``expert_label``...) take the features the project's
    annotation type gives (e.g. ``ClassLabel(names=<project labels>)``, missing is
    ``-1``); ``label_source`` and ``status`` are strings; ``vote_distribution`` is a dict of
    float64 shares; ``annotator_ids`` a sequence of strings; data columns keep their source
    features (``Image`` where images were uploaded) or the features Arrow implies.
    """
    import datasets
    import pyarrow.compute as pc

    info = project_info(table)
    if features_of_data is None:
        from .schema import features_from

        features_of_data = features_from(info.get("source_schema"))
    atype, config = _type_of(info)
    value_features = atype.features(config) if config is not None else {}
    columns: dict[str, pa.Array] = {}
    features: dict[str, Any] = {}
    data_names = set(info.get("data_columns", []))
    for name in table.column_names:
        col = (
            table.column(name).combine_chunks()
            if table.num_rows
            else pa.array([], table.schema.field(name).type)
        )
        if name in value_features and name not in data_names:
            columns[name] = encode_for_feature(col, value_features[name])
            features[name] = value_features[name]
            continue
        if pa.types.is_dictionary(col.type):
            col = pc.cast(col, col.type.value_type)
        columns[name] = col
    arrow = pa.table(columns)
    inferred = datasets.Features.from_arrow_schema(arrow.schema)
    for name in arrow.column_names:
        if name in features:
            continue
        # a data column renamed ``data.<name>`` (its name was taken) keeps its own feature
        source = name[len("data.") :] if name.startswith("data.") else name
        source = name if features_of_data is None or name in features_of_data else source
        if features_of_data is not None and name in data_names and source in features_of_data:
            features[name] = features_of_data[source]
        else:
            features[name] = inferred[name]
    feats = datasets.Features({name: features[name] for name in arrow.column_names})
    arrow = arrow.cast(feats.arrow_schema) if arrow.schema != feats.arrow_schema else arrow
    return datasets.Dataset(
        arrow, info=datasets.DatasetInfo(features=feats, description=info.get("name", ""))
    )


def encode_for_feature(col: pa.Array, feature: Any) -> pa.Array:
    """``col`` in the Arrow form ``feature`` stores: class names (dictionary or strings) become
    ``ClassLabel`` codes (missing: ``-1``), also inside lists for ``Sequence``/``List`` of
    ``ClassLabel`` and in the fields of structs (``List({"label": ClassLabel, ...})``); anything else is left for the final cast to the features' schema."""
    import datasets
    import pyarrow.compute as pc

    if isinstance(feature, dict) and pa.types.is_struct(col.type):  # fields one by one
        names = [col.type.field(i).name for i in range(col.type.num_fields)]
        children = [
            encode_for_feature(child, feature[name]) if name in feature else child
            for name, child in zip(names, col.flatten(), strict=True)
        ]
        return pa.StructArray.from_arrays(children, names=names, mask=col.is_null())
    if isinstance(feature, datasets.ClassLabel):
        if not pa.types.is_dictionary(col.type):
            col = pc.cast(col, pa.string()).dictionary_encode()
        return pa.array(_codes_in(col, list(feature.names)), pa.int64())
    if isinstance(feature, dict) and pa.types.is_struct(col.type):  # ClassLabel fields inside
        fields = list(col.type)
        children = [
            encode_for_feature(col.field(i), feature[f.name]) if f.name in feature else col.field(i)
            for i, f in enumerate(fields)
        ]
        return pa.StructArray.from_arrays(
            children,
            fields=[pa.field(f.name, c.type) for f, c in zip(fields, children, strict=True)],
            mask=col.is_null(),
        )
    inner = getattr(feature, "feature", None)
    if isinstance(inner, (datasets.ClassLabel, dict)) and (
        pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
    ):
        codes = encode_for_feature(col.values, inner)  # offsets index the whole child array
        offsets = pc.cast(col.offsets, pa.int32())
        return pa.ListArray.from_arrays(offsets, codes, mask=col.is_null())
    return col


def _codes_in(col: pa.DictionaryArray, labels: list[str]) -> np.ndarray:
    dictionary = [str(v) for v in col.dictionary.to_pylist()]
    position = {v: i for i, v in enumerate(labels)}
    lookup = np.array([position.get(v, -1) for v in dictionary] + [-1], dtype="int64")
    indices = col.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)
    return lookup[indices.astype("int64")]


def reject_unknown(value: str, allowed: tuple[str, ...], param: str) -> None:
    if value not in allowed:
        raise ValidationError(
            f"Unknown {param} {value!r}; supported: {', '.join(allowed)}", param=param
        )


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(frame_to_arrow(frame), sink)
    return sink.getvalue()


def per_label_agreement(votes: pd.DataFrame, labels: list) -> pd.DataFrame:
    """Per-label agreement of a long frame (``task``, ``label``), index ``label``.

    Columns: ``n_votes`` (int64), ``share`` (the label's share of all votes, ``p_j``),
    ``specific_agreement`` (chance that another vote on the same task is also this label, given
    one is: ``Σ n_ij(n_ij-1) / Σ n_ij(n_i-1)`` over tasks with 2+ votes) and ``kappa`` (Fleiss'
    per-category kappa, ``(specific_agreement - p_j) / (1 - p_j)``).
    """
    import pandas as pd

    codes = pd.Categorical(votes["label"].astype(object), categories=labels).codes
    ok = codes >= 0
    task_codes, _ = pd.factorize(votes["task"].to_numpy()[ok])
    k = len(labels)
    counts = np.zeros((task_codes.max() + 1 if len(task_codes) else 0, k))
    np.add.at(counts, (task_codes, codes[ok]), 1)
    n_i = counts.sum(axis=1)
    multi = n_i >= 2
    c, n = counts[multi], n_i[multi]
    with np.errstate(invalid="ignore", divide="ignore"):
        specific = (c * (c - 1)).sum(axis=0) / (c * (n[:, None] - 1)).sum(axis=0)
        share = counts.sum(axis=0) / counts.sum()
        kappa = (specific - share) / (1 - share)
    return pd.DataFrame(
        {
            "n_votes": counts.sum(axis=0).astype("int64"),
            "share": share,
            "specific_agreement": specific,
            "kappa": kappa,
        },
        index=pd.Index(labels, name="label"),
    )
