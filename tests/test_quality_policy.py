"""The per-task consensus policy (quality settings and the classification type's decision)."""

from __future__ import annotations

from cynaps_data.server.services.quality import validate_quality
from cynaps_data.types import get_type

decide = get_type("classification").decide

LABELS = [str(d) for d in range(10)]


def test_a_final_tie_goes_to_the_label_voted_first_not_the_label_declared_first():
    """A tie broken towards the first declared label would pile every unresolved task of a
    10-class project onto "0" (a biased label that hurts any model trained on it); the first
    vote among the tied labels is as deterministic and favours no class."""
    quality = validate_quality(
        {"min_annotators": 3, "enable_expert_review": False, "max_annotators": 3}
    )
    three_way = decide(["7", "2", "0"], quality, needed=3)
    assert (three_way.status, three_way.final_label, three_way.label_source) == (
        "completed",
        "7",
        "majority",
    )
    assert decide(["5", "9", "9", "5"], {**quality, "max_annotators": 4}, 4).final_label == "5"
    agreed = decide(["3", "3", "1"], quality, needed=3)
    assert (agreed.final_label, agreed.label_source) == ("3", "consensus")
