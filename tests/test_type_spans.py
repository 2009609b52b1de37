"""The ``spans`` annotation type (issue 14): labelled character ranges of a task's text.

The type's rules (config, values checked against the task text, token-level and Label Studio
input), the span metrics and consensus on hand-worked examples, the IOB2 bridge and the
token-classification views (a real Hugging Face fast tokenizer built offline), end to end on a
real platform with a sandbox workforce (create, upload, consensus, exports and their sinks,
``to_dataset``, Label Studio both ways, client re-aggregation), bad spans as 422s that store
nothing, and the widget in a real browser (keyboard and mouse selection).
"""

from __future__ import annotations

import ast
import os
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
import requests

import cynaps_data as cynaps
from cynaps_data.consensus.spans import (
    mean_pairwise_f1,
    span_agreement,
    span_consensus,
    span_f1,
    span_support,
    unitizing_alpha,
    unitizing_disagreements,
)
from cynaps_data.consensus.spans_tokens import (
    iob2_names,
    segment_offsets,
    spans_to_tags,
    tags_to_spans,
    whitespace_tokenize,
)
from cynaps_data.io import to_conll, token_classification
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import WorkforceSettings
from cynaps_data.types import VoteArrays, get_type

LABELS = ["PER", "ORG", "LOC", "MISC"]
QUALITY = {"min_annotators": 3, "consensus_threshold": 0.5, "enable_expert_review": True}
SPANS = get_type("spans")
CONFIG = SPANS.validate_config(LABELS)
TEXT = "Angela Merkel met Barack Obama in Berlin on Monday."
DATA = {"text": TEXT}


def S(start: int, end: int, label: str) -> dict:
    return {"start": start, "end": end, "label": label}


# -- the type's own rules ------------------------------------------------------------------------
def test_config_is_normalised_and_the_offending_key_named() -> None:
    assert CONFIG == {"labels": LABELS, "field": "text", "allow_overlap": False}
    full = {"labels": ["A", "B"], "field": "body", "allow_overlap": True}
    assert SPANS.validate_config(full) == full
    for bad, match in [
        ({"labels": ["A", "A"]}, r"labels.labels\[1\] repeats"),
        ({"labels": ["A B"]}, r"labels.labels\[0\]"),
        ({"labels": []}, "labels.labels"),
        ({"labels": ["A"], "colour": 1}, "labels.colour"),
        ({"labels": ["A"], "field": ""}, "labels.field"),
        ({"labels": ["A"], "allow_overlap": "yes"}, "labels.allow_overlap"),
        ("PER", "list of span labels"),
    ]:
        with pytest.raises(ValueError, match=match):
            SPANS.validate_config(bad)


def test_values_are_checked_against_the_text_sorted_and_given_their_text() -> None:
    value = SPANS.validate_value([S(34, 40, "LOC"), S(0, 13, "PER")], CONFIG, DATA)
    assert value == [
        {**S(0, 13, "PER"), "text": "Angela Merkel"},
        {**S(34, 40, "LOC"), "text": "Berlin"},
    ]
    assert SPANS.validate_value([], CONFIG, DATA) == []
    # the client's check before upload has no data: shape only, the text is kept as given
    assert SPANS.validate_value([S(0, 999, "PER")], CONFIG) == [S(0, 999, "PER")]
    # Label Studio: values and whole regions
    ls = [
        {"start": 0, "end": 13, "text": "Angela Merkel", "labels": ["PER"]},
        {"type": "labels", "value": {"start": 34, "end": 40, "labels": ["LOC"]}},
    ]
    assert SPANS.validate_value(ls, CONFIG, DATA) == value
    # token-level (CoNLL-style) answers become character spans
    tokens = TEXT.replace(".", " .").split()
    tags = ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "O", "B-MISC", "O"]
    assert SPANS.validate_value({"tokens": tokens, "tags": tags}, CONFIG, DATA) == [
        {**S(0, 13, "PER"), "text": "Angela Merkel"},
        {**S(18, 30, "PER"), "text": "Barack Obama"},
        {**S(34, 40, "LOC"), "text": "Berlin"},
        {**S(44, 50, "MISC"), "text": "Monday"},
    ]
    nested = SPANS.validate_config({"labels": LABELS, "allow_overlap": True})
    both = SPANS.validate_value([S(0, 13, "PER"), S(0, 6, "MISC")], nested, DATA)
    assert [(s["start"], s["end"]) for s in both] == [(0, 6), (0, 13)]
    for bad, match in [
        ("Angela", "must be a list of spans"),
        ([S(5, 2, "PER")], r"spans\[0\].end must be an integer after start"),
        ([S(0, 4, "PER"), S(-1, 4, "PER")], r"spans\[1\].start"),
        ([S(0, 99, "PER")], r"spans\[0\].end 99 is past the end of the text \(51"),
        ([S(0, 4, "CITY")], r"spans\[0\].label 'CITY' is not one"),
        ([S(0, 13, "PER"), S(7, 20, "ORG")], r"spans\[1\] overlaps spans\[0\]"),
        ([S(34, 40, "LOC"), S(0, 13, "PER"), S(30, 36, "ORG")], r"spans\[2\] overlaps spans\[0\]"),
        ([S(0, 13, "PER"), S(0, 13, "PER")], r"spans\[1\] repeats spans\[0\]"),
        ([{**S(0, 6, "PER"), "text": "Barack"}], r"spans\[0\].text 'Barack' is not the text"),
        ([{**S(0, 6, "PER"), "colour": "red"}], r"spans\[0\].colour"),
        ([{"start": 0, "end": 6, "labels": ["PER", "ORG"]}], r"spans\[0\].labels"),
        ({"tokens": ["Angela", "Putin"], "tags": ["B-PER", "I-PER"]}, r"tokens\[1\] 'Putin'"),
        ({"tokens": ["Angela"], "tags": ["B-PER", "O"]}, "2 entries for 1 tokens"),
        ({"tokens": ["Angela"], "tags": ["X-PER"]}, r"tags\[0\] must be O, B-"),
        ({"tokens": ["Angela"], "tags": ["B-CITY"]}, r"tags\[0\] 'B-CITY'"),
    ]:
        with pytest.raises(ValueError, match=match):
            SPANS.validate_value(bad, CONFIG, DATA)
    with pytest.raises(ValueError, match="no text in its data field 'text'"):
        SPANS.validate_value([S(0, 1, "PER")], CONFIG, {"body": TEXT})


def test_label_studio_regions_both_ways() -> None:
    value = SPANS.validate_value([S(0, 13, "PER"), S(34, 40, "LOC")], CONFIG, DATA)
    regions = SPANS.to_label_studio(value, CONFIG)
    assert [r["type"] for r in regions] == ["labels", "labels"]
    assert regions[0]["value"] == {
        "start": 0,
        "end": 13,
        "text": "Angela Merkel",
        "labels": ["PER"],
    }
    relation = {"type": "relation", "from_id": "s0", "to_id": "s1"}
    back = SPANS.from_label_studio_result([*regions, relation], CONFIG)
    assert SPANS.validate_value(back, CONFIG, DATA) == value
    assert SPANS.from_label_studio_result([], CONFIG) == []
    with pytest.raises(ValueError, match="not a 'labels' result"):
        SPANS.from_label_studio({"type": "choices", "value": {"choices": ["a"]}}, CONFIG)


# -- span metrics and consensus, worked by hand ------------------------------------------------
#  v1: Angela Merkel/PER, Barack Obama/PER, Berlin/LOC
#  v2: Angela Merkel/PER, Obama/PER (25:30), Berlin/ORG
#  v3: Angela Merkel/PER, Barack Obama/PER
V1 = [S(0, 13, "PER"), S(18, 30, "PER"), S(34, 40, "LOC")]
V2 = [S(0, 13, "PER"), S(25, 30, "PER"), S(34, 40, "ORG")]
V3 = [S(0, 13, "PER"), S(18, 30, "PER")]


def test_span_f1_exact_and_overlap_by_hand() -> None:
    # exact: v1/v2 share 1 of 3+3 spans -> 2/6; v1/v3 2 of 3+2 -> 4/5; v2/v3 1 of 3+2 -> 2/5
    assert span_f1(V1, V2) == pytest.approx(1 / 3)
    assert span_f1(V1, V3) == pytest.approx(0.8)
    assert span_f1(V2, V3) == pytest.approx(0.4)
    assert mean_pairwise_f1([V1, V2, V3]) == pytest.approx((1 / 3 + 0.8 + 0.4) / 3)
    # overlap: Obama/PER matches Barack Obama/PER; Berlin LOC vs ORG does not (label differs)
    assert span_f1(V1, V2, "overlap") == pytest.approx(4 / 6)
    assert span_f1(V2, V3, "overlap") == pytest.approx(0.8)
    assert mean_pairwise_f1([V1, V2, V3], "overlap") == pytest.approx((4 / 6 + 0.8 + 0.8) / 3)
    # each span matches once: two short spans inside one long one give one overlap match
    assert span_f1([S(0, 10, "A")], [S(0, 4, "A"), S(5, 10, "A")], "overlap") == pytest.approx(
        2 / 3
    )
    assert span_f1([], []) == 1.0 and span_f1([], [S(0, 1, "A")]) == 0.0
    assert mean_pairwise_f1([V1]) == 1.0 and np.isnan(mean_pairwise_f1([]))
    frame = pd.DataFrame({"task": [7, 7, 7, 8], "worker": list("abca"), "spans": [V1, V2, V3, V1]})
    table = span_agreement(frame)
    assert table.loc[7, "f1_exact"] == pytest.approx(mean_pairwise_f1([V1, V2, V3]))
    assert table.loc[8].tolist() == [1, 1.0, 1.0] and table["n"].dtype == "int64"


def test_span_consensus_matches_exact_then_by_overlap_and_votes_label_and_boundaries() -> None:
    result = span_consensus([V1, V2, V3], 0.5, labels=LABELS)
    # Obama (25:30) joins the Barack Obama cluster (most voted boundaries 18:30, 2 votes);
    # Berlin is LOC once and ORG once: the config's order breaks the tie (ORG before LOC)
    assert result.clusters == [(0, 13, "PER", 1.0), (18, 30, "PER", 1.0), (34, 40, "ORG", 2 / 3)]
    assert result.spans == [(0, 13, "PER"), (18, 30, "PER"), (34, 40, "ORG")]
    assert result.agreement == pytest.approx(mean_pairwise_f1([V1, V2, V3]))
    # the threshold is the share of annotators a span needs
    assert span_consensus([V1, V2, V3], 0.7, labels=LABELS).spans == [
        (0, 13, "PER"),
        (18, 30, "PER"),
    ]
    # one annotator counts once per cluster: its second piece starts a cluster of its own,
    # which then loses to the better supported span it overlaps
    split = [[S(0, 5, "PER"), S(6, 10, "PER")], [S(0, 10, "PER")], [S(0, 10, "PER")]]
    result = span_consensus(split, 0.3)
    assert result.clusters == [(0, 10, "PER", 1.0), (6, 10, "PER", 1 / 3)]
    assert result.spans == [(0, 10, "PER")] and result.support == [1.0]
    # overlaps allowed: matching per label, nested spans kept
    nested = [[S(0, 13, "PER"), S(0, 6, "MISC")], [S(0, 13, "PER"), S(0, 6, "MISC")]]
    assert span_consensus(nested, 0.5, allow_overlap=True).spans == [
        (0, 6, "MISC"),
        (0, 13, "PER"),
    ]
    assert span_support(S(20, 27, "PER"), [V1, V2, V3]) == 1.0
    assert span_support(S(20, 25, "PER"), [V1, V2, V3]) == pytest.approx(
        2 / 3
    )  # ends are exclusive
    assert span_support(S(34, 40, "LOC"), [V1, V2, V3]) == pytest.approx(1 / 3)


def test_unitizing_alpha_by_hand() -> None:
    """Krippendorff's (2004) u-alpha on a continuum of L = 10, two coders, m = 2.

    1. A marks [2, 5), B marks [3, 5). Sections (begin, length): A = gap(0,2) unit(2,3)
       gap(5,5); B = gap(0,3) unit(3,2) gap(5,5). Observed: the two units overlap, δ² =
       (2-3)² + (5-5)² = 1 in each order, no unit lies inside a gap: D_o = 2 / (2·1·10²) =
       0.01. Expected (N_c = 2): unit l=3: (1/3)(54-27+3) = 10 plus 3²·[(5-3+1) + (3-3+1) +
       (5-3+1)] = 63 (gaps of length >= 3: 5, 3, 5) = 73; unit l=2: (1/3)(16-12+2) = 2 plus
       2²·[1 + 4 + 2 + 4] = 44 (gaps 2, 5, 3, 5) = 46; D_e = (2/10)·119 / (20·19 - 3·2 - 2·1)
       = 23.8 / 372 = 0.063978; α = 1 - 0.01/0.063978 = 0.843697.
    2. A marks [2, 4), B nothing. A's unit lies in B's gap (δ² = 2² = 4) and B's gap holds
       it (4): D_o = 8/200 = 0.04. N_c = 1: 2²·[(2-2+1) + (6-2+1) + (10-2+1)] = 60 (gaps 2, 6
       and B's 10); D_e = 0.2·60 / (380 - 2) = 0.031746; α = 1 - 0.04/0.031746 = -0.26.
    """
    a, b = [S(2, 5, "c")], [S(3, 5, "c")]
    d_o, d_e = unitizing_disagreements([a, b], 10, "c")
    assert (d_o, d_e) == (pytest.approx(0.01), pytest.approx(23.8 / 372))
    assert unitizing_alpha([a, b], 10) == pytest.approx(1 - 0.01 / (23.8 / 372))
    assert unitizing_alpha([a, b], 10) == pytest.approx(0.843697, abs=1e-6)
    assert unitizing_alpha([[S(2, 4, "c")], []], 10) == pytest.approx(1 - 0.04 / (12 / 378))
    assert unitizing_alpha([a, a, a], 10) == 1.0
    # joint alpha: disagreements summed over the labels before the ratio
    joint = unitizing_alpha([a + [S(6, 8, "d")], b + [S(6, 8, "d")]], 10)
    per = unitizing_alpha([a + [S(6, 8, "d")], b + [S(6, 8, "d")]], 10, by_label=True)
    d_d = unitizing_disagreements([[S(6, 8, "d")], [S(6, 8, "d")]], 10, "d")
    assert per["d"] == 1.0 and per["c"] == pytest.approx(0.843697, abs=1e-6)
    assert joint == pytest.approx(1 - 0.01 / (23.8 / 372 + d_d[1]))
    with pytest.raises(ValueError, match="two 'c' spans overlap"):
        unitizing_alpha([[S(0, 4, "c"), S(2, 6, "c")], a], 10)


def test_decide_completes_when_the_answers_back_the_voted_spans() -> None:
    quality = {**QUALITY, "max_annotators": 5}
    votes = [SPANS.validate_value(v, CONFIG, DATA) for v in (V1, V2, V3)]
    decision = SPANS.decide(votes, quality, 3, CONFIG)
    # the answers' mean exact F1 with the voted set: (4/6 + 4/6 + 4/5) / 3 = 0.71 >= 0.5
    assert (decision.status, decision.label_source) == ("completed", "consensus")
    assert [(s["start"], s["end"], s["label"]) for s in decision.final_label] == [
        (0, 13, "PER"),
        (18, 30, "PER"),
        (34, 40, "ORG"),
    ]
    assert decision.final_label[1]["text"] == "Barack Obama"
    assert decision.agreement == pytest.approx(mean_pairwise_f1(votes))
    apart = [[S(0, 6, "PER")], [S(7, 13, "PER")], [S(18, 24, "ORG")]]
    assert SPANS.decide(apart, quality, 3, CONFIG).status == "disputed"
    no_review = {**quality, "enable_expert_review": False}
    assert SPANS.decide(apart, {**no_review, "max_annotators": 4}, 3, CONFIG).needed == 4
    final = SPANS.decide(apart, {**no_review, "max_annotators": 3}, 3, CONFIG)
    assert (final.status, final.final_label, final.label_source) == ("completed", [], "majority")
    assert SPANS.decide([[], []], quality, 2, CONFIG).final_label == []
    assert SPANS.decide([V1], quality, 3, CONFIG).status == "pending"
    summary = SPANS.summarize(votes, None)
    assert [len(a) for a in summary["annotators"]] == [3, 3, 2]
    # without the config (the review page) a label tie goes to the first voted
    assert summary["spans"][2] == {**S(34, 40, "LOC"), "text": "Berlin", "support": 2 / 3}
    assert summary["agreement_overlap"] == pytest.approx((4 / 6 + 0.8 + 0.8) / 3)


# -- tokens, IOB2 and the token-classification views ---------------------------------------------
def test_iob2_both_ways_and_elementary_segments() -> None:
    offsets = whitespace_tokenize(TEXT)
    spans = [(0, 13, "PER"), (18, 30, "PER"), (34, 40, "LOC")]
    tags = spans_to_tags(spans, offsets)
    assert tags == ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "O", "O"]
    assert tags_to_spans(tags, offsets) == spans
    # conlleval's repair: an I- that continues nothing starts an entity; B- splits two
    assert tags_to_spans(["I-PER", "I-PER", "B-PER", "I-ORG"], offsets[:4]) == [
        (0, 13, "PER"),
        (14, 17, "PER"),
        (18, 24, "ORG"),
    ]
    # a span cutting a token tags the whole token
    assert spans_to_tags([(2, 9, "PER")], offsets[:3]) == ["B-PER", "I-PER", "O"]
    assert iob2_names(["PER", "LOC"]) == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    answers = [[(0, 13, "PER")], [(7, 13, "PER"), (34, 40, "LOC")]]
    segments = segment_offsets(answers)
    assert segments == [(0, 7), (7, 13), (13, 34), (34, 40)]
    for answer in answers:  # every answer is whole segments, both ways
        assert tags_to_spans(spans_to_tags(answer, segments), segments) == answer
    # with the text: its words, cut at the answers' boundaries, whitespace left out
    text = "Angela Merkel met the press in Berlin today"
    answers = [[(0, 13, "PER")], [(7, 13, "PER"), (31, 37, "LOC")], [(2, 6, "PER")]]
    segments = segment_offsets(answers, text)
    assert [text[a:b] for a, b in segments] == (
        ["An", "gela", "Merkel", "met", "the", "press", "in", "Berlin", "today"]
    )
    for answer in answers:
        assert tags_to_spans(spans_to_tags(answer, segments), segments) == answer


def test_client_auto_reads_the_task_text_when_the_frame_has_it() -> None:
    """``auto`` is ``bsc`` over the text's words when the wide frame holds the text field (as
    ``to_pandas(method=...)`` passes it), ``token_ds`` over bare span segments otherwise."""
    text = "Angela Merkel met the press in Berlin today"
    votes = pd.DataFrame(
        {
            "task": [1, 1, 1, 2, 2],
            "worker": ["a", "b", "c", "a", "b"],
            "label": [V1[:1], [S(7, 13, "PER")], [S(0, 13, "PER"), S(31, 37, "LOC")], [], []],
        }
    )
    tasks = pd.DataFrame({"text": [text, "nothing here"]}, index=pd.Index([1, 2], name="task"))
    with_text = SPANS.aggregate(votes, "auto", CONFIG, tasks=tasks)
    assert with_text.equals(
        SPANS.aggregate(votes, "bsc", CONFIG, tasks=tasks).set_axis(with_text.columns, axis=1)
    )
    spans = with_text.loc[1, "auto_label"]
    assert [text[s["start"] : s["end"]] for s in spans][:1] == ["Angela Merkel"]
    without = SPANS.aggregate(votes, "auto", CONFIG)
    assert without.equals(
        SPANS.aggregate(votes, "token_ds", CONFIG).set_axis(without.columns, axis=1)
    )


def _fast_tokenizer() -> Any:
    """A real Hugging Face fast tokenizer (WordPiece), built offline from a tiny vocabulary."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[UNK]", "an", "##gel", "##a", "mer", "##kel", "."])}
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")


def test_token_classification_and_conll_views(tmp_path) -> None:
    import datasets

    frame = pd.DataFrame(
        {
            "text": [TEXT, "angela merkel.", "no label yet"],
            "label": [
                [S(0, 13, "PER"), S(34, 40, "LOC")],
                [S(0, 13, "PER")],
                None,
            ],
        },
        index=pd.Index([10, 11, 12], name="task"),
    )
    frame.attrs["cynaps"] = {"labels": CONFIG, "annotation_type": "spans"}
    ds = token_classification(frame)
    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    assert ds.features["ner_tags"] == datasets.List(datasets.ClassLabel(names=names))
    assert ds["task"] == [10, 11]  # the task without spans is left out
    tags = ds.features["ner_tags"].feature.int2str(ds[0]["ner_tags"])
    assert list(zip(ds[0]["tokens"], tags, strict=True))[:3] == [
        ("Angela", "B-PER"),
        ("Merkel", "I-PER"),
        ("met", "O"),
    ]
    # a fast tokenizer's sub-words: every piece of an entity is tagged
    sub = token_classification(frame, _fast_tokenizer())
    pieces = sub[1]["tokens"]
    assert pieces == ["an", "##gel", "##a", "mer", "##kel", "."]
    assert sub.features["ner_tags"].feature.int2str(sub[1]["ner_tags"]) == [
        "B-PER",
        "I-PER",
        "I-PER",
        "I-PER",
        "I-PER",
        "O",
    ]
    # a plain callable giving (token, start, end)
    chars = token_classification(
        frame.iloc[[1]], lambda t: [(c, i, i + 1) for i, c in enumerate(t)]
    )
    assert chars[0]["ner_tags"][:2] == [1, 2] and chars[0]["ner_tags"][-1] == 0
    text = to_conll(frame)
    blocks = text.rstrip("\n").split("\n\n")
    assert len(blocks) == 2 and blocks[0].splitlines()[:2] == ["Angela B-PER", "Merkel I-PER"]
    assert blocks[1].splitlines() == ["angela B-PER", "merkel. I-PER"]
    assert to_conll(frame, tmp_path / "x.conll").read_text() == text
    back = pd.read_csv(pd.io.common.StringIO(frame.to_csv()), index_col="task")  # lists as text
    assert token_classification(back, labels=CONFIG)["ner_tags"] == ds["ner_tags"]
    with pytest.raises(cynaps.errors.ValidationError, match="pass labels="):
        token_classification(pd.DataFrame({"text": ["x"], "label": [[]]}))


def test_wide_and_long_columns_and_features() -> None:
    votes = [SPANS.validate_value(v, CONFIG, DATA) for v in (V1, V2, V3)]
    final = SPANS.decide(votes, {**QUALITY, "max_annotators": 3}, 3, CONFIG).final_label
    texts = pa.array([orjson.dumps(v).decode() for v in votes])
    gold = orjson.dumps([{**S(0, 13, "PER"), "text": "Angela Merkel"}]).decode()
    arrays = VoteArrays(
        2,
        np.array([0, 0, 0]),
        texts,
        np.array([3, 0]),
        pa.array([orjson.dumps(final).decode(), ""]),
        pa.array([gold, ""]),
        pa.array(["", ""]),
    )
    cols = SPANS.wide_columns(arrays, CONFIG)
    span_type = cols["label"].type.value_type
    assert [f.name for f in span_type] == ["start", "end", "label", "text", "support"]
    assert span_type.field("label").type == pa.dictionary(pa.int32(), pa.string())
    labels = cols["label"].to_pylist()
    assert [s["support"] for s in labels[0]] == [1.0, 1.0, pytest.approx(1 / 3)]
    assert labels[0][1] == {**S(18, 30, "PER"), "text": "Barack Obama", "support": 1.0}
    assert labels[1] is None and cols["gold"].to_pylist()[0][0]["support"] is None
    assert cols["agreement"].to_pylist()[0] == pytest.approx(mean_pairwise_f1(votes))
    assert cols["agreement_overlap"].to_pylist()[1] is None
    assert cols["confidence"].to_pylist()[0] == pytest.approx((4 / 6 + 4 / 6 + 0.8) / 3)
    long = SPANS.long_label(texts, CONFIG).to_pylist()
    assert [(s["start"], s["label"]) for s in long[1]] == [(0, "PER"), (25, "PER"), (34, "ORG")]
    import datasets

    feature = SPANS.features(CONFIG)["label"]
    assert isinstance(feature, datasets.List)
    assert feature.feature["label"] == datasets.ClassLabel(names=LABELS)


def test_simulated_annotators_miss_shift_and_confuse_at_their_own_rates() -> None:
    text = "Yesterday Angela Merkel visited Acme Corp in Berlin. Then Paris Hilton stayed home."
    data = {"text": text}
    truth = SPANS.pseudo_truth(orjson.dumps(data).decode(), CONFIG)
    assert truth == SPANS.pseudo_truth(orjson.dumps(data).decode(), CONFIG)
    assert [s["text"] for s in truth] == ["Angela Merkel", "Acme Corp", "Berlin", "Paris Hilton"]
    assert SPANS.pseudo_truth('{"other": 1}', CONFIG) == []
    exact = [tuple(s[k] for k in ("start", "end", "label")) for s in truth]

    def rates(accuracy: float) -> tuple[float, float, float]:
        rng = random.Random(7)
        missed = shifted = confused = 0
        for _ in range(1500):
            answer = SPANS.simulate(truth, CONFIG, accuracy, rng, data)
            SPANS.validate_value(answer, CONFIG, data)  # always a valid answer
            for start, end, label in exact:
                same = [s for s in answer if s["start"] < end and start < s["end"]]
                if not same:
                    missed += 1
                elif (same[0]["start"], same[0]["end"]) != (start, end):
                    shifted += 1
                elif same[0]["label"] != label:
                    confused += 1
        total = 1500 * len(exact)
        return missed / total, shifted / total, confused / total

    good, poor = rates(0.95), rates(0.7)
    assert all(g < p for g, p in zip(good, poor, strict=True)), (good, poor)
    assert 0.02 < good[0] < 0.09 and 0.15 < poor[0] < 0.45, (good, poor)
    assert SPANS.simulate(truth, CONFIG, 1.0, random.Random(1), data) == truth


# -- end to end ----------------------------------------------------------------------------------
PEOPLE = ["Angela Merkel", "Barack Obama", "Marie Curie", "Alan Turing"]
PLACES = ["Berlin", "Paris", "Lagos", "Osaka"]


def _sentence(i: int) -> tuple[str, list[dict]]:
    who, where = PEOPLE[i % 4], PLACES[(i // 4) % 4]
    text = f"On day {i} {who} flew to {where} with friends."
    a = text.index(who)
    b = text.index(where)
    return text, [S(a, a + len(who), "PER"), S(b, b + len(where), "LOC")]


@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> Iterator[LocalPlatform]:
    """A platform of its own: 3 sandbox annotators (accuracy 0.85-0.95) and 1 expert."""
    db = tmp_path_factory.mktemp("spans") / "cynaps.db"
    workforce = WorkforceSettings(
        annotators=3, experts=1, seconds_per_judgement=0.02, accuracy=(0.85, 0.95), seed=5
    )
    with LocalPlatform(db, workforce=workforce) as running:
        yield running


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _written(frame: pd.DataFrame, tmp_path: Path) -> Path:
    frame.to_parquet(tmp_path / "again.parquet")
    return tmp_path / "again.parquet"


def test_spans_project_end_to_end(crowd: LocalPlatform, tmp_path) -> None:
    import datasets

    with cynaps.Client(api_key=crowd.create_customer(), base_url=crowd.base_url) as client:
        with pytest.raises(cynaps.errors.ValidationError, match="labels.colour"):
            client.projects.create(
                name="bad", annotation_type="spans", labels={"labels": LABELS, "colour": 1}
            )
        project = client.projects.create(
            name="NER", annotation_type="spans", labels=LABELS, quality_settings=QUALITY
        )
        assert project.labels == CONFIG
        n = 12
        texts, truths = zip(*(_sentence(i) for i in range(n)), strict=True)
        frame = pd.DataFrame(
            {"text": texts, "gold": [t if i % 2 == 0 else None for i, t in enumerate(truths)]}
        )
        with pytest.raises(cynaps.errors.CynapsError, match=r"spans\[0\].end 99 is past"):
            project.upload_dataframe(
                pd.DataFrame({"text": ["short"], "gold": [[S(0, 99, "PER")]]}), gold_column="gold"
            )
        assert project.upload_dataframe(frame, gold_column="gold").created == n
        # the type's price: 12 x (3 x 25.00 + the 5.00 expert fee)
        assert project.calculate_deposit().amount == "960.00"
        project.pay_deposit(payment_method="credits")
        project.start()
        project.wait(timeout=180, poll_interval=0.2, progress=False)
        status = project.get_status()
        assert status.is_complete and status.completed == n and status.disputed == 0, status

        wide = project.to_arrow()
        span_list = wide.schema.field("label").type
        assert pa.types.is_list(span_list) and span_list.value_type.field("label").type == (
            pa.dictionary(pa.int32(), pa.string())
        )
        rows = wide.to_pylist()
        long = project.to_pandas("long")
        for i, r in enumerate(rows):
            if i % 2 == 0:
                assert [{k: s[k] for k in ("start", "end", "label")} for s in r["gold"]] == truths[
                    i
                ]
            answers = long[(long["task"] == r["task"]) & (long["role"] == "annotator")]["label"]
            answers = [list(a) for a in answers]
            assert r["agreement"] == pytest.approx(mean_pairwise_f1(answers))
            for span in r["label"]:
                assert span["text"] == texts[i][span["start"] : span["end"]]
                assert span["support"] == pytest.approx(span_support(span, answers))
            if r["label_source"] == "consensus":
                quality = {**QUALITY, "max_annotators": 5}
                voted = SPANS.decide(answers, quality, len(answers), CONFIG).final_label
                assert [s["start"] for s in r["label"]] == [s["start"] for s in voted]
            else:
                assert r["label_source"] == "expert"
        golden = [r for i, r in enumerate(rows) if i % 2 == 0]
        f1 = np.mean([span_f1(r["label"], r["gold"]) for r in golden])
        assert f1 >= 0.75, [(r["label"], r["gold"]) for r in golden]

        # pandas: lists of dicts, surviving every sink with default arguments
        df = project.to_pandas()
        assert isinstance(df["label"].iloc[0], list) and df["agreement_overlap"].dtype == "float64"
        want = _plain(df["label"].tolist())
        df.to_parquet(tmp_path / "ner.parquet")
        assert _plain(pd.read_parquet(tmp_path / "ner.parquet")["label"].tolist()) == want
        df.reset_index().to_feather(tmp_path / "ner.feather")
        assert _plain(pd.read_feather(tmp_path / "ner.feather")["label"].tolist()) == want
        assert _plain(pickle.loads(pickle.dumps(df))["label"].tolist()) == want
        df.to_csv(tmp_path / "ner.csv")
        back = pd.read_csv(tmp_path / "ner.csv", index_col="task")
        assert [ast.literal_eval(v) for v in back["label"]] == want
        assert _plain(datasets.Dataset.from_pandas(df)["label"]) == want
        # to_dataset: a list of span structs whose label is a ClassLabel
        dataset = project.to_dataset()
        feature = dataset.features["label"]
        assert feature.feature["label"] == datasets.ClassLabel(names=LABELS)
        first = dataset[0]["label"]
        assert [LABELS[s["label"]] for s in first] == [s["label"] for s in df["label"].iloc[0]]
        dataset.save_to_disk(str(tmp_path / "ds"))
        again = datasets.load_from_disk(str(tmp_path / "ds"))
        assert again.features == dataset.features and again[0]["label"] == first
        # token classification straight from the project
        tc = token_classification(project)
        assert len(tc) == n and tc.features["ner_tags"].feature.names[:3] == ["O", "B-PER", "I-PER"]
        assert "B-LOC" in tc.features["ner_tags"].feature.int2str(tc[0]["ner_tags"])

        # Label Studio: one labels region per span, both ways, same judgements
        records = project.export(format="label_studio")
        result = records[0]["annotations"][0]["result"]
        assert result and all(
            r["type"] == "labels" and len(r["value"]["labels"]) == 1 for r in result
        )
        copy = client.projects.create(
            name="NER copy", annotation_type="spans", labels=LABELS, quality_settings=QUALITY
        )
        assert copy.import_label_studio(records)["created"] == n

        def judged(long: pd.DataFrame, wide: pd.DataFrame) -> list:
            text = wide["text"].to_dict()
            return sorted(
                (text[t], role, orjson.dumps(_plain(list(label))).decode())
                for t, role, label in zip(long["task"], long["role"], long["label"], strict=True)
            )

        assert judged(long, df) == judged(copy.to_pandas("long"), copy.to_pandas())

        # client-side re-aggregation: span_vote is the platform's rule; the sequence models
        # (auto = bsc) find the gold spans as well
        def triples(spans: list) -> list:
            return [(s["start"], s["end"], s["label"]) for s in spans]

        voted = project.to_pandas(method="span_vote")
        for a, b, src in zip(
            voted["span_vote_label"], df["label"], df["label_source"], strict=True
        ):
            if src == "consensus":
                assert triples(a) == triples(b)
        for method in ("auto", "bsc", "token_mv", "token_ds"):
            out = project.to_pandas(method=method)
            assert out[f"{method}_agreement"].dtype == "float64"
            assert out[f"{method}_confidence"].between(0, 1).all()
            spans = out[f"{method}_label"]
            f1 = np.mean([span_f1(spans.iloc[i], df["gold"].iloc[i]) for i in range(0, n, 2)])
            assert f1 >= 0.75, (method, f1)
        back = pd.read_parquet(_written(out, tmp_path))
        assert _plain(back["token_ds_label"].tolist()) == _plain(out["token_ds_label"].tolist())
        with pytest.raises(cynaps.errors.ValidationError, match="glad"):
            project.to_pandas(method="glad")
        with pytest.raises(cynaps.errors.ValidationError, match="'k'"):
            project.to_pandas(method="span_vote", k=3)


# -- bad judgements --------------------------------------------------------------------------------
def test_bad_spans_are_422_naming_the_item_and_store_nothing(platform: LocalPlatform) -> None:
    customer = platform.create_customer("Spans 422")

    def call(method: str, path: str, key: str = customer, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return requests.request(method, platform.base_url + path, headers=headers, timeout=30, **kw)

    body = {
        "name": "ner 422",
        "annotation_type": "spans",
        "labels": LABELS,
        "quality_settings": QUALITY,
    }
    pid = call("POST", "/v1/projects", json=body).json()["id"]
    call("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": [{"data": DATA}]})
    call("POST", f"/v1/projects/{pid}/deposit/quote")
    call("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
    assert call("POST", f"/v1/projects/{pid}/start").status_code == 200
    key = call("POST", "/v1/annotators", json={"name": "tagger"}).json()["api_key"]
    task = call("GET", "/v1/annotator/next", key).json()
    path = f"/v1/annotator/tasks/{task['task_id']}/judgements"
    for bad, words in [
        ([S(0, 13, "PER"), S(20, 18, "PER")], "spans[1].end must be an integer after start"),
        ([S(40, 60, "LOC")], "spans[0].end 60 is past the end of the text"),
        ([S(0, 13, "CITY")], "spans[0].label 'CITY' is not one"),
        ([S(0, 13, "PER"), S(7, 17, "ORG")], "spans[1] overlaps spans[0]"),
        ([{**S(0, 6, "PER"), "text": "Barack"}], "spans[0].text"),
        ({"tokens": ["Angela", "Putin"], "tags": ["B-PER", "I-PER"]}, "tokens[1]"),
        ("Angela Merkel", "must be a list of spans"),
    ]:
        r = call("POST", path, key, json={"label": bad})
        assert r.status_code == 422, (bad, r.text)
        error = r.json()["error"]
        assert error["param"] == "label" and words in error["message"], (bad, error)
    assert call("GET", f"/v1/projects/{pid}/export").json()[0]["judgements"] == []
    r = call("POST", path, key, json={"label": [S(34, 40, "LOC"), S(0, 13, "PER")]})
    assert r.status_code in (200, 201), r.text
    record = call("GET", f"/v1/projects/{pid}/export").json()[0]
    assert [j["label"] for j in record["judgements"]] == [
        [{**S(0, 13, "PER"), "text": "Angela Merkel"}, {**S(34, 40, "LOC"), "text": "Berlin"}]
    ]


# -- the widget in a real browser ----------------------------------------------------------------
CHROMIUM = os.environ.get("CYNAPS_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "widget-spans.png"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--no-first-run"],
    }


def test_widget_tags_by_keyboard_and_mouse_selection(platform: LocalPlatform, page) -> None:
    """An annotator tags "Angela Merkel" with Shift+→ and 1 (PER), "Berlin" by dragging the
    mouse over it and 3 (LOC), removes a wrong span by clicking it, and submits with Enter; the
    export holds the two spans. An expert sees both annotators' spans of a disputed task."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    page.route(
        "**/*",
        lambda r: r.continue_() if r.request.url.startswith(platform.base_url) else r.abort(),
    )
    page.set_default_timeout(10_000)
    customer = platform.create_customer("Spans browser")

    def ok(method: str, path: str, key: str = customer, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        r = requests.request(method, platform.base_url + path, headers=headers, timeout=30, **kw)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def project(min_annotators: int, texts: list[str]) -> str:
        body = {"name": f"NER {min_annotators}", "annotation_type": "spans", "labels": LABELS}
        # two annotators' spans each have a support of 1/2, below 0.66: none is voted in
        quality = {**QUALITY, "min_annotators": min_annotators, "consensus_threshold": 0.66}
        pid = ok("POST", "/v1/projects", json={**body, "quality_settings": quality})["id"]
        tasks = [{"data": {"text": t}} for t in texts]
        ok("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": tasks})
        ok("POST", f"/v1/projects/{pid}/deposit/quote")
        ok("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
        ok("POST", f"/v1/projects/{pid}/start")
        return pid

    def sign_in(key: str, path: str) -> None:
        if page.url.startswith("http"):
            page.evaluate("sessionStorage.clear()")
        page.goto(platform.base_url + path)
        page.fill("#signin-key", key)
        page.click("#signin-form button[type=submit]")

    disputed = project(2, ["Marie Curie lived in Paris."])
    for name, answer in (("Tagger A", [S(0, 11, "PER")]), ("Tagger B", [S(21, 26, "LOC")])):
        key = ok("POST", "/v1/annotators", json={"name": name})["api_key"]
        task = ok("GET", "/v1/annotator/next", key)
        ok("POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", key, json={"label": answer})
    assert ok("GET", f"/v1/projects/{disputed}/status")["disputed"] == 1
    single = project(1, [TEXT])
    annotator = ok("POST", "/v1/annotators", json={"name": "Tagger C"})["api_key"]

    sign_in(annotator, "/ui/")
    view = page.locator(".spans-text")
    expect(view).to_have_text(TEXT)
    expect(page.locator(".spans-labels button.label")).to_have_count(4)
    # keyboard: → onto "Angela", Shift+→ over "Merkel", 1 = PER
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    expect(page.locator(".span-selected")).to_have_text("Angela Merkel")
    page.keyboard.press("1")
    expect(page.locator(".span-tagged")).to_have_text("Angela Merkel")
    # a wrong span, removed by a click on it
    page.keyboard.press("ArrowRight")
    page.keyboard.press("2")
    expect(page.locator(".span-tagged")).to_have_count(2)
    page.locator(".span-tagged", has_text="met").click()
    expect(page.locator(".span-tagged")).to_have_count(1)
    # mouse: drag over "Berlin", 3 = LOC
    box = page.evaluate(
        """() => {
          const piece = [...document.querySelectorAll('.spans-text .span-piece')]
            .find((p) => p.textContent.includes('Berlin'));
          const node = piece.firstChild, at = node.textContent.indexOf('Berlin');
          const range = document.createRange();
          range.setStart(node, at); range.setEnd(node, at + 6);
          const r = range.getBoundingClientRect();
          return {left: r.left, right: r.right, y: r.top + r.height / 2};
        }"""
    )
    page.mouse.move(box["left"] + 1, box["y"])
    page.mouse.down()
    page.mouse.move(box["right"] - 1, box["y"], steps=5)
    page.mouse.up()
    expect(page.locator(".span-selected")).to_have_text("Berlin")
    page.keyboard.press("3")
    expect(page.locator(".span-tagged")).to_have_count(2)
    expect(page.locator(".spans-list li")).to_have_count(2)
    if os.environ.get("CYNAPS_WIDGET_SCREENSHOTS"):  # set to refresh docs/img (not in CI)
        page.screenshot(path=str(SCREENSHOT))
    first = page.locator("#task-id").inner_text()
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    record = {r["id"]: r for r in ok("GET", f"/v1/projects/{single}/export")}[int(first)]
    assert record["annotations"][0]["result"]["value"] == [
        {**S(0, 13, "PER"), "text": "Angela Merkel"},
        {**S(34, 40, "LOC"), "text": "Berlin"},
    ]

    expert = ok("POST", "/v1/annotators", json={"name": "NER expert", "role": "expert"})
    sign_in(expert["api_key"], "/ui/review")
    expect(page.locator("#distribution .spans-answer")).to_have_count(2)
    expect(page.locator("#distribution .spans-answer").nth(0).locator(".span-tagged")).to_have_text(
        "Marie Curie"
    )
    expect(page.locator("#distribution .spans-answer").nth(1).locator(".span-tagged")).to_have_text(
        "Paris"
    )
    # the expert keeps "Marie Curie" (tagged by keyboard) and "Paris" and submits
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("1")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    expect(page.locator(".spans-widget .span-selected")).to_have_text("Paris")
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    record = ok("GET", f"/v1/projects/{disputed}/export")[0]
    assert record["annotations"][0]["result"]["value"] == [
        {**S(0, 11, "PER"), "text": "Marie Curie"},
        {**S(21, 26, "LOC"), "text": "Paris"},
    ]
    assert record["consensus"]["label_source"] == "expert"


EMOJI = "😀 Angela Merkel met Barack Obama."  # 😀 is one code point, two UTF-16 code units


def test_widget_offsets_are_code_points_after_an_emoji(platform: LocalPlatform, page) -> None:
    """Offsets on the wire are code points (Python ``str`` indices), not the UTF-16 code units
    of JavaScript strings: after an emoji the annotator's keyboard span "Angela Merkel" is stored
    as 2–15, and in review the annotators' stored spans are highlighted on the right words."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    page.route(
        "**/*",
        lambda r: r.continue_() if r.request.url.startswith(platform.base_url) else r.abort(),
    )
    page.set_default_timeout(10_000)
    customer = platform.create_customer("Spans emoji")

    def ok(method: str, path: str, key: str = customer, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        r = requests.request(method, platform.base_url + path, headers=headers, timeout=30, **kw)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def project(min_annotators: int) -> str:
        body = {"name": f"emoji {min_annotators}", "annotation_type": "spans", "labels": LABELS}
        quality = {**QUALITY, "min_annotators": min_annotators, "consensus_threshold": 0.66}
        pid = ok("POST", "/v1/projects", json={**body, "quality_settings": quality})["id"]
        ok("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": [{"data": {"text": EMOJI}}]})
        ok("POST", f"/v1/projects/{pid}/deposit/quote")
        ok("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
        ok("POST", f"/v1/projects/{pid}/start")
        return pid

    def sign_in(key: str, path: str) -> None:
        if page.url.startswith("http"):
            page.evaluate("sessionStorage.clear()")
        page.goto(platform.base_url + path)
        page.fill("#signin-key", key)
        page.click("#signin-form button[type=submit]")

    assert EMOJI[2:15] == "Angela Merkel" and EMOJI[20:32] == "Barack Obama"
    disputed = project(2)
    for name, answer in (("Emoji A", [S(2, 15, "PER")]), ("Emoji B", [S(20, 32, "PER")])):
        key = ok("POST", "/v1/annotators", json={"name": name})["api_key"]
        task = ok("GET", "/v1/annotator/next", key)
        ok("POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", key, json={"label": answer})
    assert ok("GET", f"/v1/projects/{disputed}/status")["disputed"] == 1
    single = project(1)

    # keyboard: → onto the emoji, → onto "Angela", Shift+→ over "Merkel", 1 = PER, Enter
    sign_in(ok("POST", "/v1/annotators", json={"name": "Emoji C"})["api_key"], "/ui/")
    expect(page.locator(".spans-text")).to_have_text(EMOJI)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    expect(page.locator(".span-selected")).to_have_text("Angela Merkel")
    page.keyboard.press("1")
    expect(page.locator(".span-tagged")).to_have_text("Angela Merkel")
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    (record,) = ok("GET", f"/v1/projects/{single}/export")
    assert record["annotations"][0]["result"]["value"] == [
        {**S(2, 15, "PER"), "text": "Angela Merkel"}
    ]

    # review: the stored code-point spans are drawn on their words; the expert's span is stored
    # in code points too (→ ×5 onto "Barack", Shift+→ over "Obama", 1 = PER)
    expert = ok("POST", "/v1/annotators", json={"name": "Emoji expert", "role": "expert"})
    sign_in(expert["api_key"], "/ui/review")
    answers = page.locator("#distribution .spans-answer")
    expect(answers).to_have_count(2)
    expect(answers.nth(0).locator(".span-tagged")).to_have_text("Angela Merkel")
    expect(answers.nth(1).locator(".span-tagged")).to_have_text("Barack Obama")
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    expect(page.locator(".spans-widget .span-selected")).to_have_text("Barack Obama")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_visible()
    (record,) = ok("GET", f"/v1/projects/{disputed}/export")
    assert record["annotations"][0]["result"]["value"] == [
        {**S(20, 32, "PER"), "text": "Barack Obama"}
    ]
    assert record["consensus"]["label_source"] == "expert"
