"""Rating aggregation (consensus/rating.py): hand-worked examples, the rater model's recovery on
synthetic raters, the platform decision helper, and Krippendorff parity on the real data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cynaps_data.consensus.rating import (
    RaterModel,
    RatingMean,
    RatingMedian,
    aggregate_ratings,
    rating_alpha,
    rating_consensus,
)
from cynaps_data.errors import ValidationError

SNOW = Path("/work/shared/data/rating/snow2008_affect_wordsim/ratings.csv")


def frame(rows):
    return pd.DataFrame(rows, columns=["task", "worker", "value"])


SMALL = frame(
    [
        ("a", "u", 1), ("a", "v", 2), ("a", "w", 5),
        ("b", "u", 4), ("b", "v", 4), ("b", "w", 4), ("b", "x", 3),
        ("c", "u", 2),
    ]
)  # fmt: skip


def test_mean_and_median_by_hand():
    assert RatingMean().fit_predict(SMALL).to_dict() == pytest.approx(
        {"a": 8 / 3, "b": 15 / 4, "c": 2.0}
    )
    # b has an even count: the mean of the two middle ratings (4, 4) -> 4; a: middle of 1,2,5
    assert RatingMedian().fit_predict(SMALL).to_dict() == {"a": 2.0, "b": 4.0, "c": 2.0}
    assert aggregate_ratings(SMALL, "median").scores_.name == "score"


def test_rating_consensus_by_hand():
    out = rating_consensus(SMALL, tolerance=2, scale=(1, 5))
    a, b, c = out.loc["a"], out.loc["b"], out.loc["c"]
    assert a["score"] == 2.0 and a["range"] == 4.0 and bool(a["disputed"])
    assert a["spread"] == pytest.approx((1 + 0 + 3) / 3)
    assert a["agreement"] == pytest.approx(1 - (4 / 3) / 2)  # half the 1..5 scale is 2
    assert b["score"] == 4.0 and b["range"] == 1.0 and not bool(b["disputed"])
    assert b["spread"] == pytest.approx(0.25) and b["mean"] == pytest.approx(3.75)
    assert c["n"] == 1 and not bool(c["disputed"]) and c["agreement"] == 1.0
    even = rating_consensus(frame([("t", "u", 2), ("t", "v", 3)]), tolerance=1)
    assert even.loc["t", "score"] == 2.5 and even.loc["t", "rounded"] == 3
    assert out["disputed"].dtype == bool and out["rounded"].dtype == np.int64


def test_bad_ratings_are_named():
    with pytest.raises(ValidationError, match="within the scale 1..5, first at index 1"):
        rating_consensus(frame([("t", "u", 2), ("t", "v", 6)]), tolerance=1, scale=(1, 5))
    with pytest.raises(ValidationError, match="'value'"):
        RatingMean().fit(frame([("t", "u", 2), ("t", "v", None)]))
    with pytest.raises(ValidationError, match="must be numeric"):
        RatingMean().fit(frame([("t", "u", 2), ("t", "v", "high")]))
    with pytest.raises(ValidationError, match="missing required column"):
        RaterModel().fit(SMALL.rename(columns={"value": "rating"}))
    with pytest.raises(ValidationError, match="tolerance"):
        rating_consensus(SMALL, tolerance=-1)
    with pytest.raises(ValidationError, match="unknown rating method"):
        aggregate_ratings(SMALL, "mode")


def raters(seed: int, n_items: int = 300, n_raters: int = 40, per_item: int = 5):
    """Raters with their own bias and spread on the scale, Gaussian noise; incomplete design."""
    rng = np.random.default_rng(seed)
    z = rng.normal(50, 15, n_items)
    bias = rng.normal(0, 10, n_raters)
    spread = rng.uniform(0.5, 1.6, n_raters)
    task = np.repeat(np.arange(n_items), per_item)
    worker = np.concatenate([rng.choice(n_raters, per_item, replace=False) for _ in range(n_items)])
    y = 20 + bias[worker] + spread[worker] * (z[task] - 20) + rng.normal(0, 6, task.size)
    return pd.DataFrame({"task": task, "worker": worker, "value": y}), pd.Series(z)


def test_rater_model_recovers_bias_and_spread():
    gains = []
    for seed in range(3):
        df, z = raters(seed)
        ours = RaterModel(bias_prior=5, scale_prior=5).fit(df)
        mean = RatingMean().fit_predict(df)
        r_ours = np.corrcoef(ours.scores_.sort_index(), z)[0, 1]
        r_mean = np.corrcoef(mean.sort_index(), z)[0, 1]
        gains.append(r_ours - r_mean)
        w = ours.workers_
        assert list(w.columns) == ["bias", "scale", "noise_sd", "weight", "n_ratings"]
        rng = np.random.default_rng(seed)
        rng.normal(50, 15, 300)
        true_bias = rng.normal(0, 10, 40)
        assert np.corrcoef(w.sort_index()["bias"], true_bias)[0, 1] > 0.6
    assert min(gains) > 0.005, gains


def test_rater_model_intervals_cover_at_their_level():
    df, z = raters(7, per_item=6)
    m = RaterModel(level=0.9, scale_prior=math.inf, bias_prior=5).fit(df)
    # the model's scores live on the raters' common scale: map z onto it by least squares
    s = m.scores_.sort_index().to_numpy()
    a, b = np.polyfit(z, s, 1)
    iv = m.intervals_.sort_index()
    inside = (iv["lower"].to_numpy() <= a * z + b) & (a * z + b <= iv["upper"].to_numpy())
    assert 0.8 <= inside.mean() <= 0.98
    assert (m.sd_ > 0).all() and (iv["lower"] < m.scores_.sort_index()).all()


def test_rater_model_without_corrections_is_the_shrunk_mean():
    df, _ = raters(1)
    m = RaterModel(scale_prior=math.inf, bias_prior=math.inf).fit(df)
    mean = RatingMean().fit_predict(df)
    # equal counts per task: the posterior mean is an affine map of the raters' mean
    assert np.corrcoef(m.scores_, mean)[0, 1] == pytest.approx(1.0, abs=1e-12)
    assert (m.workers_["weight"] == 1.0).all()


def test_reliability_weights_find_the_noisy_rater():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 1, 200)
    rows = []
    for w, noise in (("good1", 0.2), ("good2", 0.2), ("noisy", 2.0)):
        for t in range(200):
            rows.append((t, w, z[t] + rng.normal(0, noise)))
    m = RaterModel(reliability_prior=5).fit(frame(rows))
    wt = m.workers_["weight"]
    assert wt["noisy"] < 0.1 * wt["good1"]


@pytest.mark.skipif(not SNOW.exists(), reason="Snow et al. 2008 data not on this machine")
def test_krippendorff_parity_on_snow2008():
    krippendorff = pytest.importorskip("krippendorff")
    r = pd.read_csv(SNOW)
    for dim in ("anger", "wordsim"):
        part = r[r["dimension"] == dim].rename(columns={"rating": "value"})
        mat = part.pivot_table(index="worker", columns="task", values="value", aggfunc="first")
        for level in ("interval", "ordinal"):
            ref = krippendorff.alpha(
                mat.to_numpy(),
                level_of_measurement=level,
                value_domain=np.sort(part["value"].unique()) if level == "ordinal" else None,
            )
            assert rating_alpha(part, level) == pytest.approx(ref, abs=1e-9)


def test_alpha_by_hand():
    # two raters agree perfectly on 3 items: alpha = 1; interval alpha of a known case
    perfect = frame([(t, w, v) for t, v in ((0, 1), (1, 3), (2, 5)) for w in ("u", "v")])
    assert rating_alpha(perfect, "interval") == pytest.approx(1.0)
    # units (1, 2) and (3, 4): D_o = 2*(1)/... worked out: o pairs within units differ by 1,
    # expected over all 4 values: mean squared difference of distinct pairs = 20/6
    df = frame([(0, "u", 1), (0, "v", 2), (1, "u", 3), (1, "v", 4)])
    d_o = (2 * 1 + 2 * 1) / 4
    d_e = (2 * (1 + 4 + 9 + 1 + 4 + 1)) / (4 * 3)
    assert rating_alpha(df, "interval") == pytest.approx(1 - d_o / d_e)
