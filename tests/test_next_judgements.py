"""next_judgements: the offline adaptive-overlap policy (stopping rule + expected gain)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cynaps_data.consensus import DawidSkene, expected_gain, next_judgements
from cynaps_data.errors import ValidationError


class Crowd:
    """Simulated crowd: binary tasks, workers of known accuracy, answers drawn on demand."""

    def __init__(self, n_tasks: int = 300, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.truth = pd.Series(self.rng.integers(0, 2, n_tasks), name="label")
        self.skill = np.r_[np.full(6, 0.9), np.full(6, 0.65)]
        self.seen: dict[int, set[int]] = {t: set() for t in range(n_tasks)}

    def ask(self, tasks) -> pd.DataFrame:
        rows = []
        for t in tasks:
            w = self.rng.choice([w for w in range(self.skill.size) if w not in self.seen[t]])
            self.seen[t].add(w)
            ok = self.rng.random() < self.skill[w]
            rows.append((t, f"w{w}", self.truth[t] if ok else 1 - self.truth[t]))
        return pd.DataFrame(rows, columns=["task", "worker", "label"])


def test_columns_order_and_stop_reasons():
    df = pd.DataFrame(
        {
            "task": ["a"] * 4 + ["b"] * 2 + ["c"] * 4 + ["d"] * 3,
            "worker": ["w1", "w2", "w3", "w4", "w1", "w2", "w1", "w2", "w3", "w4"]
            + ["w1", "w2", "w3"],
            "label": ["x"] * 4 + ["x", "y"] + ["x", "y", "x", "y"] + ["y"] * 3,
        }
    )
    plan = next_judgements(df, target_confidence=0.95, max_judgements=4)
    assert list(plan.columns) == [
        "label",
        "confidence",
        "n_judgements",
        "expected_gain",
        "need_more",
        "stop_reason",
    ]
    assert plan.index.name == "task"
    assert plan["n_judgements"].dtype == np.int64 and plan["need_more"].dtype == bool
    assert plan.loc["a", "stop_reason"] == "confident" and not plan.loc["a", "need_more"]
    assert plan.loc["b", "need_more"] and plan.loc["b", "stop_reason"] == ""
    assert plan.loc["b", "expected_gain"] > 0
    assert plan.loc["c", "stop_reason"] == "max_judgements"
    # tasks that need more come first, by decreasing gain
    need = plan["need_more"].to_numpy()
    assert not (need[1:] & ~need[:-1]).any()
    gains = plan.loc[plan["need_more"], "expected_gain"].to_numpy()
    assert (np.diff(gains) <= 1e-12).all()


def test_min_judgements_and_unjudged_tasks():
    df = pd.DataFrame({"task": [1, 1, 2, 2], "worker": ["u", "v", "u", "v"], "label": [0, 0, 1, 1]})
    plan = next_judgements(df, target_confidence=0.5, min_judgements=3, tasks=[1, 2, 3])
    assert plan["need_more"].all()
    assert plan.loc[3, "n_judgements"] == 0 and np.isnan(plan.loc[3, "confidence"])
    relaxed = next_judgements(df, target_confidence=0.5, min_judgements=1, tasks=[1, 2, 3])
    assert relaxed.loc[[1, 2], "stop_reason"].tolist() == ["confident", "confident"]


def test_expected_gain_is_value_of_one_answer():
    q = np.array([[1.0, 0.0], [0.5, 0.5], [0.8, 0.2]])
    perfect = np.eye(2)
    h = -(q * np.log2(np.where(q > 0, q, 1.0))).sum(axis=1)  # a perfect answer: all entropy
    np.testing.assert_allclose(expected_gain(q, perfect), h)
    coin = np.full((2, 2), 0.5)
    np.testing.assert_allclose(expected_gain(q, coin), 0.0)
    g = expected_gain(q, np.array([[0.8, 0.3], [0.2, 0.7]]))
    assert g[0] == 0.0 and g[1] > g[2] >= 0.0


def test_bad_input_names_the_field():
    df = pd.DataFrame({"task": [1], "worker": ["u"], "label": [0]})
    with pytest.raises(ValidationError) as e:
        next_judgements(df.drop(columns="worker"))
    assert e.value.param == "worker"
    with pytest.raises(ValidationError) as e:
        next_judgements(df, target_confidence=1.5)
    assert e.value.param == "target_confidence"
    with pytest.raises(ValidationError):
        next_judgements(df, min_judgements=3, max_judgements=2)


def test_loop_beats_fixed_overlap_on_a_simulated_crowd():
    """Driving collection with next_judgements (2 answers each, then more where the posterior
    is below 0.9) beats fixed overlap 3 by 3+ points of accuracy for about the same number of
    answers (measured: 860 vs 900 answers, 0.947 vs 0.900; seed 1: 987, 0.960 vs 0.900)."""
    crowd = Crowd()
    tasks = list(range(len(crowd.truth)))
    fixed = pd.concat([crowd.ask(tasks) for _ in range(3)])
    acc_fixed = (DawidSkene().fit_predict(fixed).sort_index() == crowd.truth).mean()

    crowd = Crowd()
    got = pd.concat([crowd.ask(tasks) for _ in range(2)])
    for _ in range(6):
        plan = next_judgements(got, target_confidence=0.9, max_judgements=7)
        want = plan.index[plan["need_more"]]
        if want.empty:
            break
        got = pd.concat([got, crowd.ask(want)])
    final = next_judgements(got, target_confidence=0.9, max_judgements=7)
    acc = (final["label"].sort_index() == crowd.truth).mean()
    assert len(got) <= 1.05 * len(fixed)
    assert acc >= acc_fixed + 0.03


def test_documented_loop_from_one_answer_in_budgeted_rounds():
    """The loop of docs/consensus.md (one answer per task, a random 30% two; rounds of 10% of
    the tasks, most valuable first, target 0.85) spends fewer answers than fixed overlap 3 and
    is more accurate (measured, seeds 0-4: 706-823 answers vs 900, +2.7 to +6.0 points)."""
    crowd = Crowd(seed=0)
    tasks = list(range(len(crowd.truth)))
    fixed = pd.concat([crowd.ask(tasks) for _ in range(3)])
    acc_fixed = (DawidSkene().fit_predict(fixed).sort_index() == crowd.truth).mean()

    crowd = Crowd(seed=0)
    rng = np.random.default_rng(0)
    got = pd.concat([crowd.ask(tasks), crowd.ask([t for t in tasks if rng.random() < 0.3])])
    per_round = len(tasks) // 10
    for _ in range(100):
        plan = next_judgements(got, target_confidence=0.85, max_judgements=10, budget=per_round)
        todo = plan.index[plan["need_more"]]
        assert len(todo) <= per_round
        if todo.empty:
            break
        got = pd.concat([got, crowd.ask(todo)])
    else:
        raise AssertionError("the loop did not stop")
    acc = (DawidSkene().fit_predict(got).sort_index() == crowd.truth).mean()
    assert len(got) <= 0.95 * len(fixed)
    assert acc >= acc_fixed + 0.02


def test_small_start_does_not_collapse_the_class_prior():
    """Three tasks, all leaning "x": without a prior on the class shares Dawid-Skene drove
    P(y) to 1e-10 and called the 1-1 task "confident" at 1.000 (seen before the fix)."""
    df = pd.DataFrame(
        {
            "task": ["a"] * 4 + ["b"] * 2 + ["c"] * 4,
            "worker": ["w1", "w2", "w3", "w4", "w1", "w2", "w1", "w2", "w3", "w4"],
            "label": ["x"] * 4 + ["x", "y"] + ["x", "y", "x", "y"],
        }
    )
    plan = next_judgements(df, gold=pd.Series({"a": "x"}))
    assert plan.loc["a", "stop_reason"] == "confident"
    assert plan.loc[["b", "c"], "need_more"].all()
    assert (plan.loc[["b", "c"], "confidence"] < 0.9).all()


def test_budget_goes_to_the_most_valuable_judgements():
    """With a budget only the top tasks by value of information keep need_more: tasks below
    min_judgements first, then by decreasing expected gain; the rest stop on "budget"."""
    crowd = Crowd(n_tasks=60, seed=3)
    tasks = list(range(60))
    got = pd.concat([crowd.ask(tasks) for _ in range(2)])
    got = got[~((got["task"] >= 50) & got.duplicated("task"))]  # tasks 50-59: 1 judgement
    free = next_judgements(got, target_confidence=0.99, min_judgements=2, max_judgements=7)
    wanted = free.index[free["need_more"]]
    assert len(wanted) > 15
    plan = next_judgements(
        got, target_confidence=0.99, min_judgements=2, max_judgements=7, budget=15
    )
    chosen = plan.index[plan["need_more"]]
    assert len(chosen) == 15 and set(chosen) <= set(wanted)
    assert set(range(50, 60)) <= set(chosen)  # below min_judgements: always first
    rest = [t for t in chosen if t < 50]
    left = plan.loc[[t for t in wanted if t not in set(chosen)]]
    assert (left["stop_reason"] == "budget").all() and not left["need_more"].any()
    assert plan.loc[rest, "expected_gain"].min() >= left["expected_gain"].max() - 1e-12
    assert not next_judgements(got, budget=0)["need_more"].any()
    with pytest.raises(ValidationError) as e:
        next_judgements(got, budget=-1)
    assert e.value.param == "budget"
