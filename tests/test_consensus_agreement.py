"""Agreement statistics against the reference implementations (krippendorff, statsmodels)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consensus_data import DATASETS, load  # noqa: E402

import cynaps_data.consensus as C  # noqa: E402

krippendorff = pytest.importorskip("krippendorff")
inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")

needs_data = pytest.mark.usefixtures("crowd_data")  # skip locally, fail under CI


def _reliability(df: pd.DataFrame) -> np.ndarray:
    d = df.drop_duplicates(["task", "worker"], keep="first")
    w, _ = pd.factorize(d["worker"])
    t, _ = pd.factorize(d["task"])
    mat = np.full((w.max() + 1, t.max() + 1), np.nan)
    mat[w, t] = d["label"].to_numpy(dtype=float)
    return mat


@needs_data
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
@pytest.mark.parametrize("dataset", DATASETS)
def test_krippendorff_matches_package(dataset: str, level: str) -> None:
    df, _ = load(dataset)
    if df["worker"].nunique() * df["task"].nunique() > 3e6:  # keep the dense reference small
        df = df[df["task"].isin(df["task"].unique()[:2000])]
    ref = krippendorff.alpha(reliability_data=_reliability(df), level_of_measurement=level)
    ours = C.krippendorff_alpha(df, level=level)
    assert ours == pytest.approx(ref, abs=1e-9)


@needs_data
@pytest.mark.parametrize("dataset", DATASETS)
def test_fleiss_matches_statsmodels(dataset: str) -> None:
    df, _ = load(dataset)
    n = df.groupby("task")["label"].transform("size")
    sub = df[n == n.mode().iloc[0]]  # statsmodels needs a constant number of raters per task
    table, _ = inter_rater.aggregate_raters(
        sub.pivot_table(index="task", columns=sub.groupby("task").cumcount(), values="label")
        .to_numpy()
        .astype(int)
    )
    ref = inter_rater.fleiss_kappa(table, method="fleiss")
    assert C.fleiss_kappa(sub) == pytest.approx(ref, abs=1e-12)


def test_percent_agreement_and_cohen_matrix_on_a_hand_computed_example() -> None:
    df = pd.DataFrame(
        {
            "task": [1, 1, 1, 2, 2, 2, 3, 3],
            "worker": ["a", "b", "c", "a", "b", "c", "a", "b"],
            "label": ["x", "x", "y", "y", "y", "y", "x", "y"],
        }
    )
    # pairs: task1 1/3 agree, task2 all, task3 none
    assert C.percent_agreement(df) == pytest.approx((1 / 3 + 1 + 0) / 3)
    m = C.cohen_kappa_matrix(df)
    assert m.shape == (3, 3)
    assert np.allclose(np.diag(m), 1.0)
    assert np.allclose(m.to_numpy(), m.to_numpy().T, equal_nan=True)


def test_cohen_matrix_matches_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    rows = []
    for t in range(300):
        for w in rng.choice(6, size=3, replace=False):
            rows.append((t, f"w{w}", int(rng.integers(0, 3)) if w > 2 else t % 3))
    df = pd.DataFrame(rows, columns=["task", "worker", "label"])
    mat = C.cohen_kappa_matrix(df)
    wide = df.pivot(index="task", columns="worker", values="label")
    for u in wide.columns:
        for v in wide.columns:
            if u == v:
                continue
            both = wide[[u, v]].dropna()
            ref = metrics.cohen_kappa_score(both[u], both[v])
            assert mat.loc[u, v] == pytest.approx(ref, abs=1e-12)
    assert C.cohen_kappa([0, 1, 1, 0], [0, 1, 0, 0]) == pytest.approx(
        metrics.cohen_kappa_score([0, 1, 1, 0], [0, 1, 0, 0])
    )
