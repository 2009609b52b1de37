"""Quality settings and the per-task consensus policy (DESIGN §2).

After ``min_annotators`` judgements the top answer's share is compared with
``consensus_threshold``. At or above it (and not tied) the task is final (``consensus``). Below
it the task is *disputed*: with ``enable_expert_review`` it waits for an expert (``expert``);
without, it gets one more annotator at a time up to ``max_annotators`` and is then finalised with
the plurality label (``majority``; a tie goes to the tied label voted first, which favours
no class, unlike the first declared label would).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ...wire import MAX_ANNOTATORS, MIN_ANNOTATORS
from ..problems import invalid

DEFAULTS = {
    "min_annotators": 3,
    "consensus_threshold": 0.66,
    "enable_expert_review": True,
    "max_annotators": None,  # default: min_annotators + 2
}


def validate_quality(raw: Any) -> dict:
    """Fill defaults and check ranges; unknown keys are an error naming the key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise invalid("quality_settings must be an object", param="quality_settings")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise invalid(
            f"Unknown quality setting {unknown[0]!r}; known: {', '.join(DEFAULTS)}",
            param=f"quality_settings.{unknown[0]}",
        )
    q = {**DEFAULTS, **raw}
    m = q["min_annotators"]
    if isinstance(m, bool) or not isinstance(m, int) or not MIN_ANNOTATORS <= m <= MAX_ANNOTATORS:
        raise invalid(
            f"min_annotators must be an integer from {MIN_ANNOTATORS} to {MAX_ANNOTATORS}, got {m!r}",
            param="quality_settings.min_annotators",
        )
    t = q["consensus_threshold"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
        raise invalid(
            f"consensus_threshold must be a number in (0, 1], got {t!r}",
            param="quality_settings.consensus_threshold",
        )
    if not isinstance(q["enable_expert_review"], bool):
        raise invalid(
            "enable_expert_review must be true or false",
            param="quality_settings.enable_expert_review",
        )
    mx = q["max_annotators"]
    if mx is None:
        mx = min(m + 2, MAX_ANNOTATORS)
    if isinstance(mx, bool) or not isinstance(mx, int) or not m <= mx <= MAX_ANNOTATORS:
        raise invalid(
            f"max_annotators must be an integer from min_annotators to {MAX_ANNOTATORS}, got {mx!r}",
            param="quality_settings.max_annotators",
        )
    q["max_annotators"] = mx
    q["consensus_threshold"] = float(t)
    return q


@dataclass(frozen=True)
class Decision:
    """What the policy decided for one task after a judgement."""

    status: str  # pending | disputed | completed
    needed: int
    final_label: Any = None
    label_source: str | None = None
    agreement: float | None = None


def decide(votes: list[Any], quality: dict, needed: int) -> Decision:
    """Apply the consensus policy to a task's annotator judgements so far (``votes`` in the order
    they were made: a final tie goes to the tied label voted first)."""
    if len(votes) < needed:
        return Decision("pending", needed)
    counts = Counter(votes)  # insertion order = the order of the first vote for each label
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: ties keep vote order
    top_label, top_count = ranked[0]
    share = top_count / len(votes)
    tied = len(ranked) > 1 and ranked[1][1] == top_count
    if share >= quality["consensus_threshold"] and not tied:
        return Decision("completed", needed, top_label, "consensus", share)
    if quality["enable_expert_review"]:
        return Decision("disputed", needed, None, None, share)
    if needed < quality["max_annotators"]:
        return Decision("pending", needed + 1, None, None, share)
    return Decision("completed", needed, top_label, "majority", share)
