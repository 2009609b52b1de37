"""Free text (transcriptions, short answers): the value is a string.

Config (the project's ``labels``): ``{"max_length": 2000, "placeholder": "Type the answer",
"field": None}`` — ``max_length`` in characters (1 … 100,000), ``placeholder`` the text box's
hint, ``field`` the task data field the workbench shows above the box (an audio or image URL,
or text; ``None``: the widget shows nothing extra, the page shows the data). ``None`` or ``{}``
means the defaults; a missing key takes its default; an unknown key is an error.

Value: the text as typed (kept verbatim: no stripping, no case folding; ``""`` is an answer),
at most ``max_length`` characters, no NUL, valid Unicode. Label Studio: a ``textarea`` region
``{"text": ["..."]}`` (several entries are joined with newlines).

Consensus (:func:`cynaps_data.consensus.text.text_consensus`): answers are compared after the
'words' normalisation (case folded, punctuation to spaces). If the most common normalised
answer's share reaches ``consensus_threshold`` (and is not tied) it is final; else the medoid
(largest summed word-edit similarity to the others) is final when the agreement (mean pairwise
similarity) reaches the threshold; else the task is disputed (expert review) or gets one more
annotator up to ``max_annotators`` and then takes the medoid (``majority``).

Export: ``label``/``gold``/``expert_label`` Arrow ``string`` (null where none; ``datasets``
``Value("string")``), ``agreement`` (mean pairwise similarity of the votes), ``confidence`` (mean
similarity of the final text to the votes), ``candidates`` (list of the annotators' texts in
vote order). Client aggregation: ``auto`` = ``rover`` (reliability-weighted ROVER) and
``medoid``.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ..errors import ValidationError
from .base import Decision, VoteArrays, json_values, method_prefix

if TYPE_CHECKING:  # pandas and consensus.text load when a hook needs them, not with the server
    import pandas as pd

DEFAULT_MAX_LENGTH = 2000
MAX_MAX_LENGTH = 100_000
MAX_PLACEHOLDER = 200
MAX_FIELD = 200
DEFAULT_PLACEHOLDER = "Type the answer"
#: distinct normalised answers kept in the vote summary
SUMMARY_TOP = 10
#: the pseudo-truth's vocabulary (a task without gold gets a sentence of these)
WORDS = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "small",
    "birds",
    "sing",
    "near",
    "old",
    "river",
    "bank",
    "under",
    "bright",
    "morning",
    "light",
    "and",
    "children",
    "play",
    "with",
    "red",
    "kites",
    "on",
    "green",
    "hills",
)
PUNCTUATION = ".,;!?"


def _strings(texts: Any) -> list[str | None]:
    """JSON texts as Python strings; ``""`` (none), null or a non-string is ``None``."""
    return [v if isinstance(v, str) else None for v in json_values(texts)]


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _is_url(text: str) -> bool:
    head = text.strip()[:8].lower()
    return head.startswith(("http://", "https://", "/v1/"))


class Text:
    name = "text"
    price_per_judgement_cents = 3000
    aggregation_methods = ("auto", "rover", "medoid")
    default_method = "auto"
    agreement_metrics = ("text_alpha", "text_agreement")

    # -- config and values ------------------------------------------------------------------
    def validate_config(self, config: Any) -> dict:
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ValueError(
                'labels must be an object {"max_length": <int>, "placeholder": <str>, '
                f'"field": <str or null>}} (or null for the defaults), got {type(config).__name__}'
            )
        unknown = sorted(set(config) - {"max_length", "placeholder", "field"})
        if unknown:
            raise ValueError(
                f"labels.{unknown[0]} is not a setting of the text type "
                "(max_length, placeholder, field)"
            )
        max_length = config.get("max_length", DEFAULT_MAX_LENGTH)
        if isinstance(max_length, np.integer):  # e.g. a pandas/numpy computed length
            max_length = int(max_length)
        if (
            not isinstance(max_length, int)
            or isinstance(max_length, bool)
            or not 1 <= max_length <= MAX_MAX_LENGTH
        ):
            raise ValueError(
                f"labels.max_length must be an integer from 1 to {MAX_MAX_LENGTH:,}, "
                f"got {max_length!r}"
            )
        placeholder = config.get("placeholder", DEFAULT_PLACEHOLDER)
        if placeholder is None:
            placeholder = ""
        if not isinstance(placeholder, str) or len(placeholder) > MAX_PLACEHOLDER:
            raise ValueError(
                f"labels.placeholder must be a string of at most {MAX_PLACEHOLDER} characters"
            )
        field = config.get("field")
        if field is not None and (
            not isinstance(field, str) or not field.strip() or len(field) > MAX_FIELD
        ):
            raise ValueError(
                f"labels.field must be null or the name of a task data field "
                f"(1 to {MAX_FIELD} characters), got {field!r}"
            )
        if "\x00" in placeholder or (field is not None and "\x00" in field):
            raise ValueError("labels.placeholder and labels.field must not hold NUL characters")
        return {"max_length": max_length, "placeholder": placeholder, "field": field}

    def validate_value(self, value: Any, config: dict, data: Any = None) -> str:
        if isinstance(value, dict) and "text" in value:  # Label Studio's textarea value
            value = self.from_label_studio({"type": "textarea", "value": value}, config)
        if not isinstance(value, str):
            raise ValueError(f"the answer must be a string of text, got {type(value).__name__}")
        if "\x00" in value:
            raise ValueError("the answer must not contain NUL characters")
        limit = config["max_length"]
        if len(value) > limit:
            raise ValueError(
                f"the answer is {len(value):,} characters long; this project allows at most "
                f"{limit:,} (labels.max_length)"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the answer is not valid Unicode (a lone surrogate)") from None
        return value

    def to_label_studio(self, value: Any, config: dict) -> dict:
        return {"type": "textarea", "value": {"text": [value]}}

    def from_label_studio(self, region: dict, config: dict) -> Any:
        if region.get("type") != "textarea":
            raise ValueError("not a 'textarea' result")
        text = (region.get("value") or {}).get("text")
        if isinstance(text, str):
            return text
        if isinstance(text, list) and text and all(isinstance(t, str) for t in text):
            return "\n".join(text)
        raise ValueError(
            f'a textarea result must hold {{"text": ["..."]}} (one or more strings), got {text!r}'
        )

    # -- platform consensus -----------------------------------------------------------------
    def decide(self, votes: list[Any], quality: dict, needed: int, config: Any = None) -> Decision:
        """Exact (normalised) majority at or above ``consensus_threshold`` and not tied: final
        (``consensus``). Else the medoid, final when the agreement (mean pairwise word-edit
        similarity) reaches the threshold. Else disputed (expert review) or one more annotator
        up to ``max_annotators``, then the medoid (``majority``)."""
        from ..consensus.text import DEFAULT_NORMALIZER, text_consensus

        if len(votes) < needed:
            return Decision("pending", needed)
        threshold = quality["consensus_threshold"]
        result = text_consensus(votes, min_share=2.0)  # the medoid and the agreement
        counts = Counter(DEFAULT_NORMALIZER.many(votes))
        ranked = counts.most_common(2)
        tied = len(ranked) > 1 and ranked[0][1] == ranked[1][1]
        if not tied and ranked[0][1] / len(votes) >= threshold:
            top = ranked[0][0]
            winner = next(v for v in votes if DEFAULT_NORMALIZER(v) == top)
            return Decision("completed", needed, winner, "consensus", result.agreement)
        if result.agreement >= threshold:
            return Decision("completed", needed, result.text, "consensus", result.agreement)
        if quality["enable_expert_review"]:
            return Decision("disputed", needed, None, None, result.agreement)
        if needed < quality["max_annotators"]:
            return Decision("pending", needed + 1, None, None, result.agreement)
        return Decision("completed", needed, result.text, "majority", result.agreement)

    def summarize(self, votes: list[Any], config: dict | None) -> dict[str, Any]:
        """``{"answers": [{"text": <normalised answer>, "count": n}, ...], "n_distinct": k}``:
        the distinct normalised answers (words joined by single spaces), most voted first (ties
        in first-vote order), at most ten. The agreement is the task's own ``agreement``."""
        from ..consensus.text import DEFAULT_NORMALIZER

        counts = Counter(" ".join(w) for w in DEFAULT_NORMALIZER.many(votes))
        top = counts.most_common(SUMMARY_TOP)
        return {
            "answers": [{"text": text, "count": n} for text, n in top],
            "n_distinct": len(counts),
        }

    # -- export -----------------------------------------------------------------------------
    def wide_columns(self, votes: VoteArrays, config: dict) -> dict[str, pa.Array]:
        """``gold``, ``label``, ``expert_label`` strings; ``agreement`` (mean pairwise
        similarity, 1.0 for one vote) and ``confidence`` (mean similarity of the final text to
        the votes), float64, null without votes; ``candidates`` list<string> of the votes."""
        from ..consensus.text import edit_similarity, text_consensus

        n = votes.n_tasks
        texts = _strings(votes.values)
        finals = _strings(votes.final)
        bounds = np.concatenate([[0], np.cumsum(votes.n_votes)]).astype("int64")
        agreement = np.full(n, np.nan)
        confidence = np.full(n, np.nan)
        candidates: list[list[str]] = []
        for t in range(n):
            answers = [a if a is not None else "" for a in texts[bounds[t] : bounds[t + 1]]]
            candidates.append(answers)
            if not answers:
                continue
            agreement[t] = text_consensus(answers, min_share=2.0).agreement
            if finals[t] is not None:
                confidence[t] = float(np.mean([edit_similarity(finals[t], a) for a in answers]))
        return {
            "gold": pa.array(_strings(votes.gold), pa.string()),
            "label": pa.array(finals, pa.string()),
            "agreement": pa.array(agreement, pa.float64(), from_pandas=True),
            "confidence": pa.array(confidence, pa.float64(), from_pandas=True),
            "candidates": pa.array(candidates, pa.list_(pa.string())),
            "expert_label": pa.array(_strings(votes.expert), pa.string()),
        }

    def long_label(self, values: pa.Array, config: dict) -> pa.Array:
        return pa.array(_strings(values), pa.string())

    def features(self, config: dict) -> dict[str, Any]:
        import datasets

        return {c: datasets.Value("string") for c in ("label", "gold", "expert_label")}

    # -- client side (project.to_pandas) ---------------------------------------------------
    def aggregate(
        self, votes: pd.DataFrame, method: str, config: Any, **params: Any
    ) -> pd.DataFrame:
        """``<method>_label`` (str) and ``<method>_agreement``/``<method>_confidence`` (float64)
        per task from the annotators' ``votes`` (columns task, worker, label): ``auto`` and
        ``rover`` = :class:`~cynaps_data.consensus.text.TextROVER` (reliability-weighted),
        ``medoid`` = :class:`~cynaps_data.consensus.text.TextMedoid`; ``params`` go to it."""
        import pandas as pd

        from ..consensus.text import TextMedoid, TextROVER, edit_similarity

        key = method_prefix(method)
        classes = {"auto": TextROVER, "rover": TextROVER, "medoid": TextMedoid}
        if isinstance(method, (TextROVER, TextMedoid)):
            model = method.set_params(**params) if params else method
        elif key not in classes:
            raise ValidationError(
                f"unknown method {method!r} for text; choose one of {list(classes)} "
                "or a TextROVER / TextMedoid object",
                param="method",
            )
        else:
            try:
                model = classes[key](**params)
            except TypeError as exc:
                raise ValidationError(
                    f"bad parameters for {classes[key].__name__}: {exc}", param="method"
                ) from None
        columns = [f"{key}_label", f"{key}_agreement", f"{key}_confidence"]
        if votes.empty:
            out = pd.DataFrame(
                {c: pd.Series(dtype="str" if c.endswith("label") else "float64") for c in columns}
            )
            out.index.name = "task"
            return out
        long = pd.DataFrame(
            {
                "task": votes["task"].to_numpy(),
                "worker": votes["worker"].astype(str).to_numpy(),
                "text": votes["label"].astype(object).to_numpy(),
            }
        )
        model.fit(long)
        texts = model.texts_
        grouped = long.groupby("task", sort=False)["text"].agg(list)
        confidence = [
            float(np.mean([edit_similarity(texts[t], a) for a in answers]))
            for t, answers in grouped.items()
        ]
        out = pd.DataFrame(
            {
                columns[0]: texts.astype("str"),
                columns[1]: model.agreement_.astype("float64"),
                columns[2]: pd.Series(confidence, index=grouped.index, dtype="float64"),
            }
        )
        out.index.name = "task"
        return out

    def to_pandas_columns(self, frame: pd.DataFrame, config: Any) -> pd.DataFrame:
        """``label``, ``gold``, ``expert_label``: pandas' string dtype (``str``, NaN where
        none); ``candidates``: Python lists of ``str`` (``[]`` without votes)."""
        import pandas as pd

        for name in ("label", "gold", "expert_label"):
            if name in frame.columns:
                # astype("str") alone turns None into the text "None" on pandas 2.x (object
                # strings); keep the missing values missing on every pandas
                missing = frame[name].isna()
                frame[name] = frame[name].astype("str").where(~missing, None)
        if "candidates" in frame.columns:
            frame["candidates"] = pd.Series(
                [[str(t) for t in v] if _is_list(v) else [] for v in frame["candidates"]],
                index=frame.index,
                dtype=object,
            )
        return frame

    # -- workbench --------------------------------------------------------------------------
    def widget(self) -> Traversable:
        return resources.files(__package__).joinpath("widgets/text.js")

    # -- sandbox workforce ------------------------------------------------------------------
    def pseudo_truth(self, data_json: str, config: dict) -> Any:
        """The configured ``field``'s text (or else the first text field) when it is not a URL,
        cut to ``max_length``; otherwise a sentence of 5-10 words picked by a hash of the data."""
        data = orjson.loads(data_json) if data_json else {}
        if isinstance(data, dict):
            field = config.get("field")
            fields = [field] if field in data else []
            fields += [k for k in data if k != field]
            for key in fields:
                value = data[key]
                if isinstance(value, str) and value.strip() and not _is_url(value):
                    return value.replace("\x00", "")[: config["max_length"]]
        digest = hashlib.sha256(data_json.encode()).digest()
        n_words = 5 + digest[0] % 6
        sentence = " ".join(WORDS[b % len(WORDS)] for b in digest[1 : 1 + n_words])
        return (sentence[0].upper() + sentence[1:] + ".")[: config["max_length"]]

    def simulate(
        self, truth: Any, config: dict, accuracy: float, rng: random.Random, data: Any = None
    ) -> Any:
        """The truth with word drops, typos (two adjacent characters swapped) and case or
        punctuation changes, at per-word rates drawn from ``rng`` and scaled by
        ``1 - accuracy`` (an annotator of accuracy 1 types the truth exactly)."""
        text = truth if isinstance(truth, str) else ""
        words = text.split()
        scale = max(0.0, 1.0 - accuracy)
        if not words or scale == 0.0:
            return text
        drop = scale * rng.uniform(0.1, 0.6)
        typo = scale * rng.uniform(0.2, 1.0)
        style = min(1.0, scale * rng.uniform(0.5, 2.0))
        out = []
        for word in words:
            if len(words) > 1 and rng.random() < drop:
                continue
            if len(word) > 1 and rng.random() < typo:
                i = rng.randrange(len(word) - 1)
                word = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
            if rng.random() < style:
                word = (
                    word[0].swapcase() + word[1:]
                    if rng.random() < 0.5
                    else word.rstrip(PUNCTUATION)
                ) or word
            out.append(word)
        if not out:
            out = [words[0]]
        return " ".join(out)[: config["max_length"]]


TYPE = Text()
