r"""Adaptive overlap, offline: which tasks need another judgement, and what it is worth.

:func:`next_judgements` takes the judgements collected so far (a long frame ``task``,
``worker``, ``label``), refits a skill model on all of them and returns one row per task:

=================  ==================================================================
``label``          current consensus label
``confidence``     posterior probability of ``label`` (calibrated for ``method="auto"``)
``n_judgements``   judgements so far (int64)
``expected_gain``  expected information (bits) one more judgement gives about the task's
                   true class (float64; NaN for a task without judgements)
``need_more``      whether the stopping rule asks for another judgement (bool)
``stop_reason``    why not: ``"confident"``, ``"max_judgements"``, ``"no_gain"``,
                   ``"budget"`` (it would need more, but ``budget`` went to tasks whose
                   next judgement is worth more); ``""`` when ``need_more``
=================  ==================================================================

rows sorted by ``need_more`` then ``expected_gain`` (the most valuable judgement first).

**Stopping rule** (documented in ``docs/consensus.md``): a task needs another judgement while
it has fewer than ``min_judgements``, or while its confidence is below ``target_confidence``,
it has fewer than ``max_judgements`` and its expected gain is above ``min_gain``. With a
``budget`` (judgements to hand out in this round), only the ``budget`` most valuable of those
tasks keep ``need_more``: first the tasks below ``min_judgements``, then by decreasing expected
gain (value of information: the next answer goes where it tells most about the true class).

**Expected gain**: the mutual information between the task's true class and its next answer,
the answer coming from a typical annotator of the crowd (confusion :math:`\bar e_{yc}`, the
workers' confusions averaged with their numbers of answers as weights):
:math:`\mathrm{gain} = \sum_{y,c} q_c \bar e_{yc} \log_2 \frac{\bar e_{yc}}{\sum_{c'} q_{c'}
\bar e_{yc'}}`. Unlike the one-step rise of P(label is right), which is 0 whenever a single
answer cannot flip the label, it is positive for every unsettled task, so tasks that need two
more answers are not mistaken for settled ones.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ValidationError
from ._base import fix_gold
from ._encode import check_id_types, encode, encode_gold
from .calibration import resampled_confidence

__all__ = ["expected_gain", "next_judgements"]

STOP_REASONS = ("", "confident", "max_judgements", "no_gain", "budget")


def expected_gain(q: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """Expected information (bits) one more answer gives about each task's true class: ``q``
    ``(n, k)`` posteriors, ``confusion`` ``(k, k)`` with ``confusion[y, c] = P(answer y | true
    class c)``; returns ``(n,)``, 0 for a settled task or an uninformative annotator."""
    e = np.clip(confusion, 1e-12, None)
    gain = np.zeros(q.shape[0])
    for yy in range(e.shape[0]):
        joint = q * e[yy][None, :]  # P(z = c, y)
        p_y = joint.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain += np.where(joint > 0, joint * np.log(e[yy][None, :] / p_y), 0.0).sum(axis=1)
    return np.maximum(gain, 0.0) / np.log(2.0)


def _typical_confusion(model: Any, k: int, counts: pd.Series) -> np.ndarray:
    """Answer-weighted mean confusion ``(k, k)`` of the fitted model's workers (``errors_``),
    else a one-coin matrix from the workers' mean agreement with the consensus."""
    err = getattr(model, "errors_", None)
    if err is not None:
        e = err.to_numpy().reshape(-1, k, k)
        workers = err.index.get_level_values(0)[::k]
        wts = counts.reindex(workers).fillna(0.0).to_numpy()
        conf = np.tensordot(wts, e, axes=1) / max(wts.sum(), 1e-12)
    else:
        s = float(np.average(model.skills_.reindex(counts.index), weights=counts.to_numpy()))
        conf = np.full((k, k), (1.0 - s) / max(k - 1, 1))
        np.fill_diagonal(conf, s)
    conf = np.clip(conf, 1e-6, None)
    return conf / conf.sum(axis=0, keepdims=True)


def next_judgements(
    df: pd.DataFrame,
    *,
    target_confidence: float = 0.95,
    max_judgements: int = 5,
    min_judgements: int = 1,
    min_gain: float = 0.0,
    method: Any = None,
    tasks: Sequence[Hashable] | None = None,
    labels: Sequence[Hashable] | None = None,
    gold: Any = None,
    calibrate: bool = False,
    budget: int | None = None,
    random_state: Any = 0,
    **params: Any,
) -> pd.DataFrame:
    """Which tasks need another judgement (see the module docstring for the columns and rule).

    ``df``: long frame ``task``, ``worker``, ``label``. ``method``: any name accepted by
    :func:`cynaps_data.consensus.aggregate` or an aggregator instance. Default (``None``):
    Dawid-Skene refit on everything so far with a Dirichlet prior of 4 correct : 1 wrong
    pseudo-answers per class (EBCC's prior), so a worker seen on two tasks is not taken for
    perfect, and one pseudo-task per class on the class prior, so a class nobody has voted for
    yet keeps a chance; fast enough to call after every batch.
    ``tasks``: every task of the job, so tasks without a judgement yet are listed too (they need
    one; gain NaN). ``gold``: Series of known answers (fixes those tasks, teaches the skills).
    ``calibrate``: temper the model's posterior with
    :func:`~cynaps_data.consensus.calibration.resampled_confidence` before the stopping rule
    (gold-free; the label does not change; skipped for ``"auto"``, which is calibrated
    already). Off by default: in the replay it moved the targets (0.8 calibrated costs about
    what 0.97 raw does) without a better cost/accuracy curve, at twice the compute.
    ``budget``: at most this many tasks get ``need_more`` (the rest that would: ``stop_reason``
    ``"budget"``), chosen by value of information as in the module docstring; ``None``: no cap.
    Extra keyword arguments go to the aggregator.
    """
    from . import get_aggregator  # the registry lives in the package __init__

    if not 0.0 < target_confidence <= 1.0:
        raise ValidationError("target_confidence must be in (0, 1]", param="target_confidence")
    if min_judgements < 0 or max_judgements < max(min_judgements, 1):
        raise ValidationError(
            "need 0 <= min_judgements <= max_judgements and max_judgements >= 1",
            param="max_judgements",
        )
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0
    ):
        raise ValidationError("budget must be an integer >= 0 or None", param="budget")
    if not isinstance(df, pd.DataFrame):
        raise ValidationError("df must be a DataFrame with task, worker, label", param="df")
    for col in ("task", "worker", "label"):
        if col not in df.columns:
            raise ValidationError(f"missing column {col!r}", param=col)
    if labels is not None:
        params["labels"] = labels
    if method is None:
        params = {"alpha_correct": 4.0, "alpha_wrong": 1.0, "alpha_prior": 1.0, **params}
        method = "ds"
    model = get_aggregator(method, **params)
    if df["worker"].nunique() >= 2:
        model.fit(df, gold=gold)
        probas = model.probas_
        k = probas.shape[1]
        counts = df.groupby("worker", sort=False).size().astype(np.float64)
        conf_mat = _typical_confusion(model, k, counts)
        q = probas.to_numpy()
        if calibrate and getattr(model, "calibration", "none") == "none":
            enc = model.encoded_
            q = resampled_confidence(
                enc.task, enc.worker, enc.label, q, enc.n_workers, random_state=random_state
            )
            if gold is not None:
                q = fix_gold(q, encode_gold(gold, enc))
        gain = expected_gain(q, conf_mat)
        out = pd.DataFrame(
            {
                "label": model.labels_,
                "confidence": q.max(axis=1),
                "expected_gain": gain,
            },
            index=probas.index,
        )
    else:  # too little to fit a skill model: every judged task counts its plurality
        # (a single annotator so far: the models need two, the plurality needs one)
        from .majority_vote import majority_vote_arrays

        if len(df) == 0:
            out = pd.DataFrame(
                {"label": pd.Series(dtype=object), "confidence": [], "expected_gain": []}
            )
        else:
            enc = encode(df, labels, min_workers=1)
            mv = majority_vote_arrays(*enc.codes, gold=encode_gold(gold, enc))
            out = pd.DataFrame(
                {
                    "label": enc.label_names.take(mv.labels),
                    "confidence": mv.probas.max(axis=1),
                    "expected_gain": np.nan,
                },
                index=enc.task_names,
            )
    n = df.groupby("task", sort=False).size() if len(df) else pd.Series(dtype=np.int64)
    out["n_judgements"] = n.reindex(out.index).fillna(0).astype(np.int64)
    if tasks is not None:
        missing = pd.Index(tasks).difference(out.index)
        if len(missing) and len(out) and missing.inferred_type != out.index.inferred_type:
            check_id_types(missing, out.index, param="tasks")
        if len(missing):
            extra = pd.DataFrame(
                {"label": None, "confidence": np.nan, "expected_gain": np.nan, "n_judgements": 0},
                index=missing,
            )
            out = pd.concat([out, extra.astype({"n_judgements": np.int64})])
    nj = out["n_judgements"].to_numpy()
    conf = out["confidence"].to_numpy(dtype=np.float64)
    gain = out["expected_gain"].to_numpy(dtype=np.float64)
    below_min = nj < min_judgements
    at_max = nj >= max_judgements
    confident = conf >= target_confidence
    no_gain = ~(gain > min_gain) & ~np.isnan(gain)
    need = below_min | (~confident & ~at_max & ~no_gain)
    reason = np.where(
        need, "", np.where(confident, "confident", np.where(at_max, "max_judgements", "no_gain"))
    )
    if budget is not None and need.sum() > budget:
        # value of information: tasks below min_judgements first, then by decreasing gain
        key = np.where(below_min, np.inf, np.nan_to_num(gain, nan=np.inf))
        cand = np.flatnonzero(need)
        keep = cand[np.argsort(-key[cand], kind="stable")[: int(budget)]]
        over = need.copy()
        over[keep] = False
        need = need & ~over
        reason = np.where(over, "budget", reason)
    out["need_more"] = need
    out["stop_reason"] = pd.Categorical(reason, categories=list(STOP_REASONS))
    out.index.name = "task"
    order = np.lexsort((-np.nan_to_num(gain, nan=np.inf), ~need))
    cols = ["label", "confidence", "n_judgements", "expected_gain", "need_more", "stop_reason"]
    return out.iloc[order][cols]
