"""Quality settings: the project's consensus policy knobs (DESIGN §2), validated.

``min_annotators`` judgements per task first; ``consensus_threshold`` the agreement at or above
which the consensus is final; below it a task is *disputed* and waits for an expert when
``enable_expert_review``, else gets one more annotator at a time up to ``max_annotators`` (each
one reserved from the customer's balance when escalated, ``billing.reserve_escalation``; if the
balance cannot cover it the task is finalised with the plurality label instead). How a
type measures agreement and picks the final value is its ``decide`` hook
(``cynaps_data.types``; the decision for one task is ``services.votes.decide``).

``mode``: ``"fixed"`` (the above, the default) or ``"adaptive"`` (issue 18): after
``min_annotators`` judgements a task gets one more at a time only while its posterior confidence
from the project's online skill model is below ``target_confidence``, up to ``max_annotators``;
then expert review when ``enable_expert_review``, else the posterior label (``majority``). The
deposit covers ``max_annotators`` per task. Only types with the ``adaptive_classes`` hook support
it (``services.overlap``); ``consensus_threshold`` is not used in adaptive mode.
"""

from __future__ import annotations

from typing import Any

from ...wire import MAX_ANNOTATORS, MIN_ANNOTATORS
from ..problems import invalid

DEFAULTS = {
    "min_annotators": 3,
    "consensus_threshold": 0.66,
    "enable_expert_review": True,
    "max_annotators": None,  # default: min_annotators + 2
    "mode": "fixed",  # fixed | adaptive
    "target_confidence": 0.95,  # adaptive mode: stop once the posterior confidence reaches it
}
MODES = ("fixed", "adaptive")


def is_adaptive(quality: dict) -> bool:
    """Whether validated (or older, pre-``mode``) quality settings ask for adaptive overlap."""
    return quality.get("mode") == "adaptive"


def covered_judgements(quality: dict) -> int:
    """Annotator judgements per task the deposit covers: ``min_annotators``, or
    ``max_annotators`` in adaptive mode."""
    return quality["max_annotators"] if is_adaptive(quality) else quality["min_annotators"]


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
    if q["mode"] not in MODES:
        raise invalid(
            f"mode must be one of {', '.join(MODES)}, got {q['mode']!r}",
            param="quality_settings.mode",
        )
    c = q["target_confidence"]
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < 1:
        raise invalid(
            f"target_confidence must be a number in (0, 1), got {c!r}",
            param="quality_settings.target_confidence",
        )
    q["target_confidence"] = float(c)
    q["consensus_threshold"] = float(t)
    return q
