"""Free-text consensus (cynaps_data.consensus.text): edit distance, normalisation, the per-task
decision helper, ROVER / medoid aggregation, order independence, bad input and a real-data check
(CrowdSpeech dev-clean subset, skipped when the shared data is absent)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cynaps_data.consensus.text import (
    TextMedoid,
    TextNormalizer,
    TextROVER,
    edit_similarity,
    pairwise_similarity,
    rover_words,
    text_agreement,
    text_alpha,
    text_consensus,
    word_edit_distance,
    word_error_rate,
)
from cynaps_data.errors import ValidationError

_CANDIDATES = [
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "freetext" / "crowdspeech",
    Path("/work/shared/data/freetext/crowdspeech"),
]
SPEECH = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])


def plain_dp(a, b) -> int:
    d = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(b) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
            prev, d[j] = d[j], cur
    return d[-1]


def frame(answers: dict) -> pd.DataFrame:
    rows = [(t, f"w{i}", x) for t, xs in answers.items() for i, x in enumerate(xs)]
    return pd.DataFrame(rows, columns=["task", "worker", "text"])


# ---- distance and normalisation -----------------------------------------------------------------


def test_edit_distance_matches_plain_dp_on_random_sequences():
    rng = random.Random(0)
    vocab = ["a", "b", "c", "d", "the", "of"]
    for _ in range(600):
        # lengths up to 150 words: bit vectors wider than 64 bits
        la, lb = rng.choice([0, 1, 2, 5, 20, 70, 150]), rng.randint(0, 80)
        a = [rng.choice(vocab) for _ in range(la)]
        b = [rng.choice(vocab) for _ in range(lb)]
        assert word_edit_distance(a, b) == plain_dp(a, b), (a, b)
        assert word_edit_distance(b, a) == plain_dp(a, b)


def test_normalizer_modes_and_similarity():
    assert TextNormalizer()("Don't  STOP-now,\nplease!") == ("don't", "stop", "now", "please")
    assert TextNormalizer(punctuation="remove")("air-tight vessels.") == ("airtight", "vessels")
    assert TextNormalizer(punctuation="keep", lowercase=False)("A b.") == ("A", "b.")
    assert TextNormalizer(keep="")("don't") == ("don", "t")
    assert TextNormalizer()(None) == () and TextNormalizer()(float("nan")) == ()
    with pytest.raises(ValidationError, match="punctuation"):
        TextNormalizer(punctuation="drop")
    assert edit_similarity("The cat sat.", "the cat  sat") == 1.0
    assert edit_similarity("a b c d", "a x c d") == 0.75
    assert edit_similarity("", None) == 1.0 and edit_similarity("a", "") == 0.0
    s = pairwise_similarity(["a b", "a b", "c d"])
    assert s.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


# ---- the platform's per-task helper -------------------------------------------------------------


def test_text_consensus_exact_share_medoid_and_dispute():
    r = text_consensus(["Hello world.", "hello world", "hello word", "bye"])
    assert (r.text, r.index, r.method, r.exact_share) == ("Hello world.", 0, "exact", 0.5)
    r = text_consensus(["the cat sat", "the cat sat down", "a cat sat", "dogs"])
    assert (r.text, r.method, r.exact_share) == ("the cat sat", "medoid", 0.25)
    assert r.disputed and r.agreement < 0.6
    r = text_consensus(["one two three four", "one two three four five", "one two three"])
    assert r.method == "medoid" and r.text == "one two three four" and not r.disputed
    assert np.isclose(r.agreement, (0.8 + 0.75 + 0.6) / 3)
    assert text_consensus([]) == ("", -1, "none", 0.0, 1.0, False)
    r = text_consensus([None, float("nan"), "x"], min_agreement=0.5)
    assert (r.text, r.method, r.exact_share, r.disputed) == ("", "exact", 2 / 3, True)


# ---- ROVER, hand-worked -------------------------------------------------------------------------


def test_rover_words_hand_worked():
    s = str.split
    # substitution voted out
    assert rover_words([s("a b c"), s("a x c"), s("a b c")]) == ("a", "b", "c")
    # deletion: the skeleton's word survives 2:1, and a word 1:2 against "no word" is dropped
    assert rover_words([s("a b c"), s("a c"), s("a b c")]) == ("a", "b", "c")
    assert rover_words([s("a b c"), s("a c"), s("a c")]) == ("a", "c")
    # insertion: a word the skeleton lacks gets in with 2 of 3 votes, not with 1 of 3
    assert rover_words([s("a c"), s("a b c"), s("a b c")]) == ("a", "b", "c")
    assert rover_words([s("a c"), s("a b c"), s("a c")]) == ("a", "c")
    # ties: word beats no-word, then the longer word, then the greater string (crowd-kit's rule)
    assert rover_words([s("a"), s("a b")]) == ("a", "b")
    assert rover_words([s("a bb"), s("a c")]) == ("a", "bb")
    assert rover_words([s("a b"), s("a c")]) == ("a", "c")
    # weights: one heavy voter outvotes two light ones
    assert rover_words([s("a b"), s("a c"), s("a c")], [3.0, 1.0, 1.0]) == ("a", "b")
    # empty hypotheses
    assert rover_words([]) == () and rover_words([(), ()]) == ()
    assert rover_words([(), s("a b"), s("a b")]) == ("a", "b")


def test_rover_frame_hand_worked_and_attributes():
    df = frame(
        {
            "t1": ["the cat sat", "the cat sat", "the bat sat", "a cat sat down"],
            "t2": ["hello", "Hello!", "hello there"],
            "t3": ["only one"],
        }
    )
    model = TextROVER(weighted=False)
    out = model.fit_predict(df)
    assert out.to_dict() == {"t1": "the cat sat", "t2": "hello", "t3": "only one"}
    assert out.index.name == "task" and out.name == "text"
    assert np.isnan(model.agreement_["t3"]) and model.agreement_["t2"] > 0.6
    assert set(model.skills_.index) == {"w0", "w1", "w2", "w3"}
    assert model.get_params()["gamma"] == 6.0 and "TextROVER(" in repr(model)
    # the medoid is an answer as given; equal normalised answers tie, the smaller raw text wins
    assert TextMedoid().fit_predict(df).to_dict() == {
        "t1": "the cat sat",
        "t2": "Hello!",
        "t3": "only one",
    }
    with pytest.raises(NotImplementedError):
        model.fit_predict_proba(df)


def test_empty_and_nan_answers():
    df = frame({"a": [None, "", np.nan], "b": ["x y", None, "x y"], "c": ["", "z", "z"]})
    for model in (TextROVER(), TextROVER(weighted=False), TextMedoid()):
        out = model.fit_predict(df)
        assert out.to_dict() == {"a": "", "b": "x y", "c": "z"}, model
    assert text_agreement(df)["a"] == 1.0
    # pandas' nullable string dtype: missing answers are pd.NA
    nullable = df.astype({"text": "string"})
    assert nullable["text"].isna().sum() == 3
    assert TextROVER().fit_predict(nullable).to_dict() == {"a": "", "b": "x y", "c": "z"}
    assert text_consensus(pd.array(["x", None, "x"], dtype="string")).text == "x"


def test_bad_input_is_a_clear_error():
    df = frame({"a": ["x", "y"]})
    with pytest.raises(ValidationError, match="text") as e:
        TextROVER().fit(df.drop(columns="text"))
    assert e.value.param == "text"
    bad = df.copy()
    bad.loc[1, "worker"] = None
    with pytest.raises(ValidationError, match="'worker'.*index 1"):
        TextMedoid().fit(bad)
    bad = df.copy().astype({"text": object})
    bad.loc[1, "text"] = 3
    with pytest.raises(ValidationError, match="index 1 holds int"):
        TextROVER().fit(bad)
    with pytest.raises(ValidationError, match="empty"):
        TextROVER().fit(df.iloc[:0])
    with pytest.raises(ValidationError, match="gamma") as e:
        TextROVER(gamma=-1).fit(df)
    assert e.value.param == "gamma"


def test_reliability_downweights_noisy_workers_and_their_words():
    # 3 careful workers (a word dropped now and then) and 2 careless ones who skip half the words:
    # plain ROVER loses a word when both careless ones and one careful one skip it
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(50)]
    rows, truth = [], {}
    for t in range(60):
        ref = [rng.choice(vocab) for _ in range(8)]
        truth[t] = " ".join(ref)
        for w in ("good1", "good2", "good3"):
            ans = [x for x in ref if rng.random() > 0.1]
            rows.append((t, w, " ".join(ans)))
        for w in ("noisy1", "noisy2"):
            ans = [x for x in ref if rng.random() > 0.5]
            rows.append((t, w, " ".join(ans)))
    df = pd.DataFrame(rows, columns=["task", "worker", "text"])
    model = TextROVER().fit(df)
    skills = model.skills_
    assert skills[["good1", "good2", "good3"]].min() > skills[["noisy1", "noisy2"]].max()
    ref = pd.Series(truth)
    weighted = word_error_rate(model.texts_, ref)[0]
    uniform = word_error_rate(TextROVER(weighted=False).fit_predict(df), ref)[0]
    assert weighted < 0.5 * uniform, (weighted, uniform)  # 0.035 vs 0.129 with this seed


# ---- order independence and real data -----------------------------------------------------------


def _load_subset(n_tasks: int) -> tuple[pd.DataFrame, pd.Series]:
    df = pd.read_csv(SPEECH / "crowdspeech-dev-clean-crowd.tsv", sep="\t")
    df.columns = ["task", "text", "worker"]
    keep = pd.unique(df["task"])[:n_tasks]
    df = df[df["task"].isin(keep)].reset_index(drop=True)
    gt = pd.read_csv(
        SPEECH / "crowdspeech-dev-clean-gt.txt", sep="\t", header=None, names=["task", "ref"]
    )
    return df, gt.set_index("task")["ref"].reindex(keep)


needs_data = pytest.mark.skipif(not SPEECH.is_dir(), reason=f"no CrowdSpeech at {SPEECH}")


@needs_data
def test_order_independence_on_real_answers():
    df, _ = _load_subset(60)
    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    for make in (TextROVER, lambda: TextROVER(weighted=False), TextMedoid):
        a = make().fit_predict(df)
        b = make().fit_predict(shuffled)
        pd.testing.assert_series_equal(a, b.reindex(a.index))


@needs_data
def test_real_subset_wer_below_random_worker():
    df, ref = _load_subset(150)
    norm = TextNormalizer()
    refs = dict(zip(ref.index, norm.many(ref.tolist()), strict=True))
    edits = [
        word_edit_distance(refs[t], w)
        for t, w in zip(df["task"], norm.many(df["text"]), strict=True)
    ]
    per = pd.DataFrame({"task": df["task"], "e": edits}).groupby("task", sort=False)["e"].mean()
    random_corpus = per.sum() / sum(len(refs[t]) for t in per.index)
    rover = word_error_rate(TextROVER().fit_predict(df), ref)
    medoid = word_error_rate(TextMedoid().fit_predict(df), ref)
    assert rover[0] < 0.6 * random_corpus, (rover, random_corpus)
    assert medoid[0] < 0.7 * random_corpus, (medoid, random_corpus)


def test_text_alpha_equals_nominal_alpha_on_one_word_answers():
    # one-word answers: similarity is 1 if equal else 0, so the text alpha is the nominal alpha
    from cynaps_data.consensus import krippendorff_alpha

    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, 40)
    rows = []
    for t in range(40):
        for w in rng.choice(8, size=rng.integers(1, 5), replace=False):
            y = truth[t] if rng.random() < 0.7 else rng.integers(0, 4)
            rows.append((t, int(w), f"word{y}"))
    df = pd.DataFrame(rows, columns=["task", "worker", "text"])
    nominal = krippendorff_alpha(df.rename(columns={"text": "label"}), "nominal")
    assert np.isclose(text_alpha(df, n_pairs=10**6), nominal, atol=1e-12)
    # sampled expected disagreement: close to the exact one
    assert abs(text_alpha(df, n_pairs=4000, random_state=0) - nominal) < 0.05
    same = frame({"a": ["x y", "x y"], "b": ["z", "z"]})
    assert text_alpha(same) == 1.0
