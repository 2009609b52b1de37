"""Spans (named entities, text regions): the value is a set of labelled character ranges of the
task's text.

Config (the project's ``labels``): ``{"labels": ["PER", "ORG", "LOC", "MISC"], "field": "text",
"allow_overlap": false}`` — ``labels`` the span labels (1-50 unique strings without whitespace,
so that they make CoNLL tags), ``field`` the task data field holding the text (default
``"text"``), ``allow_overlap`` whether one answer's spans may overlap (nested entities). A plain
list of labels means those labels and the defaults; an unknown key is an error naming it.

Value: a list of ``{"start": int, "end": int, "label": str, "text": str}``, character offsets
into the text (``text[start:end]``, end exclusive), sorted by ``(start, end, label order)``;
``text`` is the slice, filled in (or checked, when given) wherever the task's data is known.
Checked against the task (``validate_value(value, config, data)``): inside the text,
``start < end``, label in the config, no repeated span, no overlap unless allowed; errors name
the item (``spans[1].end``). Also accepted: token-level answers ``{"tokens": [...], "tags":
["B-PER", "I-PER", "O", ...]}`` (IOB2; the tokens are found in the text in order), and Label
Studio's ``labels`` regions (``{"start", "end", "text", "labels": [...]}``, or whole results);
:meth:`Spans.to_label_studio` gives one ``labels`` region per span.

Consensus (:func:`cynaps_data.consensus.spans.span_consensus`): spans of the annotators are
matched (exact boundaries first, then by overlap); a span is final when the share of annotators
supporting it reaches ``consensus_threshold``; boundaries and label by vote. When the answers
back the voted set — their mean exact span F1 with it reaches ``consensus_threshold`` — the task
completes (``consensus``); below, it is disputed (expert review: the expert sees every answer's
spans side by side), or gets one more annotator up to ``max_annotators`` and then takes the
voted spans (``majority``). The task's ``agreement`` is the mean pairwise *exact* span F1 of its
answers.

Export: ``label``/``gold``/``expert_label`` are Arrow ``list<struct<start: int64, end: int64,
label: dictionary<int32, string>, text: string, support: double>>`` (pandas: lists of dicts;
``datasets``: ``List({"start", "end", "label": ClassLabel, "text", "support"})``); ``support`` is
the share of the annotators' answers holding a span of that label overlapping it (null for gold
and expert spans); ``agreement`` (exact) and ``agreement_overlap`` (overlap span F1),
``confidence`` the mean exact F1 of the answers with the final set. Token classification:
:func:`token_classification` and :func:`to_conll` (public in :mod:`cynaps_data.io`).
"""

from __future__ import annotations

import hashlib
import random
import re
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ..consensus.spans import mean_pairwise_f1, span_consensus, span_f1, span_supports, spans_of
from ..consensus.spans_tokens import (
    check_tags,
    locate_tokens,
    tags_to_spans,
    whitespace_tokenize,
)
from ..errors import ValidationError
from .base import Decision, VoteArrays, json_values, method_prefix

if TYPE_CHECKING:
    import pandas as pd

CONFIG_KEYS = ("labels", "field", "allow_overlap")
MAX_LABELS = 50
MAX_LABEL_LENGTH = 50
MAX_FIELD = 200
#: spans one answer may hold
MAX_SPANS = 5000
#: a capitalised word run (the pseudo-truth's entities)
CAPITALISED = re.compile(r"\b[A-Z][\w'&-]*(?: [A-Z][\w'&-]*)*")
FIELDS = ("start", "end", "label", "text", "support")


def _struct_type() -> pa.DataType:
    return pa.struct(
        [
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("label", pa.dictionary(pa.int32(), pa.string())),
            ("text", pa.string()),
            ("support", pa.float64()),
        ]
    )


def _int(value: Any) -> bool:
    """An integer offset: an int (numpy's too) or a float holding a whole number (JSON and
    pandas give ``3.0`` for ``3``: a column with a gap is float, as rating values are)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (float, np.floating)):
        return bool(np.isfinite(value)) and float(value).is_integer()
    return isinstance(value, (int, np.integer))


def text_of(data: Any, config: dict) -> str:
    """The task's text (``data[config["field"]]``); ``ValueError`` when it has none."""
    field = config["field"]
    value = data.get(field) if isinstance(data, dict) else None
    if not isinstance(value, str):
        raise ValueError(f"the task has no text in its data field {field!r} (labels.field)")
    return value


def _from_tokens(value: dict, config: dict, data: Any) -> Any:
    tokens, tags = value.get("tokens"), value.get("tags")
    if not isinstance(tokens, list) or not isinstance(tags, list):
        raise ValueError('a token-level answer is {"tokens": [...], "tags": [...]} (two lists)')
    if len(tokens) != len(tags):
        raise ValueError(f"tags has {len(tags)} entries for {len(tokens)} tokens")
    check_tags(tags, "tags", config["labels"])
    if data is None:  # shape only (the client's check before upload)
        for i, token in enumerate(tokens):
            if not isinstance(token, str) or not token:
                raise ValueError(f"tokens[{i}] must be a non-empty string, got {token!r}")
        return {"tokens": list(tokens), "tags": list(tags)}
    offsets = locate_tokens(tokens, text_of(data, config))
    return [{"start": s, "end": e, "label": lb} for s, e, lb in tags_to_spans(tags, offsets)]


def _item(i: int, item: Any, config: dict, text: str | None) -> dict:
    """One span, checked (``spans[i].<key>`` in errors) and normalised."""
    name = f"spans[{i}]"
    if isinstance(item, dict) and isinstance(item.get("value"), dict) and "type" in item:
        item = item["value"]  # a whole Label Studio region
    if not isinstance(item, dict):
        raise ValueError(f"{name} must be an object {{start, end, label}}, got {item!r}")
    label = item.get("label")
    if label is None and "labels" in item:  # Label Studio's value
        labels = item["labels"]
        if not isinstance(labels, list) or len(labels) != 1:
            raise ValueError(f"{name}.labels must hold exactly one label, got {labels!r}")
        label = labels[0]
    unknown = sorted(set(item) - {"start", "end", "label", "labels", "text", "support", "id"})
    if unknown:
        raise ValueError(f"{name}.{unknown[0]} is not a span key (start, end, label, text)")
    start, end = item.get("start"), item.get("end")
    if not _int(start) or start < 0:
        raise ValueError(f"{name}.start must be an integer >= 0, got {start!r}")
    if not _int(end) or end <= start:
        raise ValueError(f"{name}.end must be an integer after start ({start}), got {end!r}")
    start, end = int(start), int(end)
    if text is not None and end > len(text):
        raise ValueError(f"{name}.end {end} is past the end of the text ({len(text)} characters)")
    if not isinstance(label, str) or label not in config["labels"]:
        raise ValueError(f"{name}.label {label!r} is not one of the labels {config['labels']}")
    out = {"start": start, "end": end, "label": str(label)}
    given = item.get("text")
    if given is not None and not isinstance(given, str):
        raise ValueError(f"{name}.text must be a string, got {given!r}")
    if text is not None:
        if given is not None and given != text[start:end]:
            raise ValueError(
                f"{name}.text {given!r} is not the text at {start}:{end} ({text[start:end]!r})"
            )
        out["text"] = text[start:end]
    elif given is not None:
        out["text"] = given
    return out


def _arrow_spans(rows: list[list | None], labels: list[str], supports: Any = None) -> pa.Array:
    """``list<struct>`` rows of span lists (null where ``None``); ``supports``: per row, the
    spans' support (aligned), or ``None`` for null supports."""
    offsets = [0]
    starts: list[int] = []
    ends: list[int] = []
    codes: list[int | None] = []
    texts: list[str | None] = []
    support: list[float | None] = []
    mask = []
    position = {label: i for i, label in enumerate(labels)}
    for r, row in enumerate(rows):
        mask.append(row is None)
        for k, span in enumerate(row or ()):
            starts.append(int(span["start"]))
            ends.append(int(span["end"]))
            codes.append(position.get(span["label"]))
            texts.append(span.get("text"))
            s = supports[r][k] if supports is not None and supports[r] is not None else None
            support.append(None if s is None or s != s else float(s))
        offsets.append(len(starts))
    label = pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int32()), pa.array([str(x) for x in labels], pa.string())
    )
    struct = pa.StructArray.from_arrays(
        [
            pa.array(starts, pa.int64()),
            pa.array(ends, pa.int64()),
            label,
            pa.array(texts, pa.string()),
            pa.array(support, pa.float64()),
        ],
        fields=list(_struct_type()),
    )
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), struct, mask=pa.array(mask, pa.bool_())
    )


class Spans:
    name = "spans"
    price_per_judgement_cents = 2500
    aggregation_methods = ("auto", "span_vote", "bsc", "token_mv", "token_ds")
    default_method = "auto"
    agreement_metrics = ("span_f1", "span_agreement", "unitizing_alpha")

    # -- config and values ------------------------------------------------------------------
    def validate_config(self, config: Any) -> dict:
        if isinstance(config, list):
            config = {"labels": config}
        if not isinstance(config, dict) or "labels" not in config:
            raise ValueError(
                'labels must be a list of span labels or {"labels": [...], "field": "text", '
                '"allow_overlap": false}'
            )
        unknown = [k for k in config if k not in CONFIG_KEYS]
        if unknown:
            raise ValueError(f"labels.{unknown[0]} is not a spans setting {CONFIG_KEYS}")
        labels = config["labels"]
        if not isinstance(labels, list) or not labels or len(labels) > MAX_LABELS:
            raise ValueError(f"labels.labels must be a list of 1 to {MAX_LABELS} span labels")
        for i, label in enumerate(labels):
            if (
                not isinstance(label, str)
                or not label
                or len(label) > MAX_LABEL_LENGTH
                or re.search(r"\s", label)
            ):
                raise ValueError(
                    f"labels.labels[{i}] must be a string of 1 to {MAX_LABEL_LENGTH} characters "
                    f"without whitespace, got {label!r}"
                )
            if label in labels[:i]:
                raise ValueError(f"labels.labels[{i}] repeats {label!r}")
        field = config.get("field", "text")
        if not isinstance(field, str) or not field or len(field) > MAX_FIELD or "\x00" in field:
            raise ValueError(f"labels.field must be the name of a task data field, got {field!r}")
        overlap = config.get("allow_overlap", False)
        if not isinstance(overlap, bool):
            raise ValueError(f"labels.allow_overlap must be true or false, got {overlap!r}")
        return {"labels": list(labels), "field": field, "allow_overlap": overlap}

    def validate_value(self, value: Any, config: dict, data: Any = None) -> Any:
        if isinstance(value, dict) and ("tokens" in value or "tags" in value):
            value = _from_tokens(value, config, data)
            if isinstance(value, dict):
                return value
        if not isinstance(value, list):
            raise ValueError(
                "label must be a list of spans {start, end, label} (or {tokens, tags}), "
                f"got {type(value).__name__}"
            )
        if len(value) > MAX_SPANS:
            raise ValueError(f"label has {len(value)} spans; at most {MAX_SPANS} are allowed")
        text = None if data is None else text_of(data, config)
        items = [(i, _item(i, item, config, text)) for i, item in enumerate(value)]
        rank = {label: k for k, label in enumerate(config["labels"])}
        items.sort(key=lambda p: (p[1]["start"], p[1]["end"], rank[p[1]["label"]]))
        for (i, a), (j, b) in zip(items, items[1:], strict=False):
            if (a["start"], a["end"], a["label"]) == (b["start"], b["end"], b["label"]):
                raise ValueError(f"spans[{max(i, j)}] repeats spans[{min(i, j)}]")
        if not config["allow_overlap"]:
            reach, holder = -1, -1
            for i, span in items:
                if span["start"] < reach:
                    first, second = sorted((holder, i))
                    raise ValueError(
                        f"spans[{second}] overlaps spans[{first}] (labels.allow_overlap is false)"
                    )
                if span["end"] > reach:
                    reach, holder = span["end"], i
        return [span for _, span in items]

    def to_label_studio(self, value: Any, config: dict) -> list[dict]:
        """One ``labels`` region per span (a list: the caller adds ``from_name``/``to_name``)."""
        return [
            {
                "id": f"s{k}",
                "type": "labels",
                "value": {
                    "start": s["start"],
                    "end": s["end"],
                    "text": s.get("text"),
                    "labels": [s["label"]],
                },
            }
            for k, s in enumerate(value or [])
        ]

    def from_label_studio(self, region: dict, config: dict) -> Any:
        """One ``labels`` region as a one-span answer (see :meth:`from_label_studio_result`)."""
        value = region.get("value") if isinstance(region, dict) else None
        if not isinstance(value, dict) or region.get("type") != "labels":
            raise ValueError("not a 'labels' result")
        return [value]

    def from_label_studio_result(self, result: list, config: dict, data: Any = None) -> Any:
        """An annotation's whole ``result`` (every ``labels`` region; other regions, e.g. a
        relation, are left out) as one answer; an empty result is the empty answer."""
        spans: list = []
        for region in result or []:
            if isinstance(region, dict) and region.get("type") == "labels":
                spans.extend(self.from_label_studio(region, config))
        return spans

    # -- platform consensus -----------------------------------------------------------------
    def decide(self, votes: list[Any], quality: dict, needed: int, config: Any = None) -> Decision:
        """The voted spans (spans supported by at least ``consensus_threshold`` of the
        annotators) are final (``consensus``) when the answers back them: the mean exact span
        F1 of the answers with them (the export's ``confidence``) reaches
        ``consensus_threshold``. Below: *disputed* (expert review) with
        ``enable_expert_review``, else one more annotator up to ``max_annotators``, then the
        voted spans (``majority``). ``agreement``: the mean pairwise exact span F1 of the
        answers (1.0 for one)."""
        if len(votes) < needed:
            return Decision("pending", needed)
        config = config or {"labels": [], "allow_overlap": False}
        threshold = quality["consensus_threshold"]
        result = span_consensus(
            votes, threshold, labels=config["labels"], allow_overlap=config["allow_overlap"]
        )
        final = self._final(result, votes)
        support = sum(span_f1(final, v) for v in votes) / len(votes)
        if support >= threshold - 1e-12:
            return Decision("completed", needed, final, "consensus", result.agreement)
        if quality["enable_expert_review"]:
            return Decision("disputed", needed, None, None, result.agreement)
        if needed < quality["max_annotators"]:
            return Decision("pending", needed + 1, None, None, result.agreement)
        return Decision("completed", needed, final, "majority", result.agreement)

    @staticmethod
    def _final(result: Any, votes: list[Any]) -> list[dict]:
        texts = {(s["start"], s["end"]): s["text"] for v in votes for s in v if "text" in s}
        out = []
        for start, end, label in result.spans:
            span = {"start": start, "end": end, "label": label}
            if (start, end) in texts:
                span["text"] = texts[(start, end)]
            out.append(span)
        return out

    def summarize(self, votes: list[Any], config: dict | None) -> dict[str, Any]:
        """``{"spans": [{start, end, label, text, support}], "annotators": [[{start, end,
        label}, ...], ...], "agreement_overlap": f1}``: every matched span (kept or not, by
        position) with its support, each answer's spans in vote order (the expert's side by
        side view) and the mean pairwise overlap span F1."""
        overlap = bool(config and config.get("allow_overlap"))
        labels = config["labels"] if config else None
        result = span_consensus(votes, 1.0, labels=labels, allow_overlap=overlap)
        texts = {(s["start"], s["end"]): s.get("text") for v in votes for s in v}
        agreement = result.agreement_overlap
        return {
            "spans": [
                {"start": s, "end": e, "label": lb, "text": texts.get((s, e)), "support": sup}
                for s, e, lb, sup in result.clusters
            ],
            "annotators": [
                [{k: s[k] for k in ("start", "end", "label")} for s in v] for v in votes
            ],
            "agreement_overlap": None if agreement != agreement else agreement,
        }

    # -- export -----------------------------------------------------------------------------
    def wide_columns(self, votes: VoteArrays, config: dict) -> dict[str, pa.Array]:
        """See the module docstring: the span lists (``support`` on ``label``), ``agreement``
        (exact), ``agreement_overlap``, ``confidence``; float64, null without votes."""
        labels = config["labels"]
        n = votes.n_tasks
        answers = json_values(votes.values)
        finals = json_values(votes.final)
        bounds = np.concatenate([[0], np.cumsum(votes.n_votes)]).astype("int64")
        exact = np.full(n, np.nan)
        overlap = np.full(n, np.nan)
        confidence = np.full(n, np.nan)
        supports: list[list[float] | None] = []
        for t in range(n):
            mine = [a or [] for a in answers[bounds[t] : bounds[t + 1]]]
            final = finals[t]
            supports.append(None if final is None or not mine else span_supports(final, mine))
            if not mine:
                continue
            exact[t] = mean_pairwise_f1(mine, "exact")
            overlap[t] = mean_pairwise_f1(mine, "overlap")
            if final is not None:
                confidence[t] = float(np.mean([span_f1(final, a) for a in mine]))
        return {
            "gold": _arrow_spans(json_values(votes.gold), labels),
            "label": _arrow_spans(finals, labels, supports),
            "agreement": pa.array(exact, pa.float64(), from_pandas=True),
            "confidence": pa.array(confidence, pa.float64(), from_pandas=True),
            "agreement_overlap": pa.array(overlap, pa.float64(), from_pandas=True),
            "expert_label": _arrow_spans(json_values(votes.expert), labels),
        }

    def long_label(self, values: pa.Array, config: dict) -> pa.Array:
        return _arrow_spans(json_values(values), config["labels"])

    def features(self, config: dict) -> dict[str, Any]:
        import datasets

        span = {
            "start": datasets.Value("int64"),
            "end": datasets.Value("int64"),
            "label": datasets.ClassLabel(names=[str(x) for x in config["labels"]]),
            "text": datasets.Value("string"),
            "support": datasets.Value("float64"),
        }
        return {c: datasets.List(span) for c in ("label", "gold", "expert_label")}

    # -- client side (project.to_pandas) ---------------------------------------------------
    def aggregate(
        self,
        votes: pd.DataFrame,
        method: Any,
        config: Any,
        tasks: pd.DataFrame | None = None,
        **params: Any,
    ) -> pd.DataFrame:
        """``<method>_label`` (lists of ``{start, end, label, confidence}``),
        ``<method>_agreement`` (mean pairwise exact span F1) and ``<method>_confidence`` (mean
        exact F1 of the answers with the result) per task, by
        :func:`~cynaps_data.consensus.spans.aggregate_spans`: ``span_vote`` (the platform's
        rule, parameter ``threshold``), ``bsc`` (Bayesian sequence combination), ``token_mv``,
        ``token_ds`` (sequence models over each task's span segments, or over its words cut
        at those boundaries when ``tasks``, the wide frame, holds the text field: then ``bsc``
        also reads the words). ``auto`` is ``bsc`` when the texts are there, else
        ``token_ds``: on the CoNLL-2003 MTurk crowd (6,040 sentences, character spans) strict
        entity F1 is 0.784 for ``bsc`` with the texts, 0.726 for ``token_ds``, 0.688 for
        ``bsc`` without the texts and 0.693 for ``span_vote`` (docs/annotation-types.md)."""
        from ..consensus.spans import aggregate_spans

        key = method_prefix(method)
        if key not in self.aggregation_methods:
            raise ValidationError(
                f"unknown spans method {method!r}; choose one of {list(self.aggregation_methods)}",
                param="method",
            )
        config = self.validate_config(config)
        frame = votes[["task", "worker"]].assign(
            spans=[list(a) if a is not None else [] for a in votes["label"].tolist()]
        )
        field = config["field"]
        texts = tasks[field] if tasks is not None and field in tasks.columns else None
        auto = "bsc" if texts is not None else "token_ds"
        out = aggregate_spans(
            frame,
            auto if key == "auto" else key,
            labels=config["labels"],
            allow_overlap=config["allow_overlap"],
            texts=texts,
            **params,
        )
        out.columns = [f"{key}_label", f"{key}_agreement", f"{key}_confidence"]
        return out

    # -- workbench --------------------------------------------------------------------------
    def widget(self) -> Traversable:
        return resources.files(__package__).joinpath("widgets/spans.js")

    # -- sandbox workforce ------------------------------------------------------------------
    def pseudo_truth(self, data_json: str, config: dict) -> Any:
        """The runs of capitalised words of the text (a sentence's first word alone is not a
        name), each labelled by a hash of its words; no text: no span."""
        data = orjson.loads(data_json) if data_json else {}
        try:
            text = text_of(data, config)
        except ValueError:
            return []
        labels = config["labels"]
        spans = []
        for match in CAPITALISED.finditer(text):
            start, end = match.start(), match.end()
            while end > start and text[end - 1] in "-'":
                end -= 1
            before = text[:start].rstrip()
            if not before or before[-1] in ".!?":  # a sentence's first word: drop it
                space = text.find(" ", start, end)
                if space < 0:
                    continue
                start = space + 1
            if end > start:
                digest = hashlib.sha256(text[start:end].encode()).digest()
                label = labels[digest[0] % len(labels)]
                spans.append({"start": start, "end": end, "label": label, "text": text[start:end]})
        return spans

    def simulate(
        self, truth: Any, config: dict, accuracy: float, rng: random.Random, data: Any = None
    ) -> Any:
        """Each true span is missed, moved by a token at one end, or given another label, at
        the member's own rates (each ``(1 - accuracy)`` times a factor drawn from ``rng``:
        miss 0.5-1.5, shift 0.5-1.5, confusion 0.3-1.0); the text is needed for the shifts."""
        error = max(0.0, 1.0 - float(accuracy))
        miss = min(0.9, error * rng.uniform(0.5, 1.5))
        shift = min(0.9, error * rng.uniform(0.5, 1.5))
        confuse = min(0.9, error * rng.uniform(0.3, 1.0))
        try:
            text = text_of(data, config) if data is not None else None
        except ValueError:
            text = None
        tokens = whitespace_tokenize(text) if text else []
        labels = config["labels"]
        out: list[dict] = []
        for start, end, label in spans_of(truth):
            if rng.random() < miss:
                continue
            if tokens and rng.random() < shift:
                start, end = _shifted(start, end, tokens, rng)
            if len(labels) > 1 and rng.random() < confuse:
                label = rng.choice([lb for lb in labels if lb != label])
            span = {"start": start, "end": end, "label": label}
            if all(end <= o["start"] or o["end"] <= start for o in out) or config["allow_overlap"]:
                out.append(span)
        if text is not None:
            for span in out:
                span["text"] = text[span["start"] : span["end"]]
        return sorted(out, key=lambda s: (s["start"], s["end"]))


def _shifted(start: int, end: int, tokens: list[tuple[int, int]], rng: random.Random) -> tuple:
    """``(start, end)`` grown or shrunk by one whitespace token at one end (never empty)."""
    inside = [k for k, (s, e) in enumerate(tokens) if s < end and e > start]
    if not inside:
        return start, end
    first, last = inside[0], inside[-1]
    moves = []
    if first > 0:
        moves.append((tokens[first - 1][0], end))
    if last + 1 < len(tokens):
        moves.append((start, tokens[last + 1][1]))
    if last > first:
        moves += [(tokens[first + 1][0], end), (start, tokens[last - 1][1])]
    return rng.choice(moves) if moves else (start, end)


TYPE = Spans()
