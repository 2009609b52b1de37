"""Multi-label aggregation (consensus/multilabel.py) and set agreement (consensus/agreement.py):
hand-worked examples, crowd-kit parity of BinaryRelevance(MV), recovery on synthetic crowds."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from benchmarks.types_multilabel import jaccard_rows, synthetic_crowd
from cynaps_data.consensus.agreement import krippendorff_alpha_sets, set_agreement
from cynaps_data.consensus.multilabel import (
    BinaryRelevance,
    MultiLabelModel,
    aggregate_multilabel,
    encode_label_sets,
    share_consensus,
)
from cynaps_data.errors import ValidationError


def frame(rows):
    return pd.DataFrame(rows, columns=["task", "worker", "labels"])


# t1: a by 3 of 4, b by 2 of 4 (a tie), c by 1; t2: nothing by 2 of 3, b by 1
SMALL = frame(
    [
        ("t1", "u", ["a", "b"]), ("t1", "v", ["a"]), ("t1", "w", ["a", "b", "c"]), ("t1", "x", []),
        ("t2", "u", []), ("t2", "v", ["b"]), ("t2", "w", []),
    ]
)  # fmt: skip


def test_encode_and_errors():
    enc = encode_label_sets(SMALL)
    assert list(enc.label_names) == ["a", "b", "c"]
    assert enc.Y.tolist()[0] == [True, True, False] and enc.Y.tolist()[3] == [False] * 3
    with pytest.raises(ValidationError, match=r"outside the declared label set.*\['z'\].*index 1"):
        encode_label_sets(frame([("t", "u", ["a"]), ("t", "v", ["z"])]), labels=["a", "b"])
    with pytest.raises(ValidationError, match="list-likes.*index 0"):
        encode_label_sets(frame([("t", "u", "a|b")]))
    with pytest.raises(ValidationError, match="missing required column"):
        encode_label_sets(SMALL.rename(columns={"labels": "label"}))


def test_share_consensus_by_hand():
    res = share_consensus(SMALL, threshold=0.5)
    assert res.shares.loc["t1"].tolist() == [0.75, 0.5, 0.25]
    assert res.labels["t1"] == ["a", "b"] and res.labels["t2"] == []
    strict = share_consensus(SMALL, threshold=0.5, strict=True)
    assert strict.labels["t1"] == ["a"]
    assert res.n.tolist() == [4, 3]


def test_binary_relevance_mv_by_hand_and_tie_is_absent():
    m = BinaryRelevance("mv").fit(SMALL)
    assert m.labels_["t1"] == ["a"] and m.labels_["t2"] == []
    assert m.probas_.loc["t1", "b"] == 0.5 and not m.multi_hot_.loc["t1", "b"]
    assert m.multi_hot_.dtypes.unique().tolist() == [np.dtype(bool)]
    for method in ("ds", "ebcc", "auto"):
        fit = aggregate_multilabel(SMALL, method)
        assert fit.probas_.shape == (2, 3), method
        assert ((fit.probas_ >= 0) & (fit.probas_ <= 1)).all().all(), method
        assert fit.labels_["t1"][:1] == ["a"], method  # 3 of 4 votes for a


def test_results_survive_parquet(tmp_path):
    m = MultiLabelModel().fit(SMALL)
    out = m.probas_.add_prefix("p_").assign(labels=m.labels_)
    out.index = out.index.astype(str)
    out.to_parquet(tmp_path / "x.parquet")
    back = pd.read_parquet(tmp_path / "x.parquet")
    assert [list(v) for v in back["labels"]] == m.labels_.tolist()
    assert np.allclose(back.filter(like="p_").to_numpy(), m.probas_.to_numpy())


def test_binary_relevance_mv_equals_crowdkit():
    ck = pytest.importorskip("crowdkit.aggregation")
    df, _ = synthetic_crowd(n_items=100, n_labels=5, per_item=5, n_workers=20, seed=1)
    ours = BinaryRelevance("mv").fit_predict(df)
    theirs = ck.BinaryRelevance(ck.MajorityVote()).fit_predict(
        df.rename(columns={"labels": "label"})
    )
    for t in ours.index:
        got = theirs.get(t)
        got = sorted(got) if isinstance(got, (list, tuple)) else []
        assert sorted(ours[t]) == got, t


def test_multilabel_model_beats_binary_relevance_on_synthetic_crowds():
    for seed in (0, 1):
        df, truth = synthetic_crowd(n_items=400, n_labels=6, per_item=5, n_workers=30, seed=seed)
        z = truth.to_numpy()
        ours = MultiLabelModel(labels=list(truth.columns)).fit(df)
        mv = BinaryRelevance("mv", labels=list(truth.columns)).fit(df)
        a = ours.multi_hot_.sort_index().to_numpy()
        b = mv.multi_hot_.sort_index().to_numpy()
        assert (a == z).all(1).mean() > (b == z).all(1).mean() + 0.02
        assert jaccard_rows(a, z).mean() > jaccard_rows(b, z).mean()
    co = ours.cooccurrence_
    assert co.shape == (6, 6) and np.allclose(co, co.T)
    assert ours.sensitivity_.shape == (30, 6)


def test_set_agreement_by_hand():
    df = frame([("t", "u", ["a"]), ("t", "v", ["a", "b"]), ("t", "w", []), ("s", "u", ["a"])])
    out = set_agreement(df)
    # pairs: {a}-{a,b}: J 1/2, MASI 1/2 * 2/3; {a}-{}: 0; {a,b}-{}: 0
    assert out.loc["t", "jaccard"] == pytest.approx(1 / 6)
    assert out.loc["t", "masi"] == pytest.approx(1 / 9)
    assert np.isnan(out.loc["s", "jaccard"]) and out.loc["s", "n"] == 1
    same = set_agreement(frame([("t", "u", []), ("t", "v", [])]), labels=["a"])
    assert same.loc["t", "jaccard"] == 1.0 and same.loc["t", "masi"] == 1.0


def masi_distance(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 0.0
    inter, union = len(a & b), len(a | b)
    m = 1 if a == b else 2 / 3 if inter == min(len(a), len(b)) else 1 / 3 if inter else 0
    return 1 - inter / union * m


def alpha_by_pairs(df: pd.DataFrame) -> float:
    """Krippendorff's alpha by explicit pair loops (independent of the vectorised code)."""
    units = [[frozenset(x) for x in g["labels"]] for _, g in df.groupby("task") if len(g) >= 2]
    values = [v for u in units for v in u]
    n = len(values)
    d_o = (
        sum(
            sum(masi_distance(a, b) for a, b in itertools.permutations(u, 2)) / (len(u) - 1)
            for u in units
        )
        / n
    )
    d_e = sum(masi_distance(a, b) for a, b in itertools.permutations(values, 2)) / (n * (n - 1))
    return 1 - d_o / d_e


def test_alpha_masi_matches_pair_loops_and_nltk():
    df, _ = synthetic_crowd(n_items=30, n_labels=4, per_item=4, n_workers=10, seed=2)
    ours = krippendorff_alpha_sets(df, "masi")
    assert ours == pytest.approx(alpha_by_pairs(df), abs=1e-12)
    nltk_agreement = pytest.importorskip("nltk.metrics.agreement")
    from nltk.metrics.distance import masi_distance as nltk_masi

    data = [(w, t, frozenset(x)) for t, w, x in df.itertuples(index=False) if x]
    sub = pd.DataFrame(data, columns=["worker", "task", "labels"])  # nltk cannot take empty sets
    task = nltk_agreement.AnnotationTask(data=data, distance=nltk_masi)
    assert krippendorff_alpha_sets(sub, "masi") == pytest.approx(task.alpha(), abs=1e-12)
