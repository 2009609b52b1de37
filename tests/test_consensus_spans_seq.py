"""Sequence (BIO) consensus: the IOB2 utilities of cynaps_data.consensus.bio with hand-worked
cases, and the crowd sequence aggregators of cynaps_data.consensus.spans_seq."""

from __future__ import annotations

import doctest
import random

import numpy as np
import pytest

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
