"""Consensus on Dask (issue 19): the same labels and posteriors as the in-memory fit.

Runs on a real ``distributed.LocalCluster`` (one in-process worker, two threads, to stay quick
on CI's two cores); the 14 real crowd datasets and a synthetic crowd with gold and declared
labels. The core never imports Dask (pinned in a fresh interpreter).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import cynaps_data.consensus as C
from cynaps_data.errors import ValidationError

from .consensus_data import DATASETS, load
from .test_consensus_api import synthetic

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def assert_same_fit(mem, dist, labels_tol: float = 1e-4) -> None:
    """>= 99.99% equal labels, posteriors within 1e-6, same small model."""
    labels = dist.labels_.compute() if hasattr(dist.labels_, "compute") else dist.labels_
    probas = dist.probas_.compute() if hasattr(dist.probas_, "compute") else dist.probas_
    assert labels.name == "label" and probas.index.name == "task"
    assert sorted(labels.index) == sorted(mem.labels_.index)
    labels = labels.reindex(mem.labels_.index)
    probas = probas.reindex(mem.probas_.index)
    assert list(probas.columns) == list(mem.probas_.columns)
    assert (labels == mem.labels_).mean() >= 1 - labels_tol
    assert np.abs(probas.to_numpy() - mem.probas_.to_numpy()).max() < 1e-6
    assert dist.n_iter_ == mem.n_iter_
    assert np.allclose(dist.loss_history_, mem.loss_history_, rtol=1e-9, atol=1e-12)
    # Dask stores strings as string[pyarrow]: same values, another index dtype
    same = {"rtol": 1e-6, "check_index_type": False}
    pd.testing.assert_series_equal(dist.priors_, mem.priors_, **same)
    pd.testing.assert_series_equal(dist.skills_.reindex(mem.skills_.index), mem.skills_, **same)
    if hasattr(mem, "errors_"):
        got = dist.errors_.reindex(mem.errors_.index)
        pd.testing.assert_frame_equal(got, mem.errors_, check_column_type=False, **same)


def test_core_never_imports_dask() -> None:
    code = (
        "import sys, cynaps_data, cynaps_data.consensus, cynaps_data.consensus.dask\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", DATASETS)
def test_real_datasets_equal_in_memory(client, name) -> None:
    df, _ = load(name)
    ddf = dd.from_pandas(df, npartitions=3)
    for make in (  # (MajorityVote: in the synthetic test, with gold and declared labels)
        lambda: C.DawidSkene(n_iter=5),  # a few iterations each: every one is compared
        lambda: C.OneCoinDawidSkene(n_iter=3),
    ):
        assert_same_fit(make().fit(df), make().fit(ddf))


def test_synthetic_crowd_with_gold_and_declared_labels(client) -> None:
    df, truth = synthetic(n_tasks=400, n_workers=15, labels=["cat", "dog", "eel"])
    gold = truth.iloc[::7]
    ddf = dd.from_pandas(df, npartitions=4)
    labels = ["eel", "dog", "cat", "fox"]  # declared order, one class never answered
    for make in (
        lambda: C.MajorityVote(labels=labels),
        lambda: C.DawidSkene(labels=labels, alpha_correct=1.0, alpha_wrong=0.5),
        lambda: C.OneCoinDawidSkene(labels=labels, smoothing=0.5),
        lambda: C.MACE(labels=labels, n_restarts=2, n_iter=4),
    ):
        mem, dist = make().fit(df, gold=gold), make().fit(ddf, gold=gold)
        assert_same_fit(mem, dist)
        got = dist.labels_.compute()
        assert (got.loc[gold.index] == gold).all()  # gold tasks keep their gold label
    mace = C.MACE(n_restarts=1, n_iter=3)
    mem = C.MACE(n_restarts=1, n_iter=3).fit(df)
    pd.testing.assert_frame_equal(
        mace.fit(ddf).spam_strategy_.reindex(mem.spam_strategy_.index),
        mem.spam_strategy_,
        check_index_type=False,
        check_column_type=False,
    )


def test_pandas_on_request_and_frames_partitioned_by_task(client) -> None:
    df, _ = synthetic(n_tasks=200, n_workers=10)
    mem = C.DawidSkene().fit(df)
    by_task = dd.from_pandas(df.set_index("task").sort_index(), npartitions=3)
    assert by_task.known_divisions
    dist = C.fit_dask(C.DawidSkene(), by_task, to_pandas=True)  # no shuffle: tasks in one part
    assert isinstance(dist.labels_, pd.Series) and isinstance(dist.probas_, pd.DataFrame)
    assert_same_fit(mem, dist)
    res = C.aggregate(dd.from_pandas(df, npartitions=2), method="mv")
    assert (res.labels.compute().reindex(mem.labels_.index).index == mem.labels_.index).all()


def test_bad_input_is_named(client) -> None:
    df, _ = synthetic(n_tasks=50, n_workers=5)
    with pytest.raises(ValidationError, match="missing required column"):
        C.DawidSkene().fit(dd.from_pandas(df.drop(columns="worker"), npartitions=2))
    bad = df.copy()
    bad.loc[7, "label"] = None
    with pytest.raises(ValidationError, match="'label' has 1 missing"):
        C.DawidSkene().fit(dd.from_pandas(bad, npartitions=2))
    with pytest.raises(ValidationError, match="outside the declared label set"):
        C.MajorityVote(labels=[0, 1]).fit(dd.from_pandas(df, npartitions=2))
    with pytest.raises(ValidationError, match="GLAD cannot fit a Dask DataFrame"):
        C.GLAD().fit(dd.from_pandas(df, npartitions=2))
