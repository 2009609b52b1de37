"""The cross-fitted text tagger that BayesianSequenceCombination adds as one more annotator
(cynaps_data.consensus.spans_tagger): its features, its soft-label logistic regression, the
cross-fitting that keeps a token's own consensus out of its tag, and its effect on a crowd."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cynaps_data.consensus.bio import strict_f1
from cynaps_data.consensus.spans_seq import BayesianSequenceCombination, encode_sequences
from cynaps_data.consensus.spans_tagger import (
    TAGGER_NAME,
    TextTagger,
    case_profile,
    fit_soft_softmax,
    softmax_probas,
    token_features,
    word_shape,
)
from cynaps_data.errors import ValidationError


def test_word_shape_collapses_runs_of_a_character_class():
    assert word_shape("McDonald's") == "XxXx'x"
    assert word_shape("1996") == "d"
    assert word_shape("U.S.") == "X.X."
    assert word_shape("") == ""


def test_token_features_keep_values_seen_twice_and_stop_at_sentence_edges():
    words = ["Paris", "is", "big", "Paris", "is"]
    first = np.array([True, False, False, True, False])
    last = np.array([False, False, True, False, True])
    x = token_features(words, first, last, min_count=2).toarray()
    assert x.shape[0] == 5
    # the two "Paris" tokens (both sentence starts before "is") have identical features
    np.testing.assert_array_equal(x[0], x[3])
    # "big" shares fewer features with the second "is" than the two "is" share
    assert (x[1] * x[4]).sum() > (x[2] * x[4]).sum()
    # min_count=1 keeps every value: "big" gets its own word feature
    assert token_features(words, first, last, min_count=1).shape[1] > x.shape[1]


def test_case_profile_counts_capitals_only_where_case_means_something():
    # sentences: "The cat saw Paris ." / "SOCCER - JAPAN WIN ." (all capitals) /
    # "Japan is in Paris and the win was big"
    words = "The cat saw Paris . SOCCER - JAPAN WIN . Japan is in Paris and the win was big"
    words = words.split()
    first = np.zeros(len(words), dtype=bool)
    first[[0, 5, 10]] = True
    got = dict(zip(range(len(words)), case_profile(words, first), strict=True))
    # "the": its only informative occurrence is lower-case ("The" starts a sentence)
    assert got[0] == got[15] == "<0.1"
    # "Paris": capitalised both times it occurs mid-sentence
    assert got[3] == got[13] == ">=0.9"
    # "win" in the headline gets the profile of "win" in a cased sentence
    assert got[8] == "<0.1"
    # "Japan"/"JAPAN": only seen sentence-initially or in the headline, so nothing is known
    assert got[7] == got[10] == "unseen"
    # punctuation has no letter
    assert got[4] == got[6] == "unseen"
    # half capitalised: one bin between
    assert (
        case_profile(["x", "a", "Apple", "y", "apple"], np.array([1, 0, 0, 1, 0], bool))[2]
        == "<0.9"
    )
    assert case_profile([], np.array([], bool)) == []


def test_soft_softmax_gradient_and_fit():
    rng = np.random.default_rng(0)
    import scipy.sparse as sp

    x = sp.csr_matrix((rng.random((30, 6)) < 0.4).astype(float))
    targets = rng.dirichlet(np.ones(3), 30)
    # the fitted parameters are a stationary point: a small step anywhere raises the loss
    theta = fit_soft_softmax(x, targets, c=1.0, steps=500)

    def loss(t: np.ndarray) -> float:
        p = softmax_probas(t, x, 3)
        w = t[: 6 * 3]
        return -float((targets * np.log(p)).sum()) + 0.5 * float((w * w).sum())

    base = loss(theta)
    for i in range(theta.size):
        for h in (1e-3, -1e-3):
            step = theta.copy()
            step[i] += h
            assert loss(step) >= base - 1e-9
    # separable hard targets are learned
    y = np.eye(3)[np.arange(30) % 3]
    xs = sp.csr_matrix(np.eye(3)[np.arange(30) % 3])
    p = softmax_probas(fit_soft_softmax(xs, y, c=10.0), xs, 3)
    assert (p.argmax(axis=1) == np.arange(30) % 3).all()


def _crowd(n: int = 240, seed: int = 0, miss: float = 0.35) -> tuple[pd.DataFrame, dict]:
    """One worker per sentence "<name> visited <City> today" (the city a fresh name each time,
    so no word repeats): workers tag the city B-LOC but miss it with probability ``miss``."""
    rng = np.random.default_rng(seed)
    rows, gold = [], {}
    for s in range(n):
        words = [f"Person{s}", "visited", f"Zork{s}ville", "today"]
        tags = ["O", "O", "B-LOC", "O"]
        gold[f"s{s}"] = list(tags)
        said = list(tags)
        if rng.random() < miss:
            said[2] = "O"
        for i, (w, t) in enumerate(zip(words, said, strict=True)):
            rows.append((f"s{s}", f"w{s % 7}", i, t, w))
    return pd.DataFrame(rows, columns=["task", "worker", "position", "tag", "token"]), gold


def _as_lists(tags: pd.DataFrame) -> dict:
    return {t: list(x) for t, x in tags.groupby("task", sort=False)["tag"]}


def test_tagger_recovers_entities_the_only_worker_missed():
    frame, gold = _crowd()
    without = BayesianSequenceCombination(tagger_rounds=0).fit(frame)
    with_tagger = BayesianSequenceCombination().fit(frame)
    f_without = strict_f1(gold, _as_lists(without.tags_))["f1"]
    f_with = strict_f1(gold, _as_lists(with_tagger.tags_))["f1"]
    assert f_with > f_without + 0.1, (f_without, f_with)
    # the tagger is reported apart, never as one of the user's workers
    assert TAGGER_NAME not in with_tagger.skills_.index
    assert TAGGER_NAME not in with_tagger.confusions_.index.get_level_values("worker")
    assert 0.5 < with_tagger.tagger_skill_ <= 1.0
    assert not hasattr(without, "tagger_skill_")
    # no token column: no tagger, same result as tagger_rounds=0
    plain = frame.drop(columns="token")
    pd.testing.assert_frame_equal(
        BayesianSequenceCombination().fit(plain).tags_,
        BayesianSequenceCombination(tagger_rounds=0).fit(plain).tags_,
    )


def test_a_worker_named_like_the_tagger_keeps_its_row():
    frame, _ = _crowd(60)
    frame.loc[frame["worker"] == "w0", "worker"] = TAGGER_NAME
    model = BayesianSequenceCombination().fit(frame)
    assert TAGGER_NAME in model.skills_.index
    assert len(model.skills_) == frame["worker"].nunique()


def test_cross_fitting_keeps_a_tokens_own_consensus_out_of_its_tag():
    """Changing the marginals of one fold's tokens changes nothing in that fold's tags."""
    frame, _ = _crowd(80)
    data = encode_sequences(frame)
    k, n = data.k, data.layout.n_tokens
    rng = np.random.default_rng(1)
    gamma = rng.dirichlet(np.ones(k), n)
    a = TextTagger(data, random_state=3)
    fold_of_row = np.empty(n, dtype=np.int64)
    fold_of_row[a.reading] = a.fold
    other = gamma.copy()
    own = fold_of_row == 0
    other[own] = rng.dirichlet(np.ones(k), int(own.sum()))
    tags_a = a.tags(gamma)
    tags_b = TextTagger(data, random_state=3).tags(other)
    np.testing.assert_array_equal(tags_a[own], tags_b[own])


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_tagger_rounds_is_a_clear_error(bad):
    with pytest.raises(ValidationError, match="tagger_rounds"):
        BayesianSequenceCombination(tagger_rounds=bad)


def test_alpha_diag_defaults_to_5_with_the_words_and_3_without():
    frame, _ = _crowd(60, miss=0.5)
    plain = frame.drop(columns="token")
    for data, diag in ((frame, 5.0), (plain, 3.0)):
        default = BayesianSequenceCombination(tagger_rounds=0).fit(data)
        explicit = BayesianSequenceCombination(tagger_rounds=0, alpha_diag=diag).fit(data)
        np.testing.assert_allclose(default.probas_, explicit.probas_)
        other = BayesianSequenceCombination(tagger_rounds=0, alpha_diag=8.0 - diag).fit(data)
        assert not np.allclose(default.probas_, other.probas_)


def test_a_token_column_of_nulls_is_no_text():
    """Every token text unknown (None): the same result as without the column (was a crash in
    the word model: an empty weighted bincount is int64)."""
    frame, _ = _crowd(40)
    nulls = frame.assign(token=None)
    pd.testing.assert_frame_equal(
        BayesianSequenceCombination().fit(nulls).tags_,
        BayesianSequenceCombination().fit(frame.drop(columns="token")).tags_,
    )
    # one sentence: the tagger has nothing to learn from, and says so by echoing nothing new
    one = frame[frame["task"] == "s0"]
    assert BayesianSequenceCombination().fit(one).tags_["tag"].tolist() == (
        BayesianSequenceCombination(tagger_rounds=0).fit(one).tags_["tag"].tolist()
    )
