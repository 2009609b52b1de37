"""Pairwise aggregation (issue 16): Bradley–Terry and the annotator model.

Hand-worked small cases, the input errors (disconnected graph, bad labels), ties, recovery of
known scores on synthetic comparisons and agreement with crowd-kit's BradleyTerry."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from cynaps_data.consensus.pairwise import (
    PAIRWISE_METHODS,
    AnnotatorBradleyTerry,
    BradleyTerry,
    aggregate_pairwise,
    get_pairwise_model,
)
from cynaps_data.errors import ValidationError

TINY = 1e-9  # a prior this weak leaves the maximum-likelihood answer


def frame(rows: list[tuple], worker: str | None = "w") -> pd.DataFrame:
    """rows: (left, right, label) or (worker, left, right, label)."""
    if rows and len(rows[0]) == 3:
        rows = [(worker, *r) for r in rows]
    return pd.DataFrame(rows, columns=["worker", "left", "right", "label"])


def synthetic(
    n_items: int,
    n_workers: int,
    n_rows: int,
    seed: int,
    *,
    bias: float = 0.0,
    spammers: float = 0.0,
) -> tuple[pd.DataFrame, pd.Series]:
    """Comparisons of random pairs with true scores N(0, 1); each worker compares with
    P(left wins) = sigmoid(s_l - s_r + bias_w); a ``spammers`` share answers at random."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n_items)
    left = rng.integers(0, n_items, n_rows)
    right = (left + rng.integers(1, n_items, n_rows)) % n_items
    w = rng.integers(0, n_workers, n_rows)
    wb = np.full(n_workers, bias)
    skill = np.where(rng.random(n_workers) < spammers, 0.0, 1.0)
    p = 1 / (1 + np.exp(-(skill[w] * (s[left] - s[right]) + wb[w])))
    won = rng.random(n_rows) < p
    df = pd.DataFrame(
        {
            "worker": [f"w{k}" for k in w],
            "left": [f"i{k}" for k in left],
            "right": [f"i{k}" for k in right],
        }
    )
    df["label"] = np.where(won, df["left"], df["right"])
    return df, pd.Series(s, index=[f"i{k}" for k in range(n_items)])


# ---- hand-worked cases ---------------------------------------------------------------------
def test_two_items_maximum_likelihood_is_log_odds() -> None:
    # a beats b 3 times out of 4: sigma(s_a - s_b) = 3/4, so s_a - s_b = log 3
    df = frame([("a", "b", "a")] * 2 + [("b", "a", "a"), ("a", "b", "b")])
    m = BradleyTerry(prior=TINY).fit(df)
    assert m.scores_["a"] - m.scores_["b"] == pytest.approx(math.log(3), abs=1e-6)
    assert m.scores_.sum() == pytest.approx(0.0, abs=1e-9)
    f = m.scores_frame_
    assert list(f.columns) == ["score", "se", "ci_low", "ci_high", "rank", "n_comparisons"]
    assert f.loc["a", "rank"] == 1 and f.loc["b", "rank"] == 2
    assert f["n_comparisons"].tolist() == [4, 4]
    # Fisher information of d = s_a - s_b is n p (1 - p) = 4 * 3/16 = 3/4; each centred score
    # is d/2, so its standard error is sqrt(4/3)/2
    assert f.loc["a", "se"] == pytest.approx(math.sqrt(4 / 3) / 2, rel=1e-4)
    z = 1.959963984540054
    assert f.loc["a", "ci_high"] - f.loc["a", "score"] == pytest.approx(z * f.loc["a", "se"])
    assert m.scores_.dtype == np.float64 and f["rank"].dtype == np.int64


def test_prior_shrinks_and_keeps_an_unbeaten_item_finite() -> None:
    df = frame([("a", "b", "a")] * 5 + [("b", "c", "b"), ("c", "b", "b"), ("c", "b", "c")])
    m = BradleyTerry().fit(df)  # a never loses: without a prior its score is infinite
    assert np.isfinite(m.scores_).all()
    assert m.scores_.idxmax() == "a"
    assert m.scores_["b"] > m.scores_["c"]
    # closed form of the penalised two-item problem: w - n sigma(d) = lambda d / 2
    two = frame([("a", "b", "a")] * 3 + [("a", "b", "b")])
    lam = 0.5
    d = BradleyTerry(prior=lam).fit(two).scores_.diff().iloc[-1] * -1
    assert 3 - 4 / (1 + math.exp(-d)) == pytest.approx(lam * d / 2, abs=1e-8)


def test_three_items_cycle_is_all_equal() -> None:
    df = frame([("a", "b", "a"), ("b", "c", "b"), ("c", "a", "c")])
    s = BradleyTerry(prior=TINY).fit_predict(df)
    np.testing.assert_allclose(s.to_numpy(), 0.0, atol=1e-9)
    assert (BradleyTerry().fit(df).scores_frame_["rank"] == 1).all()


def test_ties_count_half_a_win_each() -> None:
    # a vs b: one win for a and two ties (one null, one "tie") = 2 of 3 -> log 2
    df = frame([("a", "b", "a"), ("a", "b", None), ("b", "a", "tie")])
    s = BradleyTerry(prior=TINY).fit_predict(df)
    assert s["a"] - s["b"] == pytest.approx(math.log(2), abs=1e-6)
    # NaN label and a float item column
    df2 = pd.DataFrame({"left": [1.0, 2.0], "right": [2.0, 1.0], "label": [np.nan, 1.0]})
    s2 = BradleyTerry(prior=TINY).fit_predict(df2)
    assert s2[1.0] - s2[2.0] == pytest.approx(math.log(3), abs=1e-6)


def test_item_named_tie_is_an_item_not_a_tie() -> None:
    df = frame([("tie", "x", "tie"), ("tie", "x", "tie"), ("x", "tie", "x")])
    s = BradleyTerry(prior=TINY).fit_predict(df)
    assert s["tie"] - s["x"] == pytest.approx(math.log(2), abs=1e-6)


def test_tuple_and_int_item_ids() -> None:
    df = frame([((1, "a"), (2, "b"), (1, "a")), ((2, "b"), (1, "a"), (1, "a"))])
    s = BradleyTerry().fit_predict(df)
    assert s.idxmax() == (1, "a")
    ints = frame([(1, 2, 1), (2, 3, 2)])
    assert list(BradleyTerry().fit_predict(ints).sort_values().index) == [3, 2, 1]


# ---- errors --------------------------------------------------------------------------------
def test_disconnected_graph_names_components_and_items() -> None:
    df = frame([("a", "b", "a"), ("b", "c", "c"), ("x", "y", "x"), ("p", "q", "q")])
    with pytest.raises(ValidationError) as err:
        BradleyTerry().fit(df)
    msg = str(err.value)
    assert "disconnected" in msg and "3 components" in msg
    assert "'a'" in msg and "'x'" in msg and "'p'" in msg and "3 item(s)" in msg


@pytest.mark.parametrize(
    ("df", "needle", "param"),
    [
        (pd.DataFrame({"left": ["a"], "right": ["b"]}), "missing column(s) ['label']", "label"),
        (frame([("a", "b", "a"), ("a", "a", "a")]), "left == right", "right"),
        (frame([("a", "b", "a"), ("a", "b", "c")]), "label 'c'", "label"),
        (frame([("a", None, "a")]), "null item ids", "right"),
        (frame([]), "no rows", "frame"),
    ],
)
def test_bad_input_names_the_problem(df: pd.DataFrame, needle: str, param: str) -> None:
    with pytest.raises(ValidationError) as err:
        BradleyTerry().fit(df)
    assert needle in str(err.value)
    assert err.value.param == param


def test_bad_row_is_named_by_index() -> None:
    df = frame([("a", "b", "a"), ("a", "b", "zzz")])
    df.index = ["r1", "r2"]
    with pytest.raises(ValidationError, match="'r2'"):
        BradleyTerry().fit(df)


def test_bad_params_and_methods() -> None:
    with pytest.raises(ValidationError, match="prior"):
        BradleyTerry(prior=-1).fit(frame([("a", "b", "a")]))
    with pytest.raises(ValidationError, match="unknown pairwise method"):
        get_pairwise_model("nope")
    with pytest.raises(ValidationError, match="unknown parameter 'bogus'"):
        get_pairwise_model("bt", bogus=1)
    assert isinstance(get_pairwise_model("Bradley-Terry"), BradleyTerry)
    assert "auto" in PAIRWISE_METHODS


# ---- recovery and agreement ----------------------------------------------------------------
def test_recovers_known_scores_on_sparse_graph() -> None:
    df, truth = synthetic(200, 20, 2000, seed=1)  # 10 comparisons per item
    out = aggregate_pairwise(df, "bt")
    rho = spearmanr(out["score"], truth.reindex(out.index)).statistic
    assert rho > 0.8
    # the 95% intervals cover the centred truth about 95% of the time
    centred = truth.reindex(out.index) - truth.mean()
    cover = ((out["ci_low"] <= centred) & (centred <= out["ci_high"])).mean()
    assert 0.85 < cover <= 1.0


def test_agrees_with_crowdkit_bradley_terry() -> None:
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    df, _ = synthetic(15, 5, 600, seed=3)
    ours = BradleyTerry(prior=TINY).fit_predict(df)
    # crowd-kit 1.4.2 compares p_new with itself (p_old aliases it), so any tol > 0 stops
    # after two MM steps; tol=0 ("loss < 0" never holds) runs all n_iter steps
    theirs = crowdkit.BradleyTerry(n_iter=3000, tol=0.0).fit_predict(df)
    log_theirs = np.log(theirs.reindex(ours.index).to_numpy())
    np.testing.assert_allclose(ours.to_numpy(), log_theirs - log_theirs.mean(), atol=2e-3)


# ---- annotator model -------------------------------------------------------------------------
def test_annotator_model_down_weights_careless_and_estimates_position_bias() -> None:
    df, truth = synthetic(80, 30, 4000, seed=5, bias=0.8, spammers=0.3)
    m = AnnotatorBradleyTerry().fit(df)
    assert m.scores_frame_.index.equals(m.scores_.index)
    rho_ours = spearmanr(m.scores_, truth.reindex(m.scores_.index)).statistic
    rho_bt = spearmanr(BradleyTerry().fit_predict(df), truth.reindex(m.scores_.index)).statistic
    assert rho_ours > rho_bt
    assert m.position_bias_ > 0.4  # every annotator prefers the left item (true bias 0.8)
    # careless annotators (skill 0 in the simulation) get lower skills than the others
    rng = np.random.default_rng(5)
    rng.normal(size=80), rng.integers(0, 80, 4000), rng.integers(1, 80, 4000)
    rng.integers(0, 30, 4000)
    careless = rng.random(30) < 0.3
    skills = m.skills_.reindex([f"w{k}" for k in range(30)]).to_numpy()
    assert np.nanmean(skills[careless]) < np.nanmean(skills[~careless]) - 0.3
    wf = m.workers_frame_
    assert list(wf.columns) == ["skill", "bias", "p_left", "n_comparisons"]
    assert wf["n_comparisons"].sum() == len(df)
    np.testing.assert_allclose(wf["p_left"], 1 / (1 + np.exp(-wf["bias"])))


def test_annotator_model_winner_first_layout_turns_position_off() -> None:
    df, truth = synthetic(40, 10, 1500, seed=2)
    winner_first = df.assign(
        left=df["label"], right=np.where(df["label"] == df["left"], df["right"], df["left"])
    )
    m = AnnotatorBradleyTerry().fit(winner_first)
    assert m.position_bias_ == 0.0 and (m.biases_ == 0.0).all()
    # without position terms the model ignores which side an item was on
    again = AnnotatorBradleyTerry(position_bias=False).fit(df)
    np.testing.assert_allclose(m.scores_, again.scores_.reindex(m.scores_.index), atol=1e-5)
    assert spearmanr(m.scores_, truth.reindex(m.scores_.index)).statistic > 0.8


def test_annotator_model_needs_worker_and_valid_params() -> None:
    with pytest.raises(ValidationError, match="missing column"):
        AnnotatorBradleyTerry().fit(pd.DataFrame({"left": ["a"], "right": ["b"], "label": ["a"]}))
    with pytest.raises(ValidationError, match="skill_prior"):
        AnnotatorBradleyTerry(skill_prior=0).fit(frame([("a", "b", "a")]))
    with pytest.raises(ValidationError, match="position_bias"):
        AnnotatorBradleyTerry(position_bias="yes").fit(frame([("a", "b", "a")]))
    assert isinstance(get_pairwise_model("auto"), AnnotatorBradleyTerry)
    out = aggregate_pairwise(frame([("a", "b", "a"), ("b", "c", "b"), ("c", "a", "a")]))
    assert out["rank"].tolist() == [1, 2, 3]
