"""Exported frames survive everyday sinks with default arguments (issue 11).

Each frame kind ``project.to_pandas()`` makes (wide; wide before any vote; wide with
``method=``; long) goes through ``to_parquet``/``read_parquet``, ``to_feather``/``read_feather``,
pickle, ``to_csv``/``read_csv`` and ``datasets.Dataset.from_pandas`` and must come back with the
same values (and, for the typed sinks, the same dtypes). Nested ``ArrowDtype`` columns did not:
``read_parquet`` raised ``TypeError: data type 'struct<...>[pyarrow]' not understood``
(pandas-dev/pandas#53011). Soft labels stay one call away as a float matrix
(:func:`cynaps_data.io.export.soft_labels`).
"""

from __future__ import annotations

import ast
import math
import pickle

import numpy as np
import pandas as pd
import pytest

from .conftest import annotate, started_project
from .test_export import LABELS

KINDS = ["wide", "wide_before_any_vote", "wide_majority_vote", "long"]
SINKS = ["parquet", "feather", "pickle", "csv", "datasets"]


@pytest.fixture(scope="module")
def frames(platform, tmp_path_factory):
    """One frame of each kind, from real projects on the shared platform."""
    import cynaps_data as cynaps

    with cynaps.Client(api_key=platform.create_customer(), base_url=platform.base_url) as client:
        tasks = [{"text": f"item {i}", "n": i, "score": i / 4} for i in range(4)]
        project = started_project(client, tasks, labels=LABELS)
        ids = list(project.to_pandas().index)
        plan = dict(
            zip(
                ids,
                [
                    ["cat"] * 3,
                    ["dog", "dog", "cat"],
                    ["bird", "cat", "bird"],
                    ["cat", "dog", "bird"],
                ],
                strict=True,
            )
        )
        annotate(platform, client, project, plan)
        idle = started_project(client, tasks[:2], labels=LABELS)
        out = {
            "wide": project.to_pandas(),
            "wide_before_any_vote": idle.to_pandas(method="majority_vote"),
            "wide_majority_vote": project.to_pandas(method="majority_vote"),
            "long": project.to_pandas("long"),
        }
        project.cancel()
        idle.cancel()
    return out


def _cell(value):
    """A cell as a plain comparable value (None for every kind of missing)."""
    if isinstance(value, np.ndarray | list | tuple):
        return [_cell(v) for v in value]
    if isinstance(value, dict):
        return {k: _cell(v) for k, v in value.items()}
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _values(series: pd.Series) -> list:
    return [_cell(v) for v in series.astype(object).tolist()]


def _same_values(back: pd.DataFrame, frame: pd.DataFrame) -> None:
    assert list(back.columns) == list(frame.columns)
    assert _values(back.index.to_series()) == _values(frame.index.to_series())
    for name in frame.columns:
        got, want = _values(back[name]), _values(frame[name])
        assert got == pytest.approx(want, nan_ok=True) if _floats(want) else got == want, name


def _floats(values: list) -> bool:
    return any(isinstance(v, float) for v in values)


def _through(sink: str, frame: pd.DataFrame, path) -> pd.DataFrame:
    """``frame`` written to and read back from ``sink``, default arguments throughout."""
    if sink == "parquet":
        frame.to_parquet(path / "f.parquet")
        return pd.read_parquet(path / "f.parquet")
    if sink == "feather":
        frame.to_feather(path / "f.feather")
        return pd.read_feather(path / "f.feather")
    if sink == "pickle":
        return pickle.loads(pickle.dumps(frame))
    if sink == "csv":
        frame.to_csv(path / "f.csv")
        return pd.read_csv(path / "f.csv")
    import datasets

    return datasets.Dataset.from_pandas(frame).to_pandas()


@pytest.mark.parametrize("sink", SINKS)
@pytest.mark.parametrize("kind", KINDS)
def test_exported_frame_round_trips_through_sink(frames, kind, sink, tmp_path):
    frame = frames[kind]
    back = _through(sink, frame, tmp_path)
    if sink in ("parquet", "feather", "pickle"):  # typed sinks: same dtypes, same values
        assert back.dtypes.to_dict() == frame.dtypes.to_dict()
        _same_values(back, frame)
        return
    if sink == "datasets":  # a named index becomes a column; categories become their strings
        if frame.index.name:
            back = back.set_index(frame.index.name)
        assert back.index.name == frame.index.name
        _same_values(back, frame)
        return
    # CSV holds text: the index is the first column, lists are their Python literal
    index = frame.index.name or "Unnamed: 0"
    assert back.columns[0] == index
    back = back.set_index(index).rename_axis(frame.index.name)
    for name in frame.columns:
        if frame[name].dtype == object and any(isinstance(v, list) for v in frame[name]):
            back[name] = [ast.literal_eval(v) for v in back[name]]
        elif isinstance(frame[name].dtype, pd.DatetimeTZDtype):
            back[name] = pd.to_datetime(back[name])
    _same_values(back, frame)


def test_soft_labels_are_one_call_away_as_a_float_matrix(frames):
    from cynaps_data.io.export import soft_labels

    wide = frames["wide_majority_vote"]
    assert wide.attrs["cynaps"]["labels"] == LABELS  # re-aggregation keeps the project
    shares = soft_labels(wide)
    assert list(shares.columns) == LABELS and shares.index.equals(wide.index)
    assert shares.dtypes.eq(np.float64).all()
    ids = list(wide.index)
    assert shares.loc[ids[1]].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    proba = soft_labels(wide, "majority_vote")
    assert proba.loc[ids[1]].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    matrix = proba.to_numpy()
    assert matrix.shape == (4, 3) and matrix.dtype == np.float64
    assert np.allclose(matrix.sum(axis=1), 1.0)
    # through a sink and back, the same matrix (labels from the columns when attrs are gone)
    back = pd.read_csv(pd.io.common.StringIO(wide.to_csv()), index_col="task")
    assert np.array_equal(soft_labels(back, "majority_vote").to_numpy(), matrix)
    idle = soft_labels(frames["wide_before_any_vote"])
    assert idle.shape == (2, 3) and idle.isna().all().all()
