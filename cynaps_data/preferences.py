"""Preference data for model training: from ``pairwise`` / ``ranking`` projects to TRL datasets,
item leaderboards and position-bias reports.

Entry points (each takes a project, or its wide export ``project.to_pandas()``)::

    from cynaps_data import preferences

    ds = preferences.to_trl(project)                          # {"prompt", "chosen", "rejected"}
    ds = preferences.to_trl(project, format="conversational") # lists of {"role", "content"}
    ds = preferences.to_trl(project, format="unpaired")       # KTO: {"prompt", "completion", "label"}
    board = preferences.leaderboard(project)                  # item scores (robust Bradley–Terry)
    skills = preferences.annotator_skills(project)            # per annotator: skill, left bias
    bias = preferences.position_bias(project)                 # per annotator: left-choice rate

TRL formats (https://huggingface.co/docs/trl/dataset_formats; ``datasets.Dataset`` columns):

============================  ======================================================================
``format``                    columns (types)
============================  ======================================================================
``standard``                  ``prompt``, ``chosen``, ``rejected`` (string)
``implicit``                  ``chosen``, ``rejected`` (string: the prompt + ``separator`` + reply)
``conversational``            ``prompt`` (list of messages), ``chosen``, ``rejected`` (lists of
                              messages ``{"role": "assistant", "content": ...}``)
``conversational_implicit``   ``chosen``, ``rejected`` (user prompt message + assistant reply)
``unpaired``                  ``prompt``, ``completion`` (string), ``label`` (bool): KTO's
                              unpaired preference, two rows per pair (chosen True, rejected False)
``conversational_unpaired``   the same with message lists
============================  ======================================================================

A message is ``{"role": str, "content": str}`` (``datasets``: a list of structs with ``content``
and ``role`` strings). Standard and conversational preference datasets are what ``DPOTrainer``
and ``RewardTrainer`` read; unpaired ones ``KTOTrainer``. ``margin=True`` adds a float64
``margin`` column (RewardTrainer's optional margin: the pair's vote margin in [0, 1]).

Which pairs: a pairwise task gives one pair (its final label's chosen over rejected; ties and
tasks without a final label are left out); a ranking task gives the pairs of its final order
(``pairs="all"`` every pair, ``"adjacent"``, or ``"best_worst"``). ``min_agreement`` keeps only
tasks whose agreement reaches it. Candidates that are not strings are JSON-encoded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from .consensus.preferences import (
    PAIR_MODES,
    position_bias_of,
)
from .errors import ValidationError

if TYPE_CHECKING:
    import datasets
    import pandas as pd

FORMATS = (
    "standard",
    "implicit",
    "conversational",
    "conversational_implicit",
    "unpaired",
    "conversational_unpaired",
)
PREFERENCE_TYPES = ("pairwise", "ranking")


def _frame(source: Any) -> pd.DataFrame:
    """The wide export of ``source`` (a project or a frame from ``project.to_pandas()``)."""
    import pandas as pd

    frame = source if isinstance(source, pd.DataFrame) else source.to_pandas()
    kind = (frame.attrs.get("cynaps") or {}).get("annotation_type")
    if kind not in PREFERENCE_TYPES:
        raise ValidationError(
            f"preference exports need a pairwise or ranking project's export, got {kind!r} "
            "(a frame read back from a file loses its project: use the project or its frame)",
            param="source",
        )
    return frame


def _type_and_config(frame: pd.DataFrame) -> tuple[Any, dict]:
    from .types import get_type

    info = frame.attrs["cynaps"]
    atype = get_type(info["annotation_type"])
    return atype, atype.validate_config(info.get("labels"))


def comparisons(source: Any, *, pairs: str = "all") -> pd.DataFrame:
    """Every annotator judgement as pairwise comparisons across tasks: ``task`` (int64),
    ``worker``, ``left``, ``right`` (item ids, as shown), ``label`` (the winner's id or
    ``"tie"``) — the frame :mod:`cynaps_data.consensus.pairwise` models fit. A ranking gives
    the ``pairs`` of each order (see :func:`~cynaps_data.consensus.preferences.ranking_pairs`)."""
    if pairs not in PAIR_MODES:
        raise ValidationError(f"pairs must be one of {PAIR_MODES}, got {pairs!r}", param="pairs")
    frame = _frame(source)
    atype, config = _type_and_config(frame)
    return atype.comparisons(frame, config, pairs=pairs)


def leaderboard(
    source: Any, method: Any = "auto", *, pairs: str = "all", **params: Any
) -> pd.DataFrame:
    """Item scores across the project's tasks from every annotator judgement (not just the
    final labels), by a model of :mod:`cynaps_data.consensus.pairwise` (``"auto"`` = its robust
    Bradley–Terry with annotator skills and position biases, ``"bt"`` the plain one;
    parameters go to the model). Returns its ``scores_frame_`` sorted best
    first: index ``item``; ``score``, ``se``, ``ci_low``, ``ci_high`` (float64), ``rank``,
    ``n_comparisons`` (int64). A comparison graph in pieces (items never compared, directly
    or through others) is a ``ValidationError`` from the model."""
    from .consensus.pairwise import aggregate_pairwise

    table = comparisons(source, pairs=pairs)
    if table.empty:
        raise ValidationError("no annotator judgements to rank items by yet", param="source")
    board = aggregate_pairwise(table[["worker", "left", "right", "label"]], method, **params)
    board = board.sort_values(["rank", "score"], ascending=[True, False])
    board.index.name = "item"
    return board


def annotator_skills(source: Any, *, pairs: str = "all", **params: Any) -> pd.DataFrame:
    """The robust model's view of the annotators (:class:`~cynaps_data.consensus.pairwise.
    AnnotatorBradleyTerry` fitted on every judgement, parameters go to it): index ``worker``;
    ``skill`` (how sharply the annotator follows the item scores; near 0 = careless, < 0 =
    adversarial), ``bias`` (log-odds toward the left candidate), ``p_left`` and
    ``n_comparisons``."""
    from .consensus.pairwise import AnnotatorBradleyTerry

    table = comparisons(source, pairs=pairs)
    if table.empty:
        raise ValidationError("no annotator judgements yet", param="source")
    model = AnnotatorBradleyTerry(**params).fit(table[["worker", "left", "right", "label"]])
    out = model.workers_frame_.copy()
    out.index.name = "worker"
    return out


def position_bias(source: Any) -> pd.DataFrame:
    """Per annotator: how often the candidate shown left (pairwise) or on top of the two
    (ranking pairs) was preferred. Index ``worker``; ``n_decisive`` (int64, judged pairs that
    are not ties), ``left_rate`` (float64) and ``p_value`` (float64, exact two-sided binomial
    test of a rate of 1/2; small = a real bias). Sorted by ``p_value``."""
    import pandas as pd

    frame = _frame(source)
    atype, config = _type_and_config(frame)
    by_worker: dict[str, list[bool]] = {}
    for worker, left in atype.left_decisions(frame, config):
        by_worker.setdefault(worker, []).append(left)
    rows = {w: position_bias_of(v) for w, v in by_worker.items()}
    out = pd.DataFrame(
        {
            "n_decisive": pd.Series({w: r["n_decisive"] for w, r in rows.items()}, dtype="int64"),
            "left_rate": pd.Series({w: r["left_rate"] for w, r in rows.items()}, dtype="float64"),
            "p_value": pd.Series({w: r["p_value"] for w, r in rows.items()}, dtype="float64"),
        }
    )
    out.index.name = "worker"
    return out.sort_values("p_value", kind="stable")


def preference_pairs(
    source: Any, *, pairs: str = "all", min_agreement: float | None = None
) -> pd.DataFrame:
    """The final labels as training pairs: ``task`` (int64), ``prompt``, ``chosen``,
    ``rejected`` (object: the data values), ``chosen_id``, ``rejected_id`` (str),
    ``agreement`` and ``margin`` (float64; a ranking's margin is the difference of the two
    candidates' mean ranks over ``n - 1``)."""
    import pandas as pd

    if pairs not in PAIR_MODES:
        raise ValidationError(f"pairs must be one of {PAIR_MODES}, got {pairs!r}", param="pairs")
    frame = _frame(source)
    atype, config = _type_and_config(frame)
    names = ("task", "prompt", "chosen", "rejected", "chosen_id", "rejected_id")
    names += ("agreement", "margin")
    found = list(atype.preference_rows(frame, config, pairs, min_agreement))
    rows = {k: [r[n] for r in found] for n, k in enumerate(names)}
    out = pd.DataFrame(
        {
            "task": pd.Series(rows["task"], dtype="int64"),
            **{
                k: pd.Series(rows[k], dtype=object)
                for k in ("prompt", "chosen", "rejected", "chosen_id", "rejected_id")
            },
            "agreement": pd.Series(rows["agreement"], dtype="float64"),
            "margin": pd.Series(rows["margin"], dtype="float64"),
        }
    )
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _user(prompt: Any) -> list[dict[str, str]]:
    return [{"role": "user", "content": _text(prompt)}] if prompt is not None else []


def _assistant(reply: Any) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": _text(reply)}]


def to_trl(
    source: Any,
    format: str = "standard",
    *,
    pairs: str = "all",
    min_agreement: float | None = None,
    margin: bool = False,
    separator: str = "\n\n",
) -> datasets.Dataset:
    """The project's final preferences as a ``datasets.Dataset`` in one of TRL's formats (the
    module docstring's table), ready for ``DPOTrainer`` / ``RewardTrainer`` (paired formats)
    or ``KTOTrainer`` (unpaired). ``separator`` joins prompt and reply in the implicit-prompt
    forms. An unknown format is a ``ValidationError``; a project without a prompt field gives
    empty prompts in the explicit forms (use ``implicit`` then)."""
    import datasets

    if format not in FORMATS:
        raise ValidationError(f"format must be one of {FORMATS}, got {format!r}", param="format")
    table = preference_pairs(source, pairs=pairs, min_agreement=min_agreement)
    prompts, chosen, rejected = table["prompt"], table["chosen"], table["rejected"]
    message = datasets.Features(
        {"content": datasets.Value("string"), "role": datasets.Value("string")}
    )
    messages = [message]  # a list of structs, as TRL's own datasets declare it
    text = datasets.Value("string")
    columns: dict[str, list] = {}
    if format == "standard":
        columns = {
            "prompt": [_text(p) for p in prompts],
            "chosen": [_text(c) for c in chosen],
            "rejected": [_text(r) for r in rejected],
        }
        features = {"prompt": text, "chosen": text, "rejected": text}
    elif format == "implicit":

        def join(p: Any, reply: Any) -> str:
            return _text(reply) if p is None else _text(p) + separator + _text(reply)

        columns = {
            "chosen": [join(p, c) for p, c in zip(prompts, chosen, strict=True)],
            "rejected": [join(p, r) for p, r in zip(prompts, rejected, strict=True)],
        }
        features = {"chosen": text, "rejected": text}
    elif format == "conversational":
        columns = {
            "prompt": [_user(p) or [{"role": "user", "content": ""}] for p in prompts],
            "chosen": [_assistant(c) for c in chosen],
            "rejected": [_assistant(r) for r in rejected],
        }
        features = {"prompt": messages, "chosen": messages, "rejected": messages}
    elif format == "conversational_implicit":
        columns = {
            "chosen": [_user(p) + _assistant(c) for p, c in zip(prompts, chosen, strict=True)],
            "rejected": [_user(p) + _assistant(r) for p, r in zip(prompts, rejected, strict=True)],
        }
        features = {"chosen": messages, "rejected": messages}
    else:  # unpaired (KTO): the chosen reply is desirable, the rejected one is not
        conversational = format == "conversational_unpaired"
        prompt_col, completion, label = [], [], []
        for p, c, r in zip(prompts, chosen, rejected, strict=True):
            for reply, good in ((c, True), (r, False)):
                if conversational:
                    prompt_col.append(_user(p) or [{"role": "user", "content": ""}])
                    completion.append(_assistant(reply))
                else:
                    prompt_col.append(_text(p))
                    completion.append(_text(reply))
                label.append(good)
        columns = {"prompt": prompt_col, "completion": completion, "label": label}
        kind = messages if conversational else text
        features = {"prompt": kind, "completion": kind, "label": datasets.Value("bool")}
    if margin:
        values = table["margin"].to_numpy(dtype="float64")
        if format in ("unpaired", "conversational_unpaired"):
            values = np.repeat(values, 2)
        columns["margin"] = values.tolist()
        features["margin"] = datasets.Value("float64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


__all__ = [
    "FORMATS",
    "annotator_skills",
    "comparisons",
    "leaderboard",
    "position_bias",
    "preference_pairs",
    "to_trl",
]
