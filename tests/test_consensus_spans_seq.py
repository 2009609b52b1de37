"""Sequence (BIO) consensus: the IOB2 utilities of cynaps_data.consensus.bio with hand-worked
cases, and the crowd sequence aggregators of cynaps_data.consensus.spans_seq."""

from __future__ import annotations

import doctest
import io
import itertools
import pickle
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.types_spans import as_lists, synthetic_crowd
from benchmarks.types_spans import load as load_spans
from cynaps_data.consensus import bio
from cynaps_data.consensus.bio import (
    chunk_starts,
    entities,
    is_valid,
    parse_tag,
    repair,
    strict_f1,
    strict_f1_by_label,
    to_tags,
)
from cynaps_data.consensus.spans_seq import (
    BayesianSequenceCombination,
    TokenDawidSkene,
    TokenMajorityVote,
)
from cynaps_data.consensus.spans_seq_hmm import Layout, forward_backward, viterbi
from cynaps_data.errors import ValidationError

# ---- bio.py ------------------------------------------------------------------------------------


def test_bio_doctests():
    res = doctest.testmod(bio)
    assert res.attempted >= 10 and res.failed == 0


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ([], []),
        (["O", "O"], []),
        (["B-PER"], [(0, 1, "PER")]),
        (["B-PER", "I-PER", "I-PER"], [(0, 3, "PER")]),
        (["B-PER", "B-PER"], [(0, 1, "PER"), (1, 2, "PER")]),
        # IOB1 / invalid continuation: I- after O (or at position 0) starts an entity
        (["I-LOC"], [(0, 1, "LOC")]),
        (["O", "I-LOC", "I-LOC", "O"], [(1, 3, "LOC")]),
        # I- of another label starts a new entity
        (["B-PER", "I-ORG", "I-ORG"], [(0, 1, "PER"), (1, 3, "ORG")]),
        (
            ["I-PER", "B-PER", "I-PER", "O", "B-MISC", "I-MISC"],
            [
                (0, 1, "PER"),
                (1, 3, "PER"),
                (4, 6, "MISC"),
            ],
        ),
        # labels may contain '-'
        (["B-GPE-CITY", "I-GPE-CITY"], [(0, 2, "GPE-CITY")]),
        ("B-ORG I-ORG O B-LOC", [(0, 2, "ORG"), (3, 4, "LOC")]),
    ],
)
def test_entities_hand_worked(tags, expected):
    assert entities(tags) == expected


@pytest.mark.parametrize("bad", ["X-PER", "B-", "PER", "", "o", "B_PER", "I- PER"])
def test_unknown_tag_shape_names_position(bad):
    with pytest.raises(ValueError, match=r"tags\[1\].*unknown tag"):
        entities(["O", bad])


def test_parse_tag():
    assert parse_tag("B-PER") == ("B", "PER")
    assert parse_tag("O") == ("O", "")
    with pytest.raises(ValueError, match="unknown tag"):
        parse_tag("S-PER")
    with pytest.raises(ValueError, match="expected a tag string"):
        parse_tag(None)  # type: ignore[arg-type]


def test_to_tags_hand_worked_and_errors():
    assert to_tags([(1, 3, "ORG"), (3, 4, "ORG")], 5) == ["O", "B-ORG", "I-ORG", "B-ORG", "O"]
    assert to_tags([], 0) == []
    with pytest.raises(ValueError, match=r"entities\[1\].*overlaps"):
        to_tags([(0, 2, "A"), (1, 3, "B")], 4)
    with pytest.raises(ValueError, match=r"entities\[0\].*outside"):
        to_tags([(2, 5, "A")], 4)
    with pytest.raises(ValueError, match=r"entities\[0\].*empty"):
        to_tags([(2, 2, "A")], 4)
    with pytest.raises(ValueError, match=r"entities\[0\]\.label"):
        to_tags([(0, 1, "")], 4)
    with pytest.raises(ValueError, match="n_tokens"):
        to_tags([], -1)


def test_repair_and_validity():
    assert repair(["I-PER", "I-PER", "O", "I-LOC", "B-ORG", "I-MISC"]) == [
        "B-PER",
        "I-PER",
        "O",
        "B-LOC",
        "B-ORG",
        "B-MISC",
    ]
    assert repair(["B-PER", "I-PER", "O"]) == ["B-PER", "I-PER", "O"]
    assert not is_valid(["O", "I-PER"]) and is_valid(["O", "B-PER", "I-PER"])
    assert not is_valid(["B-PER", "I-LOC"])


def test_round_trip_random_sequences():
    """entities(to_tags(E)) == E for random non-overlapping E; repair is idempotent and keeps
    the entities; the vectorised chunker agrees with the scalar one."""
    rng = random.Random(7)
    labels = ["PER", "LOC", "ORG"]
    allp, alll, alls, flat = [], [], [], []
    for _ in range(300):
        n = rng.randint(0, 12)
        tags = [rng.choice(["O", "B-PER", "I-PER", "I-LOC", "B-ORG", "I-ORG"]) for _ in range(n)]
        ents = entities(tags)
        fixed = repair(tags)
        assert entities(fixed) == ents and repair(fixed) == fixed and is_valid(fixed)
        assert entities(to_tags(ents, n)) == ents
        for i, t in enumerate(tags):
            p, lab = parse_tag(t)
            allp.append({"O": 0, "B": 1, "I": 2}[p])
            alll.append(labels.index(lab) if lab else -1)
            alls.append(i == 0)
            flat.append(i in {s for s, _, _ in ents})
    got = chunk_starts(np.array(allp), np.array(alll), np.array(alls))
    assert got.tolist() == flat


def test_strict_f1_hand_worked():
    gold = {
        "a": ["B-PER", "I-PER", "O", "B-LOC"],  # PER(0,2) LOC(3,4)
        "b": ["B-ORG", "I-ORG", "I-ORG", "O"],  # ORG(0,3)
        "c": ["O", "O"],
    }
    pred = {
        "a": ["B-PER", "I-PER", "O", "B-ORG"],  # PER ok, ORG(3,4) wrong label
        "b": ["B-ORG", "I-ORG", "O", "O"],  # ORG(0,2) wrong end
        "c": ["B-MISC", "O"],  # spurious
        "zzz": ["B-PER"],  # not in gold: ignored
    }
    r = strict_f1(gold, pred)
    assert (r["tp"], r["n_pred"], r["n_gold"]) == (1, 4, 3)
    assert r["precision"] == pytest.approx(0.25)
    assert r["recall"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))
    by = strict_f1_by_label(gold, pred)
    assert by["PER"]["f1"] == 1.0 and by["LOC"]["recall"] == 0.0 and by["MISC"]["precision"] == 0
    # missing prediction = all O; IOB1 prediction is read the conlleval way
    r = strict_f1({"a": "B-PER I-PER O"}, {})
    assert (r["precision"], r["recall"], r["f1"], r["n_gold"]) == (0.0, 0.0, 0.0, 1)
    assert strict_f1({"a": "B-PER I-PER O"}, {"a": "I-PER I-PER O"})["f1"] == 1.0
    assert strict_f1({}, {})["f1"] == 0.0


def test_strict_f1_errors_name_the_task():
    with pytest.raises(ValueError, match="task 'a'.*3 tags for 2"):
        strict_f1({"a": ["O", "O"]}, {"a": ["O", "O", "O"]})
    with pytest.raises(ValueError, match=r"pred\['a'\].*tags\[0\]"):
        strict_f1({"a": ["O"]}, {"a": ["Z-PER"]})


# ---- spans_seq.py ------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
_SPANS = [
    ROOT.parent / "shared" / "data" / "spans" / "conll2003_ner_mturk",
    Path("/work/shared/data/spans/conll2003_ner_mturk"),
]
SPANS = next((p for p in _SPANS if p.is_dir()), _SPANS[0])
needs_data = pytest.mark.skipif(not SPANS.is_dir(), reason=f"no CoNLL MTurk crowd at {SPANS}")

MODELS = [
    TokenMajorityVote,
    TokenDawidSkene,
    BayesianSequenceCombination,
    lambda: BayesianSequenceCombination(annotator="full", decode="marginal"),
]


def long_frame(answers: dict[tuple[str, str], str], tokens: dict | None = None) -> pd.DataFrame:
    """{(task, worker): "space separated tags"} -> the long tag frame."""
    rows = []
    for (task, worker), tags in answers.items():
        for i, t in enumerate(tags.split()):
            row = {"task": task, "worker": worker, "position": i, "tag": t}
            if tokens is not None:
                row["token"] = tokens[task][i]
            rows.append(row)
    return pd.DataFrame(rows)


HAND = {
    ("s1", "a"): "B-PER I-PER O B-LOC",
    ("s1", "b"): "B-PER I-PER O O",
    ("s1", "c"): "B-PER O O B-LOC",
    ("s2", "a"): "O I-ORG I-ORG",  # IOB1-style answer
    ("s2", "b"): "O B-ORG I-ORG",
    ("s2", "c"): "B-MISC O O",
}


def test_majority_vote_hand_worked():
    m = TokenMajorityVote().fit(long_frame(HAND))
    got = {t: list(x) for t, x in m.tags_.groupby("task", sort=False)["tag"]}
    # s1: PER (3/3), I-PER (2/3), O, LOC (2/3); s2: O (2/3), a three-way tie I-ORG/B-ORG/O goes
    # to O, then I-ORG (2/3) after O is repaired to B-ORG (confidence: its I-ORG share)
    assert got == {"s1": ["B-PER", "I-PER", "O", "B-LOC"], "s2": ["O", "O", "B-ORG"]}
    assert m.tags_["confidence"].round(4).tolist() == [
        1.0,
        0.6667,
        1.0,
        0.6667,
        0.6667,
        0.3333,
        0.6667,
    ]
    assert m.entities_.to_dict("records") == [
        {"task": "s1", "start": 0, "end": 2, "label": "PER", "confidence": pytest.approx(5 / 6)},
        {"task": "s1", "start": 3, "end": 4, "label": "LOC", "confidence": pytest.approx(2 / 3)},
        {"task": "s2", "start": 2, "end": 3, "label": "ORG", "confidence": pytest.approx(2 / 3)},
    ]
    assert m.tag_names_ == [
        "O",
        "B-LOC",
        "I-LOC",
        "B-MISC",
        "I-MISC",
        "B-ORG",
        "I-ORG",
        "B-PER",
        "I-PER",
    ]


def test_majority_vote_ties():
    df = long_frame({("t", "a"): "B-PER O", ("t", "b"): "O O"})
    assert TokenMajorityVote().fit_predict(df)["tag"].tolist() == ["O", "O"]
    assert TokenMajorityVote(ties="entity").fit_predict(df)["tag"].tolist() == ["B-PER", "O"]
    # HAND's s2 token 1 (I-ORG / B-ORG / O): the first entity tag in tag order, B-ORG
    got = TokenMajorityVote(ties="entity").fit_predict(long_frame(HAND))
    assert got[got["task"] == "s2"]["tag"].tolist() == ["O", "B-ORG", "I-ORG"]


@pytest.mark.parametrize("make", MODELS)
def test_output_contract(make):
    df = long_frame(HAND)
    m = make()
    tags = m.fit_predict(df)
    assert list(tags.columns) == ["task", "position", "tag", "confidence"]
    assert tags["position"].dtype == np.int64 and tags["confidence"].dtype == np.float64
    assert tags["confidence"].between(0, 1).all()
    assert list(m.entities_.columns) == ["task", "start", "end", "label", "confidence"]
    assert m.entities_["start"].dtype == np.int64 and m.entities_["end"].dtype == np.int64
    for task, part in tags.groupby("task", sort=False):
        seq = part["tag"].tolist()
        assert part["position"].tolist() == list(range(len(seq)))
        assert is_valid(seq)
        ents = m.entities_[m.entities_["task"] == task]
        assert list(zip(ents["start"], ents["end"], ents["label"], strict=True)) == entities(seq)
    # round trip through the usual sinks
    assert pickle.loads(pickle.dumps(tags)).equals(tags)
    for frame in (tags, m.entities_):
        back = pd.read_parquet(io.BytesIO(frame.to_parquet()))
        pd.testing.assert_frame_equal(back, frame, check_dtype=False)
        assert back.dtypes.astype(str).tolist()[1:] == frame.dtypes.astype(str).tolist()[1:]


def test_row_order_and_task_types_do_not_matter():
    df = long_frame(HAND)
    a = BayesianSequenceCombination().fit_predict(df)
    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    b = BayesianSequenceCombination().fit_predict(shuffled)
    key = ["task", "position"]
    a2, b2 = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a2, b2, atol=1e-6)
    ints = df.assign(task=df["task"].map({"s1": 10, "s2": 20}))
    assert set(BayesianSequenceCombination().fit_predict(ints)["task"]) == {10, 20}


@pytest.mark.parametrize(
    ("mutate", "param", "pattern"),
    [
        (lambda d: d.drop(columns="tag"), "tag", "missing column 'tag'"),
        (lambda d: d.drop(columns="position"), "position", "missing column 'position'"),
        (lambda d: d.drop(columns="worker"), "worker", "missing column 'worker'"),
        (lambda d: d.drop(columns="task"), "task", "missing column 'task'"),
        (lambda d: d.assign(tag=d["tag"].replace("B-LOC", "X-LOC")), "tag", "unknown tag 'X-LOC'"),
        (lambda d: d.assign(tag=d["tag"].replace("B-LOC", "LOC")), "tag", "unknown tag 'LOC'"),
        (lambda d: pd.concat([d, d.iloc[[0]]]), "position", "duplicate"),
        (lambda d: d.drop(index=1), "position", "gave 3 of 4 tags"),
        (lambda d: d.assign(position=d["position"] - 1), "position", "negative"),
        (lambda d: d.assign(position=d["position"].astype(float)), "position", "integers"),
        (lambda d: d.assign(worker=d["worker"].where(d.index != 2)), "worker", "missing value"),
        (lambda d: d.iloc[0:0], "tags", "empty"),
    ],
)
def test_bad_input_names_the_column(mutate, param, pattern):
    df = mutate(long_frame(HAND))
    for make in (TokenMajorityVote, BayesianSequenceCombination):
        with pytest.raises(ValidationError, match=pattern) as info:
            make().fit(df)
        assert info.value.param == param


def test_bad_parameters():
    with pytest.raises(ValidationError, match="annotator"):
        BayesianSequenceCombination(annotator="crf")
    with pytest.raises(ValidationError, match="alpha_diag"):
        BayesianSequenceCombination(alpha_diag=0)
    with pytest.raises(ValidationError, match="ties"):
        TokenMajorityVote(ties="random")
    with pytest.raises(ValidationError, match="DataFrame"):
        TokenMajorityVote().fit([("t", "w", 0, "O")])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not in labels"):
        TokenMajorityVote(labels=["PER"]).fit(long_frame(HAND))


def test_reliability_and_transitions():
    for ds_like in (TokenDawidSkene(), BayesianSequenceCombination()):
        conf = ds_like.fit(long_frame(HAND)).confusions_
        assert conf.index.names == ["worker", "tag"] and list(conf.columns) == ds_like.tag_names_
        assert len(conf) == 3 * 9
        np.testing.assert_allclose(conf.sum(axis=1).to_numpy(), 1.0)
    m = ds_like
    assert set(m.skills_.index) == {"a", "b", "c"} and m.skills_.between(0, 1).all()
    t = m.transitions_
    assert t.loc["O", "I-PER"] == 0 and t.loc["B-LOC", "I-PER"] == 0 and t.loc["B-PER", "I-PER"] > 0
    np.testing.assert_allclose(t.sum(axis=1).to_numpy(), 1.0)


def test_sequence_model_beats_token_vote_on_a_synthetic_crowd():
    """A crowd not drawn from the model (entity-level misses, wrong labels, boundary slips,
    spurious entities, a spammer): over 3 seeds the sequence model's strict F1 beats token
    majority vote on average and is never far below it."""
    diffs = []
    for seed in range(3):
        frame, truth = synthetic_crowd(
            np.random.default_rng(seed), n_sent=150, n_labels=2, n_workers=10, per_sentence=3
        )
        mv = TokenMajorityVote().fit_predict(frame)
        bsc = BayesianSequenceCombination().fit_predict(frame)
        f_mv = strict_f1(truth, as_lists(mv))["f1"]
        f_bsc = strict_f1(truth, as_lists(bsc))["f1"]
        diffs.append(f_bsc - f_mv)
    assert np.mean(diffs) > 0.02 and min(diffs) > -0.02, diffs


@needs_data
def test_real_data_subset_beats_majority_vote():
    long, gs = load_spans(SPANS)
    keep = set(list(gs["test"])[:800])
    sub = long[long["task"].isin(keep)]
    gold = {t: gs["test"][t] for t in keep}
    mv = strict_f1(gold, as_lists(TokenMajorityVote().fit_predict(sub)))["f1"]
    mv_e = strict_f1(gold, as_lists(TokenMajorityVote(ties="entity").fit_predict(sub)))["f1"]
    bsc = strict_f1(gold, as_lists(BayesianSequenceCombination().fit_predict(sub)))["f1"]
    assert bsc > max(mv, mv_e) + 0.02, (bsc, mv, mv_e)


@pytest.mark.parametrize("make", [TokenMajorityVote, TokenDawidSkene, BayesianSequenceCombination])
def test_one_worker_and_declared_labels_nobody_used(make):
    df = long_frame({("a", "w"): "B-X I-X", ("b", "w"): "O"})
    m = make(labels=["X", "Y", "Z"])
    assert m.fit_predict(df)["tag"].tolist() == ["B-X", "I-X", "O"]
    assert m.tag_names_ == ["O", "B-X", "I-X", "B-Y", "I-Y", "B-Z", "I-Z"]
    assert m.entities_[["task", "start", "end", "label"]].to_dict("records") == [
        {"task": "a", "start": 0, "end": 2, "label": "X"}
    ]


def test_word_model_reads_the_token_column():
    """Two workers disagree on 'Paris' in s6; elsewhere both tag Paris B-LOC: with the token
    column the word model adds its evidence for LOC, so B-LOC's posterior there is higher than
    when only the workers' confusions decide (word_prior=None)."""
    answers, tokens = {}, {}
    for i in range(6):
        answers[(f"s{i}", "a")] = "B-LOC O"
        answers[(f"s{i}", "b")] = "B-LOC O"
        tokens[f"s{i}"] = ["Paris", "today"]
    answers[("s6", "a")] = "B-LOC O"
    answers[("s6", "b")] = "O O"
    tokens["s6"] = ["Paris", "today"]
    # (the tagger off: this is the word model alone)
    with_words = BayesianSequenceCombination(tagger_rounds=0).fit(long_frame(answers, tokens))
    conf_w = with_words.tags_.set_index(["task", "position"]).loc[("s6", 0), "confidence"]
    assert with_words.tags_.set_index(["task", "position"]).loc[("s6", 0), "tag"] == "B-LOC"
    without = BayesianSequenceCombination(word_prior=None, tagger_rounds=0).fit(
        long_frame(answers, tokens)
    )
    p_without = without.probas_[6 * 2, without.tag_names_.index("B-LOC")]
    assert conf_w > p_without
    # unknown (null) token texts are allowed: those tokens just get no word evidence
    frame = long_frame(answers, tokens)
    frame.loc[frame["task"] == "s6", "token"] = None
    assert BayesianSequenceCombination().fit(frame).tags_["tag"].notna().all()


def test_hmm_kernels_match_brute_force_enumeration():
    """Batched forward-backward (marginals, pairwise sums, log Z) and Viterbi equal the sums and
    argmax over every path of every sentence, with a forbidden transition."""
    rng = np.random.default_rng(0)
    k = 3
    lengths = np.array([3, 1, 4, 2, 3])
    lay = Layout.build(lengths)
    trans = rng.random((k, k))
    trans[0, 2] = 0.0  # forbidden, like O -> I-X
    emit = rng.random((lay.n_tokens, k))
    gamma, xi, log_z = forward_backward(lay, trans, emit)
    with np.errstate(divide="ignore"):
        path = viterbi(lay, np.log(trans), np.log(emit))
    xi_b, log_z_b = np.zeros((k, k)), 0.0
    for s, n in enumerate(lengths):
        rows = lay.rows(np.full(n, s), np.arange(n))
        total, marg, best, pairs = 0.0, np.zeros((n, k)), (-1.0, None), np.zeros((k, k))
        for zs in itertools.product(range(k), repeat=int(n)):
            p = trans[0, zs[0]] * emit[rows[0], zs[0]]
            for i in range(1, n):
                p *= trans[zs[i - 1], zs[i]] * emit[rows[i], zs[i]]
            total += p
            marg[np.arange(n), zs] += p
            pairs[0, zs[0]] += p
            for i in range(1, n):
                pairs[zs[i - 1], zs[i]] += p
            if p > best[0]:
                best = (p, zs)
        np.testing.assert_allclose(gamma[rows], marg / total, atol=1e-12)
        assert tuple(path[rows]) == best[1]
        xi_b += pairs / total
        log_z_b += np.log(total)
    np.testing.assert_allclose(xi, xi_b, atol=1e-12)
    assert log_z == pytest.approx(log_z_b)
