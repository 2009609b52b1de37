"""Single-label classification: the value is one of the project's labels.

Config: a non-empty list of unique non-empty strings (the labels, in declared order).
Value: one label (str). Label Studio: a ``choices`` region with exactly one choice.
Consensus: after ``min_annotators`` votes the top label's share is compared with
``consensus_threshold`` (:meth:`Classification.decide`). Export: ``label``/``gold``/
``expert_label`` are dictionaries over the labels in declared order (pandas categoricals,
``datasets.ClassLabel``), ``vote_distribution`` a struct of float64 shares per label.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from .base import Decision, VoteArrays, method_prefix

MAX_LABELS = 1000
MAX_LABEL_LENGTH = 200


def label_codes(json_values: Any, labels: list) -> np.ndarray:
    """int32 codes of JSON-text values in ``labels`` order; -1 for ``""``, null or anything else."""
    if len(json_values) == 0:
        return np.zeros(0, dtype="int32")
    if isinstance(json_values, pa.ChunkedArray):
        json_values = json_values.combine_chunks()
    elif not isinstance(json_values, pa.Array):
        json_values = pa.array(json_values, pa.string())
    encoded = json_values.dictionary_encode()
    position = {label: i for i, label in enumerate(labels) if isinstance(label, (str, int, float))}
    lookup = np.array(
        [
            position.get(orjson.loads(text), -1) if text else -1
            for text in encoded.dictionary.to_pylist()
        ]
        + [-1],
        dtype="int32",
    )
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    indices = np.where(
        encoded.indices.is_null().to_numpy(zero_copy_only=False), len(lookup) - 1, indices
    )
    return lookup[indices.astype("int64")]


def dictionary(codes: np.ndarray, names: list) -> pa.DictionaryArray:
    """A dictionary array over ``names`` (in that order); code -1 is null."""
    mask = codes < 0
    indices = pa.array(np.where(mask, 0, codes).astype("int32"), mask=mask)
    return pa.DictionaryArray.from_arrays(indices, pa.array([str(n) for n in names], pa.string()))


class Classification:
    name = "classification"
    price_per_judgement_cents = 1500
    aggregation_methods = (
        "auto",
        "mv",
        "ds",
        "one_coin",
        "glad",
        "mace",
        "ebcc",
    )
    default_method = "auto"
    agreement_metrics = (
        "percent_agreement",
        "fleiss_kappa",
        "cohen_kappa",
        "cohen_kappa_matrix",
        "krippendorff_alpha",
    )

    # -- config and values ------------------------------------------------------------------
    def validate_config(self, config: Any) -> list[str]:
        if not isinstance(config, list) or not config:
            raise ValueError("labels must be a non-empty list of strings")
        if len(config) > MAX_LABELS:
            raise ValueError(f"labels has {len(config)} entries; at most {MAX_LABELS} are allowed")
        seen: set[str] = set()
        for i, label in enumerate(config):
            if not isinstance(label, str) or not label.strip():
                raise ValueError(f"labels[{i}] must be a non-empty string, got {label!r}")
            if len(label) > MAX_LABEL_LENGTH:
                raise ValueError(f"labels[{i}] is longer than {MAX_LABEL_LENGTH} characters")
            if label in seen:
                raise ValueError(f"labels[{i}] repeats {label!r}; labels must be unique")
            seen.add(label)
        return list(config)

    def validate_value(self, value: Any, config: list, data: Any = None) -> str:
        if isinstance(value, dict) and "choices" in value:  # Label Studio's shape
            choices = value["choices"]
            value = choices[0] if isinstance(choices, list) and len(choices) == 1 else choices
        if not isinstance(value, str) or value not in config:
            raise ValueError(f"label {value!r} is not one of the project's labels {config}")
        return value

    def to_label_studio(self, value: Any, config: list) -> dict:
        return {
            "type": "choices",
            "value": {"choices": value if isinstance(value, list) else [value]},
        }

    def from_label_studio(self, region: dict, config: list) -> Any:
        if region.get("type") != "choices":
            raise ValueError("not a 'choices' result")
        choices = (region.get("value") or {}).get("choices")
        return choices[0] if isinstance(choices, list) and len(choices) == 1 else choices

    # -- platform consensus -----------------------------------------------------------------
    def decide(self, votes: list[Any], quality: dict, needed: int, config: Any = None) -> Decision:
        """After ``needed`` votes the top label's share is compared with
        ``consensus_threshold``. At or above it (and not tied) the task is final
        (``consensus``). Below it the task is *disputed*: with ``enable_expert_review`` it waits
        for an expert; without, it gets one more annotator at a time up to ``max_annotators``
        and is then finalised with the plurality label (``majority``; a tie goes to the tied
        label voted first, which favours no class, unlike the first declared label would)."""
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

    def adaptive_classes(self, config: list) -> list[str]:
        """Adaptive overlap's answer space (``AnnotationType`` optional hook): the labels, in
        declared order."""
        return list(config)

    def summarize(self, votes: list[Any], config: list | None) -> dict[str, Any]:
        """``{"vote_distribution": {label: share}}`` over every declared label, or over the
        voted labels in first-vote order when ``config`` is ``None`` (``{}`` without votes)."""
        counts = Counter(votes)
        n = len(votes)
        labels = counts if config is None else config
        return {
            "vote_distribution": {label: counts.get(label, 0) / n for label in labels} if n else {}
        }

    # -- export -----------------------------------------------------------------------------
    def wide_columns(self, votes: VoteArrays, config: list) -> dict[str, pa.Array]:
        """``gold``, ``label``, ``expert_label`` dictionaries over the labels; ``agreement``
        (the top label's share of the votes) and ``confidence`` (the final label's share);
        ``vote_distribution`` struct of float64 shares per label (null without votes)."""
        labels = list(config)
        n, k = votes.n_tasks, len(labels)
        codes = label_codes(votes.values, labels)
        known = codes >= 0
        counts = np.bincount(votes.pos[known] * k + codes[known], minlength=n * k).reshape(n, k)
        n_votes = votes.n_votes
        no_votes = n_votes == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = counts / n_votes[:, None]
            agreement = np.where(
                no_votes, np.nan, counts.max(axis=1, initial=0) / np.maximum(n_votes, 1)
            )
        final = label_codes(votes.final, labels)
        picked = counts[np.arange(n), np.maximum(final, 0)] if n else np.zeros(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            confidence = np.where((final >= 0) & ~no_votes, picked / np.maximum(n_votes, 1), np.nan)
        share_fields = [pa.array(shares[:, i], pa.float64(), mask=no_votes) for i in range(k)]
        distribution = (
            pa.StructArray.from_arrays(
                share_fields, names=[str(x) for x in labels], mask=pa.array(no_votes)
            )
            if k
            else pa.nulls(n, pa.struct([]))
        )
        return {
            "gold": dictionary(label_codes(votes.gold, labels), labels),
            "label": dictionary(final, labels),
            "agreement": pa.array(agreement, pa.float64(), from_pandas=True),
            "confidence": pa.array(confidence, pa.float64(), from_pandas=True),
            "vote_distribution": distribution,
            "expert_label": dictionary(label_codes(votes.expert, labels), labels),
        }

    def long_label(self, values: pa.Array, config: list) -> pa.Array:
        return dictionary(label_codes(values, list(config)), list(config))

    def valid_values(self, values: pa.Array, config: list) -> np.ndarray | None:
        """Vectorised check of a column of values (the client's upload of gold labels): a bool
        mask (null counts as valid) for a string column, else ``None`` (checked row by row)."""
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            return None
        import pyarrow.compute as pc

        allowed = pa.array([str(x) for x in config], type=values.type)
        ok = pc.or_(pc.is_null(values), pc.is_in(values, value_set=allowed))
        return ok.to_numpy(zero_copy_only=False)

    def aggregate(self, votes: Any, method: Any, config: list, **params: Any) -> Any:
        """Any :mod:`cynaps_data.consensus` method over the votes: ``<prefix>_label``
        (Categorical over the labels), ``<prefix>_confidence`` (float64, the top posterior)
        and ``<prefix>_proba.<label>`` (float64 posterior per label: soft labels)."""
        import pandas as pd

        from ..consensus import aggregate, get_aggregator

        get_aggregator(method, **params)  # an unknown method or parameter fails even with no votes
        labels = list(config)
        if votes.empty:
            probas = pd.DataFrame(
                np.empty((0, len(labels))), index=pd.Index([], name="task"), columns=labels
            )
        else:
            long = pd.DataFrame(
                {
                    "task": votes["task"].to_numpy(),
                    "worker": votes["worker"].astype(str).to_numpy(),
                    "label": votes["label"].astype(object).to_numpy(),
                }
            )
            probas = aggregate(long, method, labels=labels, **params).probas.reindex(columns=labels)
        values = probas.to_numpy(dtype="float64")
        missing = np.isnan(values).all(axis=1)
        best = np.where(missing, -1, np.nan_to_num(values, nan=-1.0).argmax(axis=1))
        prefix = method_prefix(method)
        out = pd.DataFrame(
            values, index=probas.index, columns=[f"{prefix}_proba.{label}" for label in labels]
        )
        out.insert(0, f"{prefix}_label", pd.Categorical.from_codes(best, categories=labels))
        top = np.fmax.reduce(np.where(missing[:, None], 0, values), axis=1, initial=0.0)
        out.insert(1, f"{prefix}_confidence", np.where(missing, np.nan, top).astype("float64"))
        return out

    def features(self, config: list) -> dict[str, Any]:
        import datasets

        names = [str(x) for x in config]
        return {c: datasets.ClassLabel(names=names) for c in ("label", "gold", "expert_label")}

    # -- workbench --------------------------------------------------------------------------
    def widget(self) -> Traversable:
        return resources.files(__package__).joinpath("widgets/classification.js")

    # -- sandbox workforce ------------------------------------------------------------------
    def pseudo_truth(self, data_json: str, config: list) -> Any:
        """A label picked by a hash of the task data."""
        digest = hashlib.sha256(data_json.encode()).digest()
        return config[int.from_bytes(digest[:8], "big") % len(config)]

    def simulate(
        self, truth: Any, config: list, accuracy: float, rng: random.Random, data: Any = None
    ) -> Any:
        """The truth with probability ``accuracy``, else another label chosen uniformly."""
        if rng.random() < accuracy or len(config) == 1:
            return truth
        return rng.choice([label for label in config if label != truth])


TYPE = Classification()
