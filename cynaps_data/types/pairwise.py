"""Pairwise preference (RLHF, DPO, reward models, arenas): which of two candidates is better.

Config (the project's ``labels``; ``None`` or ``{}`` takes every default)::

    {"prompt": "prompt", "candidates": ["response_a", "response_b"], "ids": None,
     "allow_tie": True, "strength": False, "reason": False}

- ``prompt``: the task data field shown above the pair (``None``: none; a task without the
  field shows none);
- ``candidates``: the two data fields holding the candidates (text, an image URL, or any JSON
  value); the first is candidate ``a``, the second ``b``;
- ``ids``: ``None`` or two entries, one per candidate, each a data field name or a list of
  field names (joined with ``":"``, e.g. ``["model_a", "response_id_a"]``) holding the
  candidate's stable item id. Comparisons about the same item id connect across tasks (the
  leaderboard). ``None``: an item's id is ``"sha:"`` + 12 hex digits of the SHA-256 of its
  content (identical candidates connect);
- ``allow_tie``: whether ``"tie"`` is an answer; ``strength``: whether annotators say by how
  much (``"slightly"`` or ``"much"`` better); ``reason``: whether they may write why.

Value: always an object, keys in this order, only the ones used::

    {"choice": "a" | "b" | "tie", "strength": "slightly" | "much", "reason": "...",
     "shown": "ab" | "ba"}

``choice`` names the candidate by its place in the *data* (``a`` = the first configured
field), never by where it was shown; ``shown`` records the display order (``"ba"``: ``b`` was
on the left), which the widget randomises per annotator and task (position bias is real). The
plain strings ``"a"``, ``"b"``, ``"tie"`` are accepted as a value and stored as
``{"choice": ...}``. A tie when ``allow_tie`` is false, a strength on a tie, a strength or reason
the config does not ask for, or a task whose data lacks a candidate field is refused (a 422
naming it). Label Studio: a ``pairwise`` region ``{"selected": "left" | "right"}`` (Label
Studio shows the first candidate left, so left = ``a``); it has no tie, so a tie is a
``choices`` region ``{"choices": ["tie"]}``; our extra keys ride along in ``value["cynaps"]``.

Consensus per task (:meth:`Pairwise.decide`): the choice with the largest share of the votes is
final (``consensus``) when its share reaches ``consensus_threshold`` and no other choice has as
many votes; otherwise disputed (expert review) or one more annotator up to ``max_annotators``,
then the plurality (``majority``; an exact a/b tie becomes ``"tie"`` when ties are allowed,
else the side voted first). ``agreement`` is the top share.

Export (wide): ``label``/``gold``/``expert_label`` string (the choice), ``agreement``,
``confidence`` (the final choice's share), ``share_a``, ``share_b``, ``share_tie``, ``margin``
((votes for the chosen − votes for the rejected) / votes; null for a tie), ``left_rate`` (share
of decisive votes that chose the left-shown candidate) float64; ``choices`` and ``shown`` (per
vote, in judgement order, aligned with ``annotator_ids``), plus ``strengths`` / ``reasons``
when the config asks for them, lists of strings. The pandas frame adds ``chosen_id``,
``rejected_id`` (str item ids), ``chosen`` and ``rejected`` (the candidates' data values;
null for a tie or no label). TRL datasets, the leaderboard and per-annotator position bias:
:mod:`cynaps_data.preferences`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ..consensus.preferences import (
    CHOICES,
    SHOWN,
    choice_shares,
    item_score,
    left_choices,
    logit,
    member_bias,
    position_bias_of,
    sigmoid,
)
from ..errors import ValidationError
from ._preference_data import (
    _codes,
    candidates_of,
    check_field,
    check_id_spec,
    content_id,
    data_records,
    field_value,
    id_from,
    json_key,
    pd_object,
    prompt_of,
)
from .base import Decision, VoteArrays, json_values, method_prefix

if TYPE_CHECKING:
    import pandas as pd

CONFIG_KEYS = ("prompt", "candidates", "ids", "allow_tie", "strength", "reason")
DEFAULTS: dict[str, Any] = {
    "prompt": "prompt",
    "candidates": ["response_a", "response_b"],
    "ids": None,
    "allow_tie": True,
    "strength": False,
    "reason": False,
}
STRENGTHS = ("slightly", "much")
VALUE_KEYS = ("choice", "strength", "reason", "shown")
MAX_REASON = 2000
VALUE_COLUMNS = ("label", "gold", "expert_label")
#: the sandbox's simulated annotators: a tie is the truth when the pseudo scores are this close
TIE_GAP = 0.1
#: the mean absolute difference of two standard normal scores (2 / sqrt(pi))
MEAN_GAP = 2 / np.sqrt(np.pi)


def _bool(config: dict, key: str) -> bool:
    value = config.get(key, DEFAULTS[key])
    if not isinstance(value, bool):
        raise ValueError(f"labels.{key} must be true or false, got {value!r}")
    return value


def _values(json_texts: Any) -> list[dict | None]:
    out: list[dict | None] = []
    for value in json_values(json_texts):
        if isinstance(value, str):
            value = {"choice": value}
        out.append(value if isinstance(value, dict) else None)
    return out


class Pairwise:
    name = "pairwise"
    price_per_judgement_cents = 2000
    aggregation_methods = ("auto", "mv", "ds", "one_coin", "glad", "mace", "ebcc")
    default_method = "auto"
    agreement_metrics = ("krippendorff_alpha",)

    # -- config and values ------------------------------------------------------------------
    def validate_config(self, config: Any) -> dict:
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ValueError(
                'labels must be an object {"prompt": <field>, "candidates": [<field>, <field>], '
                f'"ids": ..., "allow_tie": <bool>, ...}} (or null), got {type(config).__name__}'
            )
        unknown = [k for k in config if k not in CONFIG_KEYS]
        if unknown:
            raise ValueError(f"labels.{unknown[0]} is not a pairwise setting; use {CONFIG_KEYS}")
        prompt = config.get("prompt", DEFAULTS["prompt"])
        if prompt is not None:
            check_field(prompt, "labels.prompt")
        candidates = config.get("candidates", DEFAULTS["candidates"])
        if not isinstance(candidates, list) or len(candidates) != 2:
            raise ValueError("labels.candidates must be a list of two data field names")
        for i, field in enumerate(candidates):
            check_field(field, f"labels.candidates[{i}]")
        if candidates[0] == candidates[1]:
            raise ValueError("labels.candidates must name two different fields")
        ids = config.get("ids")
        if ids is not None:
            if not isinstance(ids, list) or len(ids) != 2:
                raise ValueError("labels.ids must be null or two id fields (one per candidate)")
            ids = [check_id_spec(spec, f"labels.ids[{i}]") for i, spec in enumerate(ids)]
        return {
            "prompt": prompt,
            "candidates": list(candidates),
            "ids": ids,
            "allow_tie": _bool(config, "allow_tie"),
            "strength": _bool(config, "strength"),
            "reason": _bool(config, "reason"),
        }

    def validate_data(self, data: Any, config: dict) -> None:
        """Upload check: a task lacking a candidate (or an id field) could never be judged."""
        ids = config.get("ids")
        for i, field in enumerate(config["candidates"]):
            field_value(data, field, "candidate")
            if ids:
                id_from(data, ids[i], "id")

    def validate_value(self, value: Any, config: dict, data: Any = None) -> dict:
        if isinstance(value, dict) and ("selected" in value or "choices" in value):
            value = self._from_studio_value(value)
        if isinstance(value, str):
            value = {"choice": value}
        if not isinstance(value, dict):
            raise ValueError(
                'pairwise label must be "a", "b", "tie" or an object {"choice": ...}, '
                f"got {type(value).__name__}"
            )
        unknown = [k for k in value if k not in VALUE_KEYS]
        if unknown:
            raise ValueError(f"label.{unknown[0]} is not a pairwise key; use {VALUE_KEYS}")
        choice = value.get("choice")
        allowed = CHOICES if config["allow_tie"] else CHOICES[:2]
        if choice not in allowed:
            if choice == "tie":
                raise ValueError('label.choice "tie" is not allowed: this project has no ties')
            raise ValueError(f"label.choice must be one of {list(allowed)}, got {choice!r}")
        out: dict[str, Any] = {"choice": choice}
        strength = value.get("strength")
        if strength is not None:
            if not config["strength"]:
                raise ValueError("label.strength is not asked for by this project")
            if choice == "tie":
                raise ValueError("label.strength must be empty for a tie")
            if strength not in STRENGTHS:
                raise ValueError(f"label.strength must be one of {list(STRENGTHS)}")
            out["strength"] = strength
        reason = value.get("reason")
        if reason is not None and reason != "":
            if not config["reason"]:
                raise ValueError("label.reason is not asked for by this project")
            if not isinstance(reason, str) or len(reason) > MAX_REASON or "\x00" in reason:
                raise ValueError(f"label.reason must be text of at most {MAX_REASON} characters")
            out["reason"] = reason
        shown = value.get("shown")
        if shown is not None:
            if shown not in SHOWN:
                raise ValueError(f"label.shown must be 'ab' or 'ba', got {shown!r}")
            out["shown"] = shown
        if data is not None:
            for i, field in enumerate(config["candidates"]):
                field_value(data, field, f"candidate {'ab'[i]}")
        return out

    @staticmethod
    def _from_studio_value(value: dict) -> dict:
        extra = value.get("cynaps") if isinstance(value.get("cynaps"), dict) else {}
        if "selected" in value:
            selected = value["selected"]
            side = {"left": "a", "right": "b"}.get(selected) if isinstance(selected, str) else None
            if side is None:
                raise ValueError(
                    f"Label Studio pairwise selected must be 'left' or 'right', "
                    f"got {value['selected']!r}"
                )
            return {**extra, "choice": side}
        choices = value.get("choices")
        if choices != ["tie"]:
            raise ValueError(
                f"a Label Studio choices region for a pair must be ['tie'], got {choices!r}"
            )
        return {**extra, "choice": "tie"}

    def to_label_studio(self, value: Any, config: dict) -> dict:
        value = {"choice": value} if isinstance(value, str) else dict(value)
        choice = value.pop("choice")
        extra = {"cynaps": value} if value else {}
        if choice == "tie":
            return {"type": "choices", "value": {"choices": ["tie"], **extra}}
        side = "left" if choice == "a" else "right"
        return {"type": "pairwise", "value": {"selected": side, **extra}}

    def from_label_studio(self, region: dict, config: dict) -> Any:
        value = region.get("value")
        if region.get("type") not in ("pairwise", "choices") or not isinstance(value, dict):
            raise ValueError('not a Label Studio pairwise result {"selected": "left"|"right"}')
        return self._from_studio_value(value)

    # -- platform consensus -----------------------------------------------------------------
    def decide(self, votes: list[Any], quality: dict, needed: int, config: Any = None) -> Decision:
        """Plurality of the choices with the project's threshold (module docstring)."""
        if len(votes) < needed:
            return Decision("pending", needed)
        choices = [v["choice"] if isinstance(v, dict) else v for v in votes]
        counts = Counter(choices)
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: first-voted first
        top, top_count = ranked[0]
        share = top_count / len(choices)
        tied = len(ranked) > 1 and ranked[1][1] == top_count
        if share >= quality["consensus_threshold"] and not tied:
            return Decision("completed", needed, {"choice": top}, "consensus", share)
        if quality["enable_expert_review"]:
            return Decision("disputed", needed, None, None, share)
        if needed < quality["max_annotators"]:
            return Decision("pending", needed + 1, None, None, share)
        if tied and {ranked[0][0], ranked[1][0]} == {"a", "b"}:
            allow_tie = config is None or config.get("allow_tie", True)
            top = "tie" if allow_tie else top
        return Decision("completed", needed, {"choice": top}, "majority", share)

    def summarize(self, votes: list[Any], config: dict | None) -> dict[str, Any]:
        """``choice_shares`` ({"a", "b", "tie"}: share of the votes), ``strength_counts``
        ({"a": {"slightly": n, "much": n}, "b": {...}}, only the strengths voted),
        ``position_bias`` ({"n_decisive", "left_rate", "p_value"}: how often the candidate
        shown left won among the decisive votes; see :mod:`cynaps_data.consensus.preferences`)
        and ``reasons`` (the reasons written, in vote order, when any)."""
        values = [v if isinstance(v, dict) else {"choice": v} for v in votes]
        choices = [v["choice"] for v in values]
        shares = choice_shares(choices)
        if config is not None and not config.get("allow_tie", True):
            shares.pop("tie")
        strengths: dict[str, dict[str, int]] = {}
        for v in values:
            if v.get("strength"):
                side = strengths.setdefault(v["choice"], {})
                side[v["strength"]] = side.get(v["strength"], 0) + 1
        out: dict[str, Any] = {
            "choice_shares": shares,
            "position_bias": position_bias_of(
                left_choices(choices, [v.get("shown") for v in values])
            ),
        }
        if strengths:
            out["strength_counts"] = strengths
        reasons = [v["reason"] for v in values if v.get("reason")]
        if reasons:
            out["reasons"] = reasons
        return out

    # -- export -----------------------------------------------------------------------------
    def wide_columns(self, votes: VoteArrays, config: dict) -> dict[str, pa.Array]:
        """The export columns of the module docstring (one row per task), vectorised: the
        choice and display order are read from the values' JSON texts with Arrow regexes
        (the texts are :meth:`validate_value`'s normalised objects), the shares by bincount;
        only ``strengths``/``reasons`` (when the config asks for them) parse each value."""
        n = votes.n_tasks
        choice = json_key(votes.values, "choice", CHOICES)
        shown = json_key(votes.values, "shown", SHOWN)
        code = _codes(choice, CHOICES)  # -1: none
        pos = votes.pos
        known = code >= 0
        counts = np.bincount(pos[known] * 3 + code[known], minlength=n * 3).reshape(n, 3)
        n_votes = counts.sum(axis=1)
        none = n_votes == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = counts / n_votes[:, None]
        final_choice = json_key(votes.final, "choice", CHOICES)
        final = _codes(final_choice, CHOICES)
        rows = np.arange(n)
        picked = np.where(final >= 0, shares[rows, np.maximum(final, 0)], np.nan)
        other = np.where(final == 0, 1, 0)
        margin = np.where(final < 2, picked - shares[rows, other], np.nan)
        margin = np.where(final < 0, np.nan, margin)
        shown_left = _codes(shown, SHOWN)  # 0: a was left, 1: b was left
        decisive = (code >= 0) & (code < 2) & (shown_left >= 0)
        left_won = decisive & (code == shown_left)
        n_decisive = np.bincount(pos[decisive], minlength=n)
        n_left = np.bincount(pos[left_won], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            left_rate = np.where(n_decisive > 0, n_left / n_decisive, np.nan)
        offsets = pa.array(np.concatenate([[0], np.cumsum(votes.n_votes)]).astype("int32"))

        def floats(x: np.ndarray) -> pa.Array:
            return pa.array(np.where(none, np.nan, x), pa.float64(), from_pandas=True)

        out: dict[str, pa.Array] = {
            "gold": json_key(votes.gold, "choice", CHOICES),
            "label": final_choice,
            "agreement": floats(shares.max(axis=1, initial=0.0)),
            "confidence": floats(picked),
            "share_a": floats(shares[:, 0]),
            "share_b": floats(shares[:, 1]),
            "share_tie": floats(shares[:, 2]),
            "margin": floats(margin),
            "left_rate": pa.array(left_rate, pa.float64(), from_pandas=True),
            "choices": pa.ListArray.from_arrays(offsets, choice),
            "shown": pa.ListArray.from_arrays(offsets, shown),
        }
        if config.get("strength") or config.get("reason"):
            values = _values(votes.values)
            for key, column in (("strength", "strengths"), ("reason", "reasons")):
                if config.get(key):
                    texts = pa.array([(v or {}).get(key) for v in values], pa.string())
                    out[column] = pa.ListArray.from_arrays(offsets, texts)
        out["expert_label"] = json_key(votes.expert, "choice", CHOICES)
        return out

    def long_label(self, values: pa.Array, config: dict) -> pa.Array:
        """The choice (``"a"``, ``"b"``, ``"tie"``) of each judgement, Arrow string."""
        return json_key(values, "choice", CHOICES)

    def features(self, config: dict) -> dict[str, Any]:
        import datasets

        out: dict[str, Any] = {c: datasets.Value("string") for c in VALUE_COLUMNS}
        for key in ("share_a", "share_b", "share_tie", "margin", "left_rate"):
            out[key] = datasets.Value("float64")
        out["choices"] = datasets.Sequence(datasets.Value("string"))
        out["shown"] = datasets.Sequence(datasets.Value("string"))
        return out

    def to_pandas_columns(self, frame: pd.DataFrame, config: dict) -> pd.DataFrame:
        """Adds ``chosen_id``, ``rejected_id`` (item ids) and ``chosen``, ``rejected`` (the
        candidates' data values) from the final label; list columns as Python lists."""
        for column in ("choices", "shown", "strengths", "reasons"):
            if column in frame.columns:
                frame[column] = [
                    list(v) if isinstance(v, (list, tuple, np.ndarray)) else []
                    for v in frame[column].tolist()
                ]
        records = data_records(frame, config)
        chosen_id, rejected_id, chosen, rejected = [], [], [], []
        labels = frame["label"].tolist() if "label" in frame.columns else [None] * len(frame)
        for data, label in zip(records, labels, strict=True):
            pair = candidates_of(data, config)
            if label in ("a", "b") and pair is not None:
                win, lose = (0, 1) if label == "a" else (1, 0)
                chosen_id.append(pair[win][0])
                rejected_id.append(pair[lose][0])
                chosen.append(pair[win][1])
                rejected.append(pair[lose][1])
            else:
                for column in (chosen_id, rejected_id, chosen, rejected):
                    column.append(None)
        frame["chosen_id"] = pd_object(chosen_id, frame.index)
        frame["rejected_id"] = pd_object(rejected_id, frame.index)
        frame["chosen"] = pd_object(chosen, frame.index)
        frame["rejected"] = pd_object(rejected, frame.index)
        return frame

    # -- client side ------------------------------------------------------------------------
    def aggregate(self, votes: Any, method: Any, config: dict, **params: Any) -> Any:
        """Any :mod:`cynaps_data.consensus` method over the choices (the labels ``a``, ``b``
        and, when allowed, ``tie``; annotator skills are estimated across the tasks):
        ``<prefix>_label`` (Categorical), ``<prefix>_confidence`` (float64) and
        ``<prefix>_proba.<choice>`` (float64). Item scores across tasks: the leaderboard of
        :mod:`cynaps_data.preferences`."""
        import pandas as pd

        from ..consensus import aggregate, get_aggregator

        key = method_prefix(method) if isinstance(method, str) else None
        if isinstance(method, str) and key not in self.aggregation_methods:
            raise ValidationError(
                f"unknown pairwise method {method!r}; choose one of "
                f"{list(self.aggregation_methods)} (item scores: cynaps_data.preferences)",
                param="method",
            )
        get_aggregator(method, **params)
        labels = list(CHOICES if config.get("allow_tie", True) else CHOICES[:2])
        long = votes.dropna(subset=["label"]) if len(votes) else votes
        if long.empty:
            probas = pd.DataFrame(
                np.empty((0, len(labels))), index=pd.Index([], name="task"), columns=labels
            )
        else:
            frame = pd.DataFrame(
                {
                    "task": long["task"].to_numpy(),
                    "worker": long["worker"].astype(str).to_numpy(),
                    "label": long["label"].astype(object).to_numpy(),
                }
            )
            probas = aggregate(frame, method, labels=labels, **params).probas.reindex(
                columns=labels
            )
        values = probas.to_numpy(dtype="float64")
        missing = np.isnan(values).all(axis=1) if len(values) else np.zeros(0, bool)
        best = np.where(missing, -1, np.nan_to_num(values, nan=-1.0).argmax(axis=1))
        prefix = method_prefix(method)
        out = pd.DataFrame(
            values, index=probas.index, columns=[f"{prefix}_proba.{c}" for c in labels]
        )
        out.insert(0, f"{prefix}_label", pd.Categorical.from_codes(best, categories=labels))
        top = np.fmax.reduce(np.where(missing[:, None], 0, values), axis=1, initial=0.0)
        out.insert(1, f"{prefix}_confidence", np.where(missing, np.nan, top).astype("float64"))
        out.index.name = "task"
        return out

    def comparisons(self, frame: pd.DataFrame, config: dict, pairs: str = "all") -> pd.DataFrame:
        """The annotators' judgements of a wide export as a comparisons frame (contract in
        :mod:`cynaps_data.consensus.preferences`): ``task``, ``worker``, ``left``, ``right``
        (item ids as shown; ``a`` left when the order is unknown), ``label`` (the winner's
        item id, ``"tie"`` for a tie). ``pairs`` is for rankings: a pair is one comparison.
        A tie between items one of which is called ``"tie"`` is a null label. A task whose two
        candidates have the same item id (one model on both sides, identical
        texts without ids) says nothing about item scores and is left out."""
        import pandas as pd

        rows: dict[str, list] = {k: [] for k in ("task", "worker", "left", "right", "label")}
        records = data_records(frame, config)
        for task, data, workers, choices, shown in zip(
            frame.index.tolist(),
            records,
            frame["annotator_ids"].tolist(),
            frame["choices"].tolist(),
            frame["shown"].tolist(),
            strict=True,
        ):
            pair = candidates_of(data, config)
            if pair is None or not isinstance(choices, (list, tuple, np.ndarray)):
                continue
            ids = {"a": pair[0][0], "b": pair[1][0]}
            if ids["a"] == ids["b"]:
                continue
            for worker, choice, order in zip(workers, choices, shown, strict=False):
                if choice not in CHOICES:
                    continue
                order = order if order in SHOWN else "ab"
                rows["task"].append(int(task))
                rows["worker"].append(str(worker))
                rows["left"].append(ids[order[0]])
                rows["right"].append(ids[order[1]])
                tie = "tie" if "tie" not in ids.values() else None  # an item called "tie"
                rows["label"].append(tie if choice == "tie" else ids[choice])
        out = pd.DataFrame(rows)
        out["task"] = out["task"].astype("int64")
        return out

    def left_decisions(self, frame: pd.DataFrame, config: dict) -> Iterator[tuple[str, bool]]:
        """``(worker, chose the left candidate)`` for every decisive judgement as shown."""
        for workers, choices, shown in zip(
            frame["annotator_ids"], frame["choices"], frame["shown"], strict=True
        ):
            for w, c, s in zip(workers, choices, shown, strict=False):
                for left in left_choices([c], [s]):
                    yield str(w), left

    def preference_rows(
        self, frame: pd.DataFrame, config: dict, pairs: str, min_agreement: float | None
    ) -> Iterator[tuple]:
        """The final labels as ``(task, prompt, chosen, rejected, chosen_id, rejected_id,
        agreement, margin)``, one per decided task (contract in
        :func:`cynaps_data.preferences.preference_pairs`)."""
        records = data_records(frame, config)
        for task, data, (_, row) in zip(frame.index, records, frame.iterrows(), strict=True):
            if row["chosen_id"] is None or isinstance(row["chosen_id"], float):
                continue
            agreement = row["agreement"]
            if min_agreement is not None and not agreement >= min_agreement:
                continue
            yield (
                int(task),
                prompt_of(data, config),
                row["chosen"],
                row["rejected"],
                row["chosen_id"],
                row["rejected_id"],
                float(agreement),
                float(row["margin"]),
            )

    # -- workbench --------------------------------------------------------------------------
    def widget(self) -> Traversable:
        return resources.files(__package__).joinpath("widgets/pairwise.js")

    # -- sandbox workforce ------------------------------------------------------------------
    def pseudo_truth(self, data_json: str, config: dict) -> dict:
        """The candidate with the higher pseudo score (:func:`~cynaps_data.consensus.
        preferences.item_score` of its item id); a tie when allowed and the scores are within
        :data:`TIE_GAP`."""
        data = orjson.loads(data_json)
        pair = candidates_of(data, config)
        if pair is None:
            return {"choice": "a"}
        gap = item_score(pair[0][0]) - item_score(pair[1][0])
        if config.get("allow_tie", True) and abs(gap) < TIE_GAP:
            return {"choice": "tie"}
        return {"choice": "a" if gap > 0 else "b"}

    def simulate(
        self, truth: Any, config: dict, accuracy: float, rng: random.Random, data: Any = None
    ) -> dict:
        """A Bradley–Terry annotator with a position bias. The display order is drawn from
        ``rng``; with :math:`g` the pseudo-score gap of the pair over its mean (2/√π) and
        :math:`\\beta` the member's own bias toward the left candidate
        (:func:`~cynaps_data.consensus.preferences.member_bias`),

        .. math::  P(\\text{left}) = \\sigma(\\pm\\,\\mathrm{logit}(accuracy)\\, g + \\beta)

        (+ when the better candidate — the truth's choice — is on the left), so a typical gap
        is judged right with probability ``accuracy`` and close pairs are coin flips. A tie
        truth is kept with probability ``accuracy`` (else a position-biased side); a close
        pair (gap < :data:`TIE_GAP`) is called a tie half the time when ties are allowed."""
        choice = truth.get("choice") if isinstance(truth, dict) else truth
        pair = candidates_of(data, config) if data is not None else None
        gap = abs(item_score(pair[0][0]) - item_score(pair[1][0])) if pair else MEAN_GAP
        shown = "ab" if rng.random() < 0.5 else "ba"
        beta = member_bias(accuracy, 2.0)
        allow_tie = config.get("allow_tie", True)
        if choice == "tie" or choice not in ("a", "b"):
            if allow_tie and rng.random() < accuracy:
                return self._answer("tie", shown, gap, config)
            left = rng.random() < sigmoid(beta)
            return self._answer(shown[0] if left else shown[1], shown, gap, config)
        if allow_tie and gap < TIE_GAP and rng.random() < 0.5:
            return self._answer("tie", shown, gap, config)
        strength = logit(max(0.5, min(float(accuracy), 0.999))) * gap / MEAN_GAP
        better_left = shown[0] == choice
        p_left = sigmoid((strength if better_left else -strength) + beta)
        picked = shown[0] if rng.random() < p_left else shown[1]
        return self._answer(picked, shown, gap, config)

    @staticmethod
    def _answer(choice: str, shown: str, gap: float, config: dict) -> dict:
        out: dict[str, Any] = {"choice": choice}
        if config.get("strength") and choice != "tie":
            out["strength"] = "much" if gap > MEAN_GAP else "slightly"
        if config.get("reason"):
            out["reason"] = "simulated judgement"
        out["shown"] = shown
        return out


TYPE = Pairwise()

__all__ = ["Pairwise", "TYPE", "candidates_of", "content_id", "prompt_of"]
