"""API contract of cynaps_data.consensus: validation, determinism, label preservation, metadata."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cynaps_data.consensus as C
from cynaps_data.errors import ValidationError

ALL = [
    C.MajorityVote,
    C.DawidSkene,
    C.OneCoinDawidSkene,
    C.GLAD,
    lambda: C.MACE(n_restarts=2),
    C.EBCC,
    C.ConsensusEnsemble,
]


def synthetic(n_tasks=300, n_workers=12, k=3, per_task=5, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_tasks)
    acc = rng.uniform(0.55, 0.95, n_workers)
    rows = []
    for t in range(n_tasks):
        for w in rng.choice(n_workers, per_task, replace=False):
            y = truth[t] if rng.random() < acc[w] else rng.integers(0, k)
            rows.append((f"t{t}", f"w{w}", y))
    df = pd.DataFrame(rows, columns=["task", "worker", "label"])
    names = labels or list(range(k))
    df["label"] = [names[i] for i in df["label"]]
    gold = pd.Series([names[i] for i in truth], index=[f"t{t}" for t in range(n_tasks)])
    return df, gold


@pytest.mark.parametrize("make", ALL)
def test_every_aggregator_fits_deterministically_with_sklearn_style_outputs(make) -> None:
    df, gold = synthetic(labels=["cat", "dog", "eel"])
    model = make()
    assert model.fit(df) is model
    assert model.labels_.name == "label" and model.labels_.index.name == "task"
    assert set(model.labels_.unique()) <= {"cat", "dog", "eel"}
    assert list(model.probas_.columns) == ["cat", "dog", "eel"]
    assert np.allclose(model.probas_.sum(axis=1), 1.0)
    assert len(model.labels_) == df["task"].nunique()
    assert model.skills_.index.name == "worker"
    assert isinstance(model.loss_history_, list) and isinstance(model.n_iter_, int)
    assert (model.labels_ == gold.loc[model.labels_.index]).mean() > 0.85
    pd.testing.assert_series_equal(make().fit_predict(df), model.labels_)  # deterministic
    pd.testing.assert_frame_equal(make().fit_predict_proba(df), model.probas_)


def test_aggregate_takes_every_method_alias_and_rejects_unknown_ones() -> None:
    df, _ = synthetic()
    for m in ["auto", "mv", "ds", "one_coin", "glad", "mace", "ebcc", "DawidSkene"]:
        res = C.aggregate(df, method=m)
        labels, probas = res
        assert labels.index.equals(probas.index)
    with pytest.raises(ValidationError):
        C.aggregate(df, method="nope")


def test_declared_labels_order_and_rejection() -> None:
    df, _ = synthetic(k=2)
    probas = C.DawidSkene(labels=[1, 0, 7]).fit_predict_proba(df)
    assert list(probas.columns) == [1, 0, 7]
    with pytest.raises(ValidationError) as ei:
        C.MajorityVote(labels=[0]).fit(df)
    assert ei.value.param == "label"


@pytest.mark.parametrize(
    "bad, param",
    [
        (pd.DataFrame({"task": [1], "worker": ["a"]}), "label"),
        (pd.DataFrame({"task": [], "worker": [], "label": []}), "data"),
        (pd.DataFrame({"task": [1, 1], "worker": ["a", "b"], "label": [1, np.nan]}), "label"),
        (pd.DataFrame({"task": [1, 2], "worker": ["a", "a"], "label": [1, 0]}), "worker"),
    ],
)
def test_bad_input_is_rejected_naming_the_param_by_every_aggregator(bad, param) -> None:
    for make in (C.MajorityVote, C.DawidSkene, C.ConsensusEnsemble):
        with pytest.raises(ValidationError) as ei:
            make().fit(bad)
        assert ei.value.param == param
    with pytest.raises(ValidationError):
        C.aggregate([1, 2, 3])


def test_majority_vote_ties_seeded_and_weights() -> None:
    df = pd.DataFrame(
        {
            "task": [f"t{i // 2}" for i in range(400)],
            "worker": ["a", "b"] * 200,
            "label": [0, 1] * 200,
        }
    )
    a = C.MajorityVote(tie_break="random", random_state=1).fit_predict(df)
    b = C.MajorityVote(tie_break="random", random_state=1).fit_predict(df)
    pd.testing.assert_series_equal(a, b)
    assert 0.3 < (a == 0).mean() < 0.7  # uniform tie-breaking
    assert (C.MajorityVote(tie_break="first").fit_predict(df) == 0).all()
    assert (C.MajorityVote().fit_predict(df) == 0).all()  # default: first declared class
    assert (C.MajorityVote(labels=[1, 0]).fit_predict(df) == 1).all()
    assert (C.MajorityVote(weights={"b": 2.0}).fit_predict(df) == 1).all()


def test_gold_fixes_posteriors_for_all_models() -> None:
    df, gold = synthetic()
    g = gold.iloc[:50]
    for make in ALL:
        model = make().fit(df, gold=g)
        assert (model.labels_.loc[g.index] == g).all()


def test_no_dense_task_worker_matrix_large_ids() -> None:
    # 200k tasks x 50k workers would be 10^10 cells if dense; this must stay cheap.
    rng = np.random.default_rng(0)
    n = 600_000
    df = pd.DataFrame(
        {
            "task": rng.integers(0, 200_000, n),
            "worker": rng.integers(0, 50_000, n),
            "label": rng.integers(0, 3, n),
        }
    )
    model = C.DawidSkene(n_iter=3).fit(df)
    assert len(model.labels_) == df["task"].nunique()


def test_task_metadata_and_annotator_table() -> None:
    df, gold = synthetic(labels=["a", "b", "c"])
    meta = C.task_metadata(df)
    assert meta.index.name == "task"
    assert list(meta.columns) == [
        "label",
        "agreement",
        "n_annotations",
        "vote_distribution",
        "entropy",
        "confidence",
    ]
    assert meta["n_annotations"].dtype.kind == "i" and (meta["n_annotations"] == 5).all()
    row = meta.iloc[0]
    assert sum(row["vote_distribution"].values()) == pytest.approx(1.0)
    assert row["agreement"] == pytest.approx(max(row["vote_distribution"].values()))
    meta_ds = C.task_metadata(df, method="ds")
    assert meta_ds["confidence"].between(0, 1).all()

    tab = C.annotator_table(df, gold=gold.iloc[:100])
    assert tab.index.name == "worker"
    assert list(tab.columns) == [
        "n_judgements",
        "agreement_with_consensus",
        "gold_accuracy",
        "n_gold",
        "skill",
    ]
    assert tab["n_judgements"].sum() == len(df)
    assert tab["n_gold"].sum() == df["task"].isin(gold.index[:100]).sum()
    assert tab["gold_accuracy"].between(0, 1).all()
    no_gold = C.annotator_table(df, consensus=meta["label"])
    assert no_gold["gold_accuracy"].isna().all()


def test_single_worker_metadata_is_allowed_but_models_reject() -> None:
    df = pd.DataFrame({"task": [1, 2], "worker": ["a", "a"], "label": ["x", "y"]})
    meta = C.task_metadata(df)
    assert (meta["agreement"] == 1.0).all()
    with pytest.raises(ValidationError):
        C.fleiss_kappa(df)


def test_array_functions_aggregate_codes_and_reject_float_labels() -> None:
    from cynaps_data.consensus.dawid_skene import dawid_skene_arrays
    from cynaps_data.consensus.majority_vote import majority_vote_arrays

    t = np.array([0, 0, 0, 1, 1, 1])
    w = np.array([0, 1, 2, 0, 1, 2])
    y = np.array([1, 1, 0, 0, 0, 1])
    assert majority_vote_arrays(t, w, y).labels.tolist() == [1, 0]
    res = dawid_skene_arrays(t, w, y, n_iter=5)
    assert res.probas.shape == (2, 2) and res.errors.shape == (3, 2, 2)
    with pytest.raises(ValidationError):
        majority_vote_arrays(t, w, y.astype(float))


@pytest.mark.parametrize(
    "cls",
    [
        C.MajorityVote,
        C.DawidSkene,
        C.OneCoinDawidSkene,
        C.GLAD,
        C.MACE,
        C.EBCC,
        C.ConsensusEnsemble,
    ],
)
def test_estimator_defaults_match_array_function(cls) -> None:
    """Each estimator passes its parameters to its array-level function, and both are public:
    the same parameter must have the same default in both, and estimators stay sklearn-style
    (params round-trip, identity equality, hashable)."""
    import inspect

    fn = inspect.signature(cls._arrays).parameters
    params = cls().get_params()
    shared = [p for p in params if p in fn]
    assert len(shared) >= 2, shared  # at least random_state plus a model parameter
    for p in shared:
        assert params[p] == fn[p].default, p
    m = cls(**params)
    assert m.get_params() == params and m is not cls() and m != cls(**params)
    assert hash(m) != hash(cls(**params)) and repr(m) == repr(cls(**params))


def _synthetic_crowd(n_tasks: int, k: int = 4, n_workers: int = 200, seed: int = 1):
    """Three answers per task from workers of accuracy in [0.5, 0.95] (errors uniform)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_tasks)
    acc = rng.uniform(0.5, 0.95, n_workers)
    t = np.repeat(np.arange(n_tasks), 3)
    w = rng.integers(0, n_workers, t.size)
    right = rng.random(t.size) < acc[w]
    y = np.where(right, truth[t], (truth[t] + rng.integers(1, k, t.size)) % k)
    return pd.DataFrame({"task": t, "worker": w, "label": y}), truth


def test_dawid_skene_threads_give_bit_identical_results() -> None:
    # 150k tasks: three shards of the EM iterations (65,536 tasks each), with gold on a few
    # tasks so the gold path runs sharded too
    df, truth = _synthetic_crowd(150_000)
    gold = pd.Series(truth[:500], index=np.arange(500))
    fits = [
        C.DawidSkene(n_iter=15, tol=-np.inf, n_jobs=n).fit(df, gold=g)
        for g in (None, gold)
        for n in (1, 2, -1, None)
    ]
    for group in (fits[:4], fits[4:]):
        for other in group[1:]:
            np.testing.assert_array_equal(other.probas_.to_numpy(), group[0].probas_.to_numpy())
            assert other.loss_history_ == group[0].loss_history_
    assert (fits[0].labels_.to_numpy() == truth).mean() > 0.85
    assert (fits[4].labels_.loc[gold.index] == gold).all()


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_dawid_skene_rejects_bad_n_jobs(bad) -> None:
    df, _ = _synthetic_crowd(100)
    with pytest.raises(ValidationError, match="n_jobs") as err:
        C.DawidSkene(n_jobs=bad).fit(df)
    assert err.value.param == "n_jobs"
