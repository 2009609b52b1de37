"""Attacks on the offline classification consensus API with the frames data scientists pass
(odd parameter values, odd id and label types, one annotator, gold with other id types,
declared-but-unused classes): each test pins a bug that was found."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

import cynaps_data.consensus as C
from cynaps_data.consensus.calibration import reliability_table
from cynaps_data.errors import ValidationError


def crowd(n_tasks: int = 40, n_workers: int = 5, per_task: int = 3, labels=("a", "b"), seed=0):
    rng = np.random.default_rng(seed)
    rows = [
        (t, f"w{w}", labels[int(rng.integers(0, len(labels)))])
        for t in range(n_tasks)
        for w in rng.choice(n_workers, per_task, replace=False)
    ]
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


FIT_METHODS = ["ds", "one_coin", "glad", "mace", "ebcc", "auto"]


@pytest.mark.parametrize("method", ["ds", "one_coin", "glad", "mace", "ebcc"])
@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", None])
def test_bad_n_iter_is_a_validation_error(method, bad) -> None:
    # was: EBCC n_iter=0 -> UnboundLocalError; "3"/None/1.5 -> bare TypeError everywhere;
    # n_iter=-1 silently returned the initialisation
    with pytest.raises(ValidationError) as ei:
        C.aggregate(crowd(), method, n_iter=bad)
    assert ei.value.param == "n_iter"


@pytest.mark.parametrize("method", ["ds", "glad", "mace", "ebcc"])
@pytest.mark.parametrize("bad", ["1e-5", None])
def test_bad_tol_is_a_validation_error(method, bad) -> None:
    with pytest.raises(ValidationError) as ei:
        C.aggregate(crowd(), method, tol=bad)
    assert ei.value.param == "tol"


@pytest.mark.parametrize("bad", [1.5, "3", None])
def test_bad_restart_counts_are_validation_errors(bad) -> None:
    with pytest.raises(ValidationError) as ei:
        C.aggregate(crowd(), "mace", n_restarts=bad)
    assert ei.value.param == "n_restarts"
    with pytest.raises(ValidationError) as ei:
        C.aggregate(crowd(), "auto", ebcc_restarts=bad)
    assert ei.value.param == "ebcc_restarts"


@pytest.mark.parametrize("method", FIT_METHODS)
@pytest.mark.parametrize("bad", ["seed", -1, 1.5])
def test_bad_random_state_is_a_validation_error(method, bad) -> None:
    # was: TypeError from SeedSequence / ValueError "expected non-negative integer"
    with pytest.raises(ValidationError) as ei:
        C.aggregate(crowd(), method, random_state=bad)
    assert ei.value.param == "random_state"


def test_random_state_generator_and_legacy_random_state_are_accepted() -> None:
    df = crowd(labels=("a", "b", "c"))
    a = C.aggregate(df, "auto", random_state=np.random.default_rng(3)).probas
    b = C.aggregate(df, "auto", random_state=np.random.default_rng(3)).probas
    pd.testing.assert_frame_equal(a, b)
    C.aggregate(df, "mace", random_state=np.random.RandomState(0))


def test_next_judgements_with_a_single_annotator_falls_back_to_the_plurality() -> None:
    # the first batch of a job often comes from one annotator; the documented fallback
    # (plurality vote, gain NaN) raised "only 1 distinct worker(s)" instead
    df = pd.DataFrame({"task": [1, 2, 2], "worker": ["u"] * 3, "label": ["x", "x", "y"]})
    plan = C.next_judgements(df, tasks=[1, 2, 3], target_confidence=0.9)
    assert plan.loc[1, "label"] == "x" and plan.loc[1, "confidence"] == 1.0
    assert plan.loc[1, "stop_reason"] == "confident"
    assert plan.loc[2, "need_more"] and plan.loc[3, "need_more"]
    assert plan["n_judgements"].to_dict() == {1: 1, 2: 2, 3: 0}


@pytest.mark.parametrize(
    "labels", [(0, 1, 2), (0.0, 1.0, 2.0), (False, True), ("a", "b", "c")], ids=repr
)
def test_task_metadata_survives_parquet_feather_and_datasets(labels) -> None:
    # vote_distribution dicts keyed by numpy ints / floats / bools cannot be written by Arrow
    # ("Expected dict key of type str or bytes, got 'numpy.int64'")
    import datasets

    meta = C.task_metadata(crowd(labels=labels))
    buf = io.BytesIO()
    meta.to_parquet(buf)
    back = pd.read_parquet(io.BytesIO(buf.getvalue()))
    assert back["label"].tolist() == meta["label"].tolist()
    meta.reset_index().to_feather(io.BytesIO())
    ds = datasets.Dataset.from_pandas(meta)
    assert len(ds) == len(meta)
    row = meta.iloc[0]
    assert sum(row["vote_distribution"].values()) == pytest.approx(1.0)
    assert all(isinstance(key, str) for key in row["vote_distribution"])
    assert set(row["vote_distribution"]) <= {str(v) for v in labels}


def test_ece_rejects_gold_labels_that_are_not_probas_columns() -> None:
    # gold read back from CSV as strings against int columns: every task silently "wrong"
    probas = pd.DataFrame({0: [0.9, 0.2, 0.6], 1: [0.1, 0.8, 0.4]}, index=["a", "b", "c"])
    gold = pd.Series([0, 1, 1], index=probas.index)
    good = C.expected_calibration_error(probas, gold)
    assert C.expected_calibration_error(probas, gold.astype(float)) == pytest.approx(good)
    for bad in (gold.astype(str), pd.Series([5, 5, 5], index=gold.index)):
        with pytest.raises(ValidationError) as ei:
            C.expected_calibration_error(probas, bad)
        assert ei.value.param == "gold"
    # a gold class the model never saw is a miss, not an error
    tab = reliability_table(probas, pd.Series([0, 1, 2], index=gold.index), n_bins=1)
    assert tab.loc[0, "accuracy"] == pytest.approx(2 / 3)


def test_ece_rejects_nan_posteriors_and_bad_bins() -> None:
    probas = pd.DataFrame({0: [0.9, np.nan, 0.6], 1: [0.1, np.nan, 0.4]}, index=["a", "b", "c"])
    gold = pd.Series([0, 1, 1], index=probas.index)
    with pytest.raises(ValidationError) as ei:
        reliability_table(probas, gold)
    assert ei.value.param == "probas" and "'b'" in str(ei.value)
    for bad in (2.5, "10", 0):
        with pytest.raises(ValidationError) as ei:
            reliability_table(probas.fillna(0.5), gold, n_bins=bad)
        assert ei.value.param == "n_bins"


@pytest.mark.parametrize("method", ["mv", "ds", "auto"])
def test_gold_indexed_by_ids_of_another_type_is_not_silently_ignored(method) -> None:
    # answers have int task ids, gold was read from a CSV/JSON with str ids: no gold task
    # matched and the fit ran without gold
    df = crowd()
    gold = pd.Series(["b", "b"], index=["0", "1"])
    with pytest.raises(ValidationError) as ei:
        C.aggregate(df, method, gold=gold)
    assert ei.value.param == "gold" and "type" in str(ei.value)
    # gold for tasks that are simply not in this batch is still ignored
    res = C.aggregate(df, method, gold=pd.Series(["b", "b"], index=[0, 999]))
    assert res.labels.loc[0] == "b"


def test_declared_but_unvoted_classes_get_no_calibrated_mass() -> None:
    # labels= lists the project's whole class set; this batch only used two of them. The
    # gold-free calibration of "auto" tempered every row over all declared classes and gave
    # classes nobody voted for up to 64% of the mass
    df = crowd(labels=("a", "b"))
    declared = ["a", "b", "c"] + [f"x{i}" for i in range(20)]
    model = C.ConsensusEnsemble(labels=declared).fit(df)
    unused = model.probas_.drop(columns=["a", "b"]).sum(axis=1)
    raw_unused = model.uncalibrated_probas_.drop(columns=["a", "b"]).sum(axis=1)
    assert (unused <= raw_unused + 1e-9).all()
    assert unused.max() < 0.01
    assert np.allclose(model.probas_.sum(axis=1), 1.0)
    top = model.probas_[["a", "b"]].max(axis=1)
    assert (model.labels_ == model.probas_.idxmax(axis=1)).all()
    assert (top <= model.uncalibrated_probas_[["a", "b"]].max(axis=1) + 1e-9).all()


def test_next_judgements_tasks_of_another_id_type_are_not_listed_as_unjudged() -> None:
    # answers have str task ids (read from CSV), tasks= lists ints: the judged tasks came
    # back twice, once as unjudged ("need_more") rows
    df = crowd().astype({"task": str})
    with pytest.raises(ValidationError) as ei:
        C.next_judgements(df, tasks=[0, 1, 2])
    assert ei.value.param == "tasks"
    plan = C.next_judgements(df, tasks=["0", "1", "new"])
    assert plan.loc["new", "n_judgements"] == 0 and len(plan) == df["task"].nunique() + 1


@pytest.mark.parametrize("method", ["ds", "mace"])
def test_next_judgements_calibration_ignores_declared_but_unvoted_classes(method) -> None:
    # calibrate=True tempered binary posteriors over 42 declared classes: confidence 0.17
    df = crowd(labels=("a", "b"))
    declared = ["a", "b"] + [f"x{i}" for i in range(40)]
    plan = C.next_judgements(df, method=method, calibrate=True, labels=declared)
    assert plan["confidence"].min() >= 0.5 - 1e-3


def test_labels_argument_shapes() -> None:
    df = crowd(labels=("a", "b"))
    # a set has no order (str hashes vary per process): sorted, so the class order and the
    # "first declared class wins ties" rule are reproducible
    assert C.aggregate(df, "mv", labels={"b", "a"}).probas.columns.tolist() == ["a", "b"]
    for bad in ("ab", ["a", "b", None], ["a", "b", np.nan]):
        with pytest.raises(ValidationError) as ei:
            C.aggregate(df, "mv", labels=bad)
        assert ei.value.param == "labels"


def test_task_metadata_rejects_labels_that_only_differ_by_type() -> None:
    df = pd.DataFrame({"task": [1, 1, 2], "worker": ["u", "v", "u"], "label": [1, "1", 1]})
    with pytest.raises(ValidationError) as ei:
        C.task_metadata(df)
    assert ei.value.param == "label"


@pytest.mark.parametrize("method", ["mv", "ds", "auto"])
def test_labels_that_only_differ_by_type_are_rejected(method) -> None:
    # half the answers read from CSV ("1"), half from code (1): silently two classes,
    # splitting the votes of one
    df = crowd(labels=(0, 1))
    df["label"] = df["label"].astype(object)
    df.loc[df.index % 2 == 0, "label"] = df.loc[df.index % 2 == 0, "label"].astype(str)
    with pytest.raises(ValidationError) as ei:
        C.aggregate(df, method)
    assert ei.value.param == "label" and "(str)" in str(ei.value)
    C.aggregate(df.assign(label=df["label"].astype(int)), method)  # one type: fine
    mixed = df.assign(label=df["label"].replace({"0": "zero", "1": "one"}))
    assert C.aggregate(mixed, "mv").probas.shape[1] == 4  # genuinely different classes


def test_conflicting_gold_for_one_task_is_rejected() -> None:
    # was: the first of two contradicting gold labels silently won
    df = crowd()
    with pytest.raises(ValidationError) as ei:
        C.aggregate(df, "ds", gold=pd.Series(["a", "b"], index=[0, 0]))
    assert ei.value.param == "gold" and "0" in str(ei.value)
    res = C.aggregate(df, "ds", gold=pd.Series(["b", "b"], index=[0, 0]))  # repeats: fine
    assert res.labels.loc[0] == "b"
