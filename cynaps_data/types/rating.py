"""Rating on an integer scale (Likert, quality scores): the value is one point of the scale.

Config (the project's ``labels``): ``{"min": 1, "max": 5, "labels": {"1": "poor", ...,
"5": "excellent"}, "tolerance": 1}`` — ``min < max`` integers with at most :data:`MAX_POINTS`
points, optional point labels (keys: points of the scale, as strings), ``tolerance`` >= 0 (the
rating range a task may have and still be agreed; default 1). Normalised to all four keys.

Value: an int on the scale (numpy ints and whole floats such as ``3.0`` are accepted and stored
as ints; bools, ``3.5``, strings and points off the scale are refused). Label Studio's value
shape ``{"rating": r}`` is accepted too and mapped: Label Studio's rating runs 1..maxRating
(``maxRating = max - min + 1``), so ``r`` is the point ``min + r - 1`` (identical on a 1..N
scale).

Consensus (:meth:`Rating.decide`, through :func:`cynaps_data.consensus.rating_consensus`): the
median of the ratings (with an even count, the mean of the two middle ones); the final value is
that centre rounded half up. Agreement is ``1 - spread / (half the scale width)`` (spread: the
mean absolute deviation from the median). The task is disputed when the ratings' range exceeds
``tolerance``.

Export: ``label``/``gold``/``expert_label`` int64 (pandas ``Int64``, ``datasets.Value("int64")``),
``score`` (float64, the consensus centre of the annotators' ratings), ``spread`` (float64),
``ratings`` (each annotator's rating, list of int64 in judgement order).
"""

from __future__ import annotations

import hashlib
import math
import numbers
import random
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..consensus.rating import aggregate_ratings, rating_consensus
from ..errors import ValidationError
from .base import Decision, VoteArrays, method_prefix

#: the most points a scale may have (-100..100 is 201 points: Snow et al.'s valence scale)
MAX_POINTS = 201
MAX_POINT_LABEL_LENGTH = 200
DEFAULT_TOLERANCE = 1
CONFIG_KEYS = ("min", "max", "labels", "tolerance")
VALUE_COLUMNS = ("label", "gold", "expert_label")


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _scale(config: Any) -> tuple[int, int]:
    return int(config["min"]), int(config["max"])


def _tolerance(config: Any) -> float:
    return float(config.get("tolerance", DEFAULT_TOLERANCE)) if config else DEFAULT_TOLERANCE


def round_half_up(x: Any) -> Any:
    """Round half up (2.5 -> 3), elementwise on arrays."""
    return np.floor(np.asarray(x, dtype="float64") + 0.5)


def ints(texts: Any) -> pa.Array:
    """JSON texts of ints as Arrow int64; ``""`` (none) and null are null."""
    arr = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    if not isinstance(arr, pa.Array):
        arr = pa.array(arr, pa.string())
    if len(arr) == 0:
        return pa.array([], pa.int64())
    arr = pc.if_else(pc.equal(arr.fill_null(""), ""), pa.scalar(None, pa.string()), arr)
    return pc.cast(arr, pa.int64())


class Rating:
    name = "rating"
    price_per_judgement_cents = 1000
    aggregation_methods = ("auto", "mean", "median")
    default_method = "auto"
    agreement_metrics = ("rating_alpha",)

    # -- config and values ------------------------------------------------------------------
    def validate_config(self, config: Any) -> dict:
        if not isinstance(config, dict):
            raise ValueError(
                'labels must be a rating scale {"min": 1, "max": 5} (optional "labels", '
                f'"tolerance"), got {type(config).__name__}'
            )
        unknown = [k for k in config if k not in CONFIG_KEYS]
        if unknown:
            raise ValueError(f"labels.{unknown[0]} is not a rating setting; use {CONFIG_KEYS}")
        for key in ("min", "max"):
            if key not in config:
                raise ValueError(f"labels.{key} is required (an integer)")
            if not _is_int(config[key]):
                raise ValueError(f"labels.{key} must be an integer, got {config[key]!r}")
        lo, hi = int(config["min"]), int(config["max"])
        if lo >= hi:
            raise ValueError(f"labels.min must be below labels.max, got {lo}..{hi}")
        if hi - lo + 1 > MAX_POINTS:
            raise ValueError(
                f"labels.min..max has {hi - lo + 1} points; at most {MAX_POINTS} are allowed"
            )
        names = config.get("labels") or {}
        if not isinstance(names, dict):
            raise ValueError('labels.labels must be an object {"<point>": "<text>"}')
        points: dict[str, str] = {}
        for key, text in names.items():
            try:
                point = int(key) if not isinstance(key, bool) else None
            except (TypeError, ValueError):
                point = None
            if point is None or str(point) != str(key).strip() or not lo <= point <= hi:
                raise ValueError(f"labels.labels[{key!r}] is not a point of the scale {lo}..{hi}")
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"labels.labels[{key!r}] must be a non-empty string")
            if len(text) > MAX_POINT_LABEL_LENGTH:
                raise ValueError(
                    f"labels.labels[{key!r}] is longer than {MAX_POINT_LABEL_LENGTH} characters"
                )
            points[str(point)] = text
        tolerance = config.get("tolerance", DEFAULT_TOLERANCE)
        if (
            isinstance(tolerance, (bool, np.bool_))
            or not isinstance(tolerance, numbers.Real)
            or not math.isfinite(tolerance)
            or tolerance < 0
        ):
            raise ValueError(f"labels.tolerance must be a number >= 0, got {tolerance!r}")
        # plain JSON numbers (a numpy tolerance is not JSON for orjson)
        tolerance = int(tolerance) if _is_int(tolerance) else float(tolerance)
        if isinstance(tolerance, float) and tolerance.is_integer():
            tolerance = int(tolerance)
        ordered = {str(p): points[str(p)] for p in range(lo, hi + 1) if str(p) in points}
        return {"min": lo, "max": hi, "labels": ordered, "tolerance": tolerance}

    def validate_value(self, value: Any, config: dict, data: Any = None) -> int:
        lo, hi = _scale(config)
        if isinstance(value, dict):  # Label Studio's shape: its rating runs 1..maxRating
            value = self.from_label_studio({"type": "rating", "value": value}, config)
        if isinstance(value, (bool, np.bool_)):
            raise ValueError(f"rating must be an integer on the scale {lo}..{hi}, got {value!r}")
        if isinstance(value, (float, np.floating)) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if not _is_int(value):
            raise ValueError(f"rating must be an integer on the scale {lo}..{hi}, got {value!r}")
        value = int(value)
        if not lo <= value <= hi:
            raise ValueError(f"rating {value} is outside the scale {lo}..{hi}")
        return value

    def to_label_studio(self, value: Any, config: dict) -> dict:
        return {"type": "rating", "value": {"rating": int(value) - int(config["min"]) + 1}}

    def from_label_studio(self, region: dict, config: dict) -> Any:
        value = region.get("value")
        if (
            region.get("type") != "rating"
            or not isinstance(value, dict)
            or set(value) != {"rating"}
        ):
            raise ValueError('not a Label Studio rating result {"rating": <1..maxRating>}')
        r = value["rating"]
        if isinstance(r, (float, np.floating)) and math.isfinite(r) and r.is_integer():
            r = int(r)
        if not _is_int(r):
            raise ValueError(f"Label Studio rating must be an integer, got {r!r}")
        return int(config["min"]) + int(r) - 1

    # -- platform consensus -----------------------------------------------------------------
    def decide(self, votes: list[Any], quality: dict, needed: int, config: Any = None) -> Decision:
        """The median of the ratings, rounded half up (an even count: the mean of the two
        middle ratings, then rounded), is final (``consensus``) when the ratings' range is
        within the config's ``tolerance``. Otherwise the task is disputed: an expert decides
        with ``enable_expert_review``; without it one more annotator at a time up to
        ``max_annotators``, then the rounded median is final (``majority``)."""
        if len(votes) < needed:
            return Decision("pending", needed)
        row = self._consensus_of([votes], config).iloc[0]
        agreement = float(row["agreement"])
        final = int(row["rounded"])
        if not row["disputed"]:
            return Decision("completed", needed, final, "consensus", agreement)
        if quality["enable_expert_review"]:
            return Decision("disputed", needed, None, None, agreement)
        if needed < quality["max_annotators"]:
            return Decision("pending", needed + 1, None, None, agreement)
        return Decision("completed", needed, final, "majority", agreement)

    def _consensus_of(self, per_task: list[list[Any]], config: Any) -> pd.DataFrame:
        task = np.repeat(np.arange(len(per_task)), [len(v) for v in per_task])
        flat = [float(x) for v in per_task for x in v]
        frame = pd.DataFrame({"task": task, "worker": np.arange(len(flat)), "value": flat})
        scale = _scale(config) if config else None
        return rating_consensus(frame, tolerance=_tolerance(config), scale=scale)

    def summarize(self, votes: list[Any], config: dict | None) -> dict[str, Any]:
        """``rating_counts`` ({point: count} over every point of the scale, or the voted points
        in ascending order when ``config`` is None), ``mean``, ``median`` and ``spread`` (mean
        absolute deviation from the median); None without votes."""
        if config is None:
            points = sorted(set(int(v) for v in votes))
        else:
            lo, hi = _scale(config)
            points = list(range(lo, hi + 1))
        counts = {str(p): 0 for p in points}
        for v in votes:
            counts[str(int(v))] = counts.get(str(int(v)), 0) + 1
        if not votes:
            return {"rating_counts": counts, "mean": None, "median": None, "spread": None}
        row = self._consensus_of([votes], config).iloc[0]
        return {
            "rating_counts": counts,
            "mean": float(row["mean"]),
            "median": float(row["score"]),
            "spread": float(row["spread"]),
        }

    # -- export -----------------------------------------------------------------------------
    def wide_columns(self, votes: VoteArrays, config: dict) -> dict[str, pa.Array]:
        """``gold``, ``label``, ``expert_label`` int64; ``agreement`` (1 - spread / half the
        scale width); ``confidence`` (the share of the annotators' ratings within ``tolerance``
        of ``label``); ``score`` (median of the ratings), ``spread`` (mean absolute deviation
        from it) float64; ``ratings`` list<int64> in judgement order. Null without votes."""
        n = votes.n_tasks
        values = ints(votes.values)
        ys = values.to_numpy(zero_copy_only=False).astype("float64")
        no_votes = votes.n_votes == 0
        score = np.full(n, np.nan)
        spread = np.full(n, np.nan)
        agreement = np.full(n, np.nan)
        if len(ys):
            frame = pd.DataFrame({"task": votes.pos, "worker": np.arange(len(ys)), "value": ys})
            out = rating_consensus(frame, tolerance=_tolerance(config), scale=_scale(config))
            where = out.index.to_numpy(dtype="int64")
            score[where] = out["score"].to_numpy()
            spread[where] = out["spread"].to_numpy()
            agreement[where] = out["agreement"].to_numpy()
        label = ints(votes.final)
        final = label.to_numpy(zero_copy_only=False).astype("float64")  # NaN where null
        near = np.abs(ys - final[votes.pos]) <= _tolerance(config) + 1e-9
        close = np.bincount(votes.pos, weights=near.astype("float64"), minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            confidence = np.where(np.isnan(final) | no_votes, np.nan, close / votes.n_votes)
        offsets = np.concatenate([[0], np.cumsum(votes.n_votes)]).astype("int32")
        return {
            "gold": ints(votes.gold),
            "label": label,
            "agreement": pa.array(agreement, pa.float64(), from_pandas=True),
            "confidence": pa.array(confidence, pa.float64(), from_pandas=True),
            "score": pa.array(score, pa.float64(), from_pandas=True),
            "spread": pa.array(spread, pa.float64(), from_pandas=True),
            "ratings": pa.ListArray.from_arrays(pa.array(offsets), values),
            "expert_label": ints(votes.expert),
        }

    def long_label(self, values: pa.Array, config: dict) -> pa.Array:
        return ints(values)

    def features(self, config: dict) -> dict[str, Any]:
        import datasets

        out = {c: datasets.Value("int64") for c in VALUE_COLUMNS}
        out.update(
            score=datasets.Value("float64"),
            spread=datasets.Value("float64"),
            ratings=datasets.Sequence(datasets.Value("int64")),
        )
        return out

    # -- client side ------------------------------------------------------------------------
    def aggregate(
        self, votes: pd.DataFrame, method: str, config: Any, **params: Any
    ) -> pd.DataFrame:
        """Re-aggregate the annotators' ratings (``votes``: task, worker, label) with
        ``method`` (``auto`` = the rater model, ``mean``, ``median``). Returns a frame indexed
        by task: ``<method>_score`` (float64), ``<method>_label`` (Int64, the score rounded
        half up and clipped to the scale) and, for the rater model, ``<method>_lower`` /
        ``<method>_upper`` (float64, the posterior interval; ``level`` 0.9 by default)."""
        key = method_prefix(method) if isinstance(method, str) else None
        if key not in self.aggregation_methods:
            raise ValidationError(
                f"unknown rating method {method!r}; choose one of {list(self.aggregation_methods)}",
                param="method",
            )
        if "scale" in params:
            raise ValidationError("scale comes from the project's config", param="scale")
        lo, hi = _scale(config)
        long = votes.dropna(subset=["label"])
        columns = [f"{key}_score", f"{key}_label"]
        if key == "auto":
            columns[1:1] = [f"{key}_lower", f"{key}_upper"]
        if long.empty:
            aggregate_ratings(  # an unknown parameter still fails
                pd.DataFrame({"task": [0], "worker": ["w"], "value": [float(lo)]}),
                key,
                scale=(lo, hi),
                **params,
            )
            empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
            empty[f"{key}_label"] = empty[f"{key}_label"].astype("Int64")
            return empty.rename_axis("task")
        frame = pd.DataFrame(
            {
                "task": long["task"].to_numpy(),
                "worker": long["worker"].astype(str).to_numpy(),
                "value": long["label"].astype("float64").to_numpy(),
            }
        )
        model = aggregate_ratings(frame, key, scale=(lo, hi), **params)
        score = model.scores_.astype("float64")
        out = pd.DataFrame({f"{key}_score": score})
        if key == "auto":
            out[f"{key}_lower"] = model.intervals_["lower"].astype("float64")
            out[f"{key}_upper"] = model.intervals_["upper"].astype("float64")
        label = np.clip(round_half_up(score.to_numpy()), lo, hi)
        out[f"{key}_label"] = pd.array(label.astype("int64"), dtype="Int64")
        out.index.name = "task"
        return out[columns]

    def to_pandas_columns(self, frame: pd.DataFrame, config: Any) -> pd.DataFrame:
        """``label``, ``gold``, ``expert_label`` as pandas ``Int64`` (nullable int); ``score``
        and ``spread`` float64; ``ratings`` lists of Python ints."""
        for column in VALUE_COLUMNS:
            if column in frame.columns:
                frame[column] = frame[column].astype("Int64")
        for column in ("score", "spread"):
            if column in frame.columns:
                frame[column] = frame[column].astype("float64")
        if "ratings" in frame.columns:
            frame["ratings"] = [
                [int(x) for x in v] if v is not None and not isinstance(v, float) else []
                for v in frame["ratings"].tolist()
            ]
        return frame

    # -- workbench --------------------------------------------------------------------------
    def widget(self) -> Traversable:
        return resources.files(__package__).joinpath("widgets/rating.js")

    # -- sandbox workforce ------------------------------------------------------------------
    def pseudo_truth(self, data_json: str, config: dict) -> int:
        """A point of the scale picked by a hash of the task data."""
        lo, hi = _scale(config)
        digest = hashlib.sha256(data_json.encode()).digest()
        return lo + int.from_bytes(digest[:8], "big") % (hi - lo + 1)

    def simulate(
        self, truth: Any, config: dict, accuracy: float, rng: random.Random, data: Any = None
    ) -> int:
        """The truth plus the annotator's bias plus noise, rounded half up and clipped to the
        scale. Both grow with ``1 - accuracy`` and the scale's width ``w``: the noise is
        ``N(0, (1 - accuracy) * w / 2)`` drawn from ``rng``; the bias (leniency > 0, severity
        < 0) is up to ``(1 - accuracy) * w / 2`` in size, fixed per annotator: it is derived
        from a hash of the member's own accuracy (the only per-member input ``simulate``
        gets; members with exactly equal accuracies share a bias)."""
        lo, hi = _scale(config)
        width = hi - lo
        slack = max(0.0, 1.0 - float(accuracy)) * width / 2
        digest = hashlib.sha256(repr(float(accuracy)).encode()).digest()
        bias = (int.from_bytes(digest[:8], "big") / 2**64 * 2 - 1) * slack
        answer = float(truth) + bias + rng.gauss(0.0, slack) if slack else float(truth)
        return int(min(hi, max(lo, math.floor(answer + 0.5))))


TYPE = Rating()

__all__ = ["Rating", "TYPE"]
