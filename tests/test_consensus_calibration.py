"""Calibrated confidence of the default method: gold-free, monotone (argmax kept), lower ECE."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consensus_data import CROWD_DIR, load  # noqa: E402

from cynaps_data.consensus import ConsensusEnsemble, expected_calibration_error  # noqa: E402
from cynaps_data.consensus.calibration import (  # noqa: E402
    design_effect_temper,
    resampled_confidence,
    temper_to,
)
from cynaps_data.errors import ValidationError  # noqa: E402


def hard_crowd(n_tasks: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Binary crowd, 3 answers per task; a third of the tasks are hard (every worker is close to
    a coin flip there), which an independent-worker model cannot see: it is over-confident."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_tasks)
    skill = rng.uniform(0.7, 0.95, 40)
    hard = rng.random(n_tasks) < 0.35
    task = np.repeat(np.arange(n_tasks), 3)
    worker = np.concatenate([rng.choice(40, 3, replace=False) for _ in range(n_tasks)])
    p_ok = np.where(hard[task], 0.55, skill[worker])
    label = np.where(rng.random(task.size) < p_ok, truth[task], 1 - truth[task])
    df = pd.DataFrame({"task": task, "worker": worker, "label": label})
    return df, pd.Series(truth, index=pd.RangeIndex(n_tasks, name="task"))


def test_temper_to_keeps_order_and_hits_target():
    rng = np.random.default_rng(1)
    q = rng.dirichlet(np.ones(4) * 0.3, size=200)
    target = 0.25 + 0.75 * rng.random(200) * (q.max(axis=1) - 0.25)
    out = temper_to(q, target)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_array_equal(out.argsort(axis=1)[:, -1], q.argmax(axis=1))
    np.testing.assert_allclose(out.max(axis=1), np.maximum(target, 0.25), atol=1e-6)
    # a target above the current top probability leaves the row exactly as it was
    same = temper_to(q, np.ones(200))
    np.testing.assert_array_equal(same, q)


def test_design_effect_temper_is_kish_scaling_of_the_log_posterior():
    rng = np.random.default_rng(2)
    q = rng.dirichlet(np.ones(3), size=50)
    q[0] = [1.0, 0.0, 0.0]  # a gold row stays one-hot
    out = design_effect_temper(q, n_mean=11.0, rho=0.1)  # beta = 1 / (1 + 10 * 0.1) = 0.5
    expect = np.sqrt(q) / np.sqrt(q).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out, expect, rtol=1e-12)
    np.testing.assert_array_equal(out[0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(out.argmax(axis=1), q.argmax(axis=1))
    np.testing.assert_array_equal(design_effect_temper(q, 11.0, 0.0), q)  # independent answers
    np.testing.assert_array_equal(design_effect_temper(q, 1.0, 0.3), q)  # one answer: no effect
    with pytest.raises(ValidationError) as e:
        design_effect_temper(q, 5.0, -0.1)
    assert e.value.param == "rho"
    with pytest.raises(ValidationError) as e:
        ConsensusEnsemble(answer_correlation=1.5).fit(hard_crowd(50)[0])
    assert e.value.param == "answer_correlation"


def test_resampled_confidence_lowers_ece_on_a_hard_synthetic_crowd():
    df, truth = hard_crowd()
    raw = ConsensusEnsemble(calibration="none").fit(df)
    cal = ConsensusEnsemble().fit(df)
    pd.testing.assert_series_equal(cal.labels_, raw.labels_)
    e_raw = expected_calibration_error(raw.probas_, truth, 15)
    e_cal = expected_calibration_error(cal.probas_, truth, 15)
    assert e_raw > 0.08  # the independent-worker model is over-confident here
    assert e_cal < 0.6 * e_raw
    assert (cal.probas_.max(axis=1) <= raw.probas_.max(axis=1) + 1e-12).all()


def test_resampled_confidence_is_seeded_and_needs_no_gold():
    df, _ = hard_crowd(300)
    q = ConsensusEnsemble(calibration="none").fit(df).probas_.to_numpy()
    t, w, y = (pd.factorize(df[c])[0] for c in ("task", "worker", "label"))
    a = resampled_confidence(t, w, y, q, int(w.max()) + 1, random_state=3)
    b = resampled_confidence(t, w, y, q, int(w.max()) + 1, random_state=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a.argmax(axis=1), q.argmax(axis=1))


def test_gold_rows_stay_one_hot():
    df, truth = hard_crowd(300)
    gold = truth.iloc[:20]
    model = ConsensusEnsemble().fit(df, gold=gold)
    assert (model.probas_.loc[gold.index].max(axis=1) == 1.0).all()


@pytest.mark.skipif(not CROWD_DIR.is_dir(), reason=f"crowd datasets not found at {CROWD_DIR}")
def test_calibration_on_real_crowds():
    """rte and zencrowd_in: raw ECE (15 bins) 0.061 / 0.131, calibrated 0.037-0.044 /
    0.018-0.025 over seeds 0-2 (vote bootstrap + design effect); the bound leaves room for seed
    noise, the accuracy must not move at all."""
    eces, raws = [], []
    for name in ("rte", "zencrowd_in"):
        df, gold = load(name)
        cal = ConsensusEnsemble().fit(df)
        raw = cal.uncalibrated_probas_
        assert (cal.probas_.to_numpy().argmax(1) == raw.to_numpy().argmax(1)).all()
        eces.append(expected_calibration_error(cal.probas_, gold, 15))
        raws.append(expected_calibration_error(raw, gold, 15))
    assert np.mean(eces) <= 0.045
    assert np.mean(eces) < 0.5 * np.mean(raws)


def test_reliability_diagram_draws_one_curve_per_posterior():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from cynaps_data import plots

    df, truth = hard_crowd(300)
    raw = ConsensusEnsemble(calibration="none").fit(df).probas_
    cal = ConsensusEnsemble().fit(df).probas_
    ax = plots.reliability_diagram({"raw": raw, "calibrated": cal}, truth)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "perfect" and labels[1].startswith("raw (ECE ")
    assert len(ax.lines) == 3
