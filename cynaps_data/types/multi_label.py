"""Multi-label classification: the value is a set of the project's labels (possibly empty).

Config: ``{"labels": [...], "min_labels": 0, "max_labels": null}`` (a plain list of labels is
accepted and normalised to that object). Value: a JSON list of unique labels, stored in the
config's declared order; ``min_labels <= len <= max_labels``. Label Studio: a ``choices``
region (``<Choices choice="multiple">``) holding the chosen labels, both ways.

Consensus (:meth:`MultiLabel.decide`): a label is in the final set when its vote share reaches
``consensus_threshold`` (:func:`cynaps_data.consensus.share_consensus`); the task's agreement
is the mean pairwise Jaccard of its answers (:func:`cynaps_data.consensus.set_agreement`);
below the threshold the task is disputed. Export: ``label``/``gold``/``expert_label`` are Arrow
``list<string>`` (pandas: lists of str; ``datasets``: ``Sequence(ClassLabel)``),
``vote_share`` a struct of float64 shares per label (pandas: ``vote_share.<label>`` columns).
"""

from __future__ import annotations

import ast
import hashlib
import random
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ..errors import ValidationError
from .base import Decision, VoteArrays
from .classification import TYPE as CLASSIFICATION

if TYPE_CHECKING:  # pandas and the consensus engine (scipy) are imported where used
    import pandas as pd

CONFIG_KEYS = ("labels", "min_labels", "max_labels")
#: the client-side methods: the default model, and binary relevance with these binary methods
METHODS = ("auto", "mv", "ds", "ebcc")


def labels_of(config: Any) -> list[str]:
    """The declared labels of a multi-label config (object or plain list form)."""
    return list(config["labels"] if isinstance(config, dict) else config)


def merged_order(votes: list[list]) -> list:
    """The labels voted, in an order consistent with every vote's (each vote is stored in the
    declared order): a topological merge, ties broken by first appearance. Equals the declared
    order whenever the votes determine it (used where the config is not at hand)."""
    first: dict[Any, int] = {}
    after: dict[Any, set] = {}
    for vote in votes:
        for i, label in enumerate(vote):
            first.setdefault(label, len(first))
            after.setdefault(label, set())
            if i:
                after[vote[i - 1]].add(label)
    indegree = dict.fromkeys(first, 0)
    for successors in after.values():
        for label in successors:
            indegree[label] += 1
    order: list = []
    ready = sorted((lab for lab, d in indegree.items() if d == 0), key=first.__getitem__)
    while ready:
        label = ready.pop(0)
        order.append(label)
        for nxt in after[label]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
        ready.sort(key=first.__getitem__)
    return order


def _sets_from_json(texts: Any, labels: list) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot rows (bool, ``len(texts) x len(labels)``) of JSON-text label lists and a mask
    of the rows that hold a value (``""``/null: none). Each distinct text is parsed once."""
    k = len(labels)
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], pa.string())
    elif not isinstance(texts, pa.Array):
        texts = pa.array(texts, pa.string())
    if len(texts) == 0:
        return np.zeros((0, k), bool), np.zeros(0, bool)
    encoded = texts.dictionary_encode()
    position = {label: i for i, label in enumerate(labels)}
    distinct = encoded.dictionary.to_pylist()
    rows = np.zeros((len(distinct) + 1, k), bool)
    present = np.zeros(len(distinct) + 1, bool)
    for d, text in enumerate(distinct):
        if not text:
            continue
        value = orjson.loads(text)
        if isinstance(value, list):
            present[d] = True
            for label in value:
                if label in position:
                    rows[d, position[label]] = True
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    nulls = encoded.indices.is_null().to_numpy(zero_copy_only=False)
    indices = np.where(nulls, len(distinct), indices).astype("int64")
    return rows[indices], present[indices]


def _list_array(hot: np.ndarray, present: np.ndarray, labels: list) -> pa.Array:
    """``list<string>`` rows of the labels set in ``hot`` (declared order); null where not
    ``present``."""
    counts = hot.sum(axis=1).astype("int32")
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype("int32")
    _, cols = np.nonzero(hot)
    values = pa.array(np.asarray([str(x) for x in labels], dtype=object)[cols], pa.string())
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), values, mask=pa.array(~present.astype(bool))
    )


def _jaccard_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Jaccard similarity of two bool matrices (two empty sets: 1)."""
    inter = (a & b).sum(axis=1)
    union = (a | b).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def _parse_list_text(text: str, column: str, row: Any) -> list | None:
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
    if not isinstance(value, list):
        raise ValidationError(f"{column}[{row!r}] is not a list of labels: {text!r}", param=column)
    return value


def _mean_pairwise_jaccard(pos: np.ndarray, hot: np.ndarray, n_votes: np.ndarray) -> np.ndarray:
    """Per task, the mean Jaccard over its answer pairs (``consensus.set_agreement``'s
    ``jaccard``; 1.0 for one answer, NaN for none). ``pos`` is sorted (task, then judgement
    order), so the pairs are the answers ``d`` rows apart within a task, d = 1 .. max - 1;
    vectorised per d (a test checks it against set_agreement)."""
    n = len(n_votes)
    total = np.zeros(n)
    for d in range(1, int(n_votes.max(initial=0))):
        same = pos[:-d] == pos[d:]
        if not same.any():
            break
        first = np.flatnonzero(same)
        total += np.bincount(
            pos[first], weights=_jaccard_rows(hot[first], hot[first + d]), minlength=n
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        pairs = n_votes * (n_votes - 1) / 2
        return np.where(n_votes == 0, np.nan, np.where(n_votes == 1, 1.0, total / pairs))


def multi_hot(frame: pd.DataFrame, column: str = "label", labels: Any = None) -> pd.DataFrame:
    """A multi-label export's ``column`` (lists of labels; JSON text after a CSV round trip)
    as a float64 multi-hot DataFrame, index = ``frame``'s, columns = the labels in declared
    order (``labels`` or the project's, from ``frame.attrs["cynaps"]``). A row without a value
    (null) is NaN everywhere. Public as :func:`cynaps_data.io.multi_hot`."""
    import pandas as pd

    if labels is None:
        config = (frame.attrs.get("cynaps") or {}).get("labels")
        if config is None:
            raise ValidationError(
                "the frame carries no project labels (attrs['cynaps']); pass labels=",
                param="labels",
            )
        labels = labels_of(config)
    labels = [str(x) for x in labels_of(labels)]
    if column not in frame.columns:
        raise ValidationError(f"no column {column!r} in the frame", param="column")
    position = {label: i for i, label in enumerate(labels)}
    out = np.zeros((len(frame), len(labels)), dtype="float64")
    for row, value in enumerate(frame[column].tolist()):
        if isinstance(value, str):  # CSV: JSON (io.to_csv) or a Python list's repr (pandas)
            value = _parse_list_text(value, column, frame.index[row])
        if value is None or (isinstance(value, float) and np.isnan(value)):
            out[row] = np.nan
            continue
        for label in value:
            if str(label) not in position:
                raise ValidationError(
                    f"{column}[{frame.index[row]!r}] holds {label!r}, not one of {labels}",
                    param=column,
                )
            out[row, position[str(label)]] = 1.0
    return pd.DataFrame(out, index=frame.index, columns=pd.Index(labels, name="label"))


class MultiLabel:
    name = "multi_label"
    price_per_judgement_cents = 2000
    aggregation_methods = METHODS
    default_method = "auto"
    agreement_metrics = ("set_agreement", "krippendorff_alpha_sets")

    # -- config and values ------------------------------------------------------------------
    def validate_config(self, config: Any) -> dict:
        if isinstance(config, list):
            config = {"labels": config}
        if not isinstance(config, dict) or "labels" not in config:
            raise ValueError(
                'labels must be a list of labels or {"labels": [...], "min_labels": 0, '
                '"max_labels": null}'
            )
        unknown = [k for k in config if k not in CONFIG_KEYS]
        if unknown:
            raise ValueError(f"labels.{unknown[0]} is not a multi_label setting {CONFIG_KEYS}")
        labels = CLASSIFICATION.validate_config(config["labels"])
        low, high = config.get("min_labels", 0), config.get("max_labels")
        # numpy ints (a count computed with pandas) are integers too; stored as JSON ints
        low = int(low) if isinstance(low, np.integer) else low
        high = int(high) if isinstance(high, np.integer) else high
        if isinstance(low, bool) or not isinstance(low, int) or not 0 <= low <= len(labels):
            raise ValueError(f"labels.min_labels must be an integer in 0..{len(labels)}")
        if high is not None and (
            isinstance(high, bool)
            or not isinstance(high, int)
            or not max(low, 1) <= high <= len(labels)
        ):
            raise ValueError(
                f"labels.max_labels must be null or an integer in {max(low, 1)}..{len(labels)}"
            )
        return {"labels": labels, "min_labels": low, "max_labels": high}

    def validate_value(self, value: Any, config: dict, data: Any = None) -> list[str]:
        if isinstance(value, dict) and "choices" in value:  # Label Studio's shape
            value = value["choices"]
        labels = config["labels"]
        if not isinstance(value, list):
            raise ValueError(f"label must be a list of the project's labels, got {value!r}")
        if len(value) > len(labels):
            raise ValueError(f"label has {len(value)} entries; the project has {len(labels)}")
        position = {label: i for i, label in enumerate(labels)}
        seen: set = set()
        for i, label in enumerate(value):
            if not isinstance(label, str) or label not in position:
                raise ValueError(f"label[{i}] {label!r} is not one of the project's labels")
            if label in seen:
                raise ValueError(f"label[{i}] repeats {label!r}")
            seen.add(label)
        low, high = config["min_labels"], config["max_labels"]
        if len(value) < low:
            raise ValueError(f"label has {len(value)} labels; at least {low} are required")
        if high is not None and len(value) > high:
            raise ValueError(f"label has {len(value)} labels; at most {high} are allowed")
        return sorted(value, key=position.__getitem__)

    def to_label_studio(self, value: Any, config: dict) -> dict:
        return {"type": "choices", "value": {"choices": list(value)}}

    def from_label_studio(self, region: dict, config: dict) -> Any:
        choices = (region.get("value") or {}).get("choices")
        if region.get("type") != "choices" or not isinstance(choices, list):
            raise ValueError("not a 'choices' result")
        return choices

    # -- platform consensus -----------------------------------------------------------------
    def decide(self, votes: list[Any], quality: dict, needed: int, config: Any = None) -> Decision:
        """After ``needed`` votes: the final set holds the labels whose vote share reaches
        ``consensus_threshold`` (then cut to the largest / filled to the smallest answer size,
        highest shares first, so it respects the config's min/max like every vote). Agreement
        = mean pairwise Jaccard of the answers (1.0 for a single answer). Agreement at or
        above ``consensus_threshold``: completed (``consensus``). Below: *disputed* (expert
        review) with ``enable_expert_review``, else one more annotator at a time up to
        ``max_annotators``, then completed with the share set (``majority``)."""
        if len(votes) < needed:
            return Decision("pending", needed)
        threshold = quality["consensus_threshold"]
        final, agreement = self._share_set(votes, threshold)
        if agreement >= threshold - 1e-12:
            return Decision("completed", needed, final, "consensus", agreement)
        if quality["enable_expert_review"]:
            return Decision("disputed", needed, None, None, agreement)
        if needed < quality["max_annotators"]:
            return Decision("pending", needed + 1, None, None, agreement)
        return Decision("completed", needed, final, "majority", agreement)

    def _share_set(self, votes: list[list], threshold: float) -> tuple[list, float]:
        """The final set and the agreement of one task's answers: the rule of
        :func:`~cynaps_data.consensus.share_consensus` and the Jaccard of
        :func:`~cynaps_data.consensus.set_agreement`, in plain Python for one task (those two
        cost ~50 ms a call in pandas, once per judgement; a test checks they agree)."""
        order = merged_order(votes)
        n = len(votes)
        count = dict.fromkeys(order, 0)
        for vote in votes:
            for label in vote:
                count[label] += 1
        share = {label: c / n for label, c in count.items()}
        chosen = {label for label in order if share[label] >= threshold - 1e-12}
        ranked = sorted(order, key=lambda lab: -share[lab])  # stable: ties keep label order
        smallest, largest = min(map(len, votes)), max(map(len, votes))
        if len(chosen) > largest:
            chosen = set(ranked[:largest])
        elif len(chosen) < smallest:
            chosen |= set(ranked[:smallest])
        final = [label for label in order if label in chosen]
        if n == 1:
            return final, 1.0
        sets = [set(vote) for vote in votes]
        total = sum(
            len(a & b) / len(a | b) if a | b else 1.0
            for i, a in enumerate(sets)
            for b in sets[i + 1 :]
        )
        return final, total / (n * (n - 1) / 2)

    def summarize(self, votes: list[Any], config: dict | None) -> dict[str, Any]:
        """``{"vote_share": {label: share}}``: each label's share of the answers that hold it,
        over every declared label, or over the voted labels when ``config`` is ``None``."""
        n = len(votes)
        labels = merged_order(votes) if config is None else config["labels"]
        counts = dict.fromkeys(labels, 0)
        for vote in votes:
            for label in vote:
                if label in counts:
                    counts[label] += 1
        return {"vote_share": {label: c / n for label, c in counts.items()} if n else {}}

    # -- export -----------------------------------------------------------------------------
    def wide_columns(self, votes: VoteArrays, config: dict) -> dict[str, pa.Array]:
        """``gold``, ``label``, ``expert_label`` as ``list<string>``; ``agreement`` (mean
        pairwise Jaccard, 1.0 for one answer); ``confidence`` (mean Jaccard of the answers with
        the final set); ``vote_share`` struct of float64 shares per label (null without
        votes)."""
        labels = config["labels"]
        n, k = votes.n_tasks, len(labels)
        hot, _ = _sets_from_json(votes.values, labels)
        n_votes = votes.n_votes
        none = n_votes == 0
        counts = np.zeros((n, k))
        np.add.at(counts, votes.pos, hot)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = counts / n_votes[:, None]
        agreement = _mean_pairwise_jaccard(votes.pos, hot, n_votes)
        final_hot, has_final = _sets_from_json(votes.final, labels)
        similarity = _jaccard_rows(hot, final_hot[votes.pos]) if len(votes.pos) else np.zeros(0)
        summed = np.bincount(votes.pos, weights=similarity, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            confidence = np.where(has_final & ~none, summed / np.maximum(n_votes, 1), np.nan)
        gold_hot, has_gold = _sets_from_json(votes.gold, labels)
        expert_hot, has_expert = _sets_from_json(votes.expert, labels)
        fields = [pa.array(shares[:, i], pa.float64(), mask=none) for i in range(k)]
        return {
            "gold": _list_array(gold_hot, has_gold, labels),
            "label": _list_array(final_hot, has_final, labels),
            "agreement": pa.array(agreement, pa.float64(), from_pandas=True),
            "confidence": pa.array(confidence, pa.float64(), from_pandas=True),
            "vote_share": pa.StructArray.from_arrays(
                fields, names=[str(x) for x in labels], mask=pa.array(none)
            ),
            "expert_label": _list_array(expert_hot, has_expert, labels),
        }

    def long_label(self, values: pa.Array, config: dict) -> pa.Array:
        hot, present = _sets_from_json(values, config["labels"])
        return _list_array(hot, present, config["labels"])

    def features(self, config: dict) -> dict[str, Any]:
        import datasets

        names = [str(x) for x in config["labels"]]
        return {
            c: datasets.Sequence(datasets.ClassLabel(names=names))
            for c in ("label", "gold", "expert_label")
        }

    # -- client side of the export ----------------------------------------------------------
    def aggregate(
        self, votes: pd.DataFrame, method: str, config: Any, **params: Any
    ) -> pd.DataFrame:
        """``<method>_label`` (lists of labels, declared order) and ``<method>_proba.<label>``
        (float64 posteriors P(label in the set)) per task: ``auto`` = MultiLabelModel, ``mv``/
        ``ds``/``ebcc`` = binary relevance with that method
        (:func:`cynaps_data.consensus.aggregate_multilabel`)."""
        import pandas as pd

        from ..consensus.multilabel import (
            BinaryRelevance,
            MultiLabelModel,
            aggregate_multilabel,
        )

        config = self.validate_config(config)
        labels = config["labels"]
        if method not in METHODS:
            raise ValidationError(
                f"unknown multi_label method {method!r}; choose one of {list(METHODS)}",
                param="method",
            )
        tasks = pd.Index(pd.unique(votes["task"]), name="task")
        proba_cols = [f"{method}_proba.{label}" for label in labels]
        if votes.empty:  # nothing to fit: still refuse unknown parameters
            try:
                MultiLabelModel(**params) if method == "auto" else BinaryRelevance(method, **params)
            except TypeError as exc:
                raise ValidationError(
                    f"bad parameters for {method!r}: {exc}", param="method"
                ) from exc
            out = pd.DataFrame(np.nan, index=tasks, columns=proba_cols, dtype="float64")
            out.insert(0, f"{method}_label", pd.Series(dtype=object))
            return out
        frame = pd.DataFrame(
            {
                "task": votes["task"].to_numpy(),
                "worker": votes["worker"].astype(str).to_numpy(),
                "labels": [list(v) if v is not None else [] for v in votes["label"].tolist()],
            }
        )
        model = aggregate_multilabel(frame, method, labels=labels, **params)
        probas = model.probas_.reindex(index=tasks, columns=labels).astype("float64")
        out = pd.DataFrame(probas.to_numpy(), index=tasks, columns=proba_cols)
        chosen = model.labels_.reindex(tasks)
        out.insert(0, f"{method}_label", pd.Series(chosen.tolist(), index=tasks, dtype=object))
        return out

    def to_pandas_columns(self, frame: pd.DataFrame, config: Any) -> pd.DataFrame:
        """``label``/``gold``/``expert_label`` as object columns of lists of str (None where
        there is no value; ``[]`` is the empty set)."""
        import pandas as pd

        for column in ("label", "gold", "expert_label"):
            if column in frame.columns:
                frame[column] = pd.Series(
                    [None if v is None else [str(x) for x in v] for v in frame[column].tolist()],
                    index=frame.index,
                    dtype=object,
                )
        return frame

    # -- workbench --------------------------------------------------------------------------
    def widget(self) -> Traversable:
        return resources.files(__package__).joinpath("widgets/multi_label.js")

    # -- sandbox workforce ------------------------------------------------------------------
    def pseudo_truth(self, data_json: str, config: dict) -> Any:
        """A small set picked by a hash of the task data: min_labels..max(min_labels, 2)
        labels (within max_labels), the labels with the smallest per-label hashes."""
        labels = config["labels"]
        low, high = config["min_labels"], config["max_labels"] or len(labels)
        digest = hashlib.sha256(data_json.encode()).digest()
        size = min(high, low + digest[0] % (max(low, 2) - low + 1))
        ranked = sorted(labels, key=lambda lab: hashlib.sha256(digest + lab.encode()).digest())
        chosen = set(ranked[:size])
        return [lab for lab in labels if lab in chosen]

    def simulate(
        self, truth: Any, config: dict, accuracy: float, rng: random.Random, data: Any = None
    ) -> Any:
        """Each true label is dropped with the member's miss rate ``1.5 (1 - accuracy)`` and
        each other label added with its false-add rate ``(1 - accuracy) / 2`` (both capped),
        then cut / filled at random to the config's max/min size."""
        labels = config["labels"]
        error = 1.0 - float(accuracy)
        miss, add = min(0.9, 1.5 * error), min(0.5, 0.5 * error)
        truth = set(truth)
        answer = {lab for lab in labels if rng.random() >= (miss if lab in truth else 1.0 - add)}
        high = config["max_labels"] or len(labels)
        while len(answer) > high:
            answer.discard(rng.choice(sorted(answer)))
        while len(answer) < config["min_labels"]:
            answer.add(rng.choice([lab for lab in labels if lab not in answer]))
        return [lab for lab in labels if lab in answer]


TYPE = MultiLabel()
