r"""(Weighted) majority vote with an explicit, seeded tie policy.

Model: no model. For task :math:`t` with answers :math:`\{(w, y)\}` and worker weights
:math:`v_w` (default 1),

.. math:: s_{tc} = \sum_{(w,y) \in t} v_w [y = c], \qquad
          \hat p_{tc} = s_{tc} / \sum_{c'} s_{tc'}, \qquad \hat z_t = \arg\max_c s_{tc}.

Ties (several classes with the top score) are broken uniformly at random with a
``numpy.random.Generator`` seeded by ``random_state`` (``tie_break="random"``, the default, so
the result is unbiased and reproducible), or towards the first class in label order
(``tie_break="first"``). ``skills_`` is each worker's agreement rate with the consensus.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ValidationError
from ._base import ArrayResult, BaseAggregator, argmax_rows, check_codes, rng_from
from ._encode import Encoded

__all__ = ["MajorityVote", "majority_vote_arrays"]

_TIE_POLICIES = ("random", "first")


def majority_vote_arrays(
    task: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_tasks: int | None = None,
    n_workers: int | None = None,
    n_classes: int | None = None,
    *,
    weights: np.ndarray | None = None,
    tie_break: str = "random",
    random_state: Any = 0,
    gold: np.ndarray | None = None,
    compute_skills: bool = True,
) -> ArrayResult:
    """Majority vote on integer codes (see module docstring).

    ``weights``: optional float array of length ``n_workers`` (non-negative).
    ``gold``: optional int array of length ``n_tasks`` with the gold class code or -1; gold
    tasks get a one-hot posterior and the gold label.
    """
    if tie_break not in _TIE_POLICIES:
        raise ValidationError(
            f"tie_break must be one of {_TIE_POLICIES}, got {tie_break!r}", param="tie_break"
        )
    t, w, y, n_t, n_w, k = check_codes(task, worker, label, n_tasks, n_workers, n_classes)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (n_w,):
            raise ValidationError(f"weights must have shape ({n_w},)", param="weights")
        if not np.all(np.isfinite(weights)) or (weights < 0).any():
            raise ValidationError("worker weights must be finite and >= 0", param="weights")
        vote_w = weights[w]
    else:
        vote_w = None
    counts = np.bincount(t * k + y, weights=vote_w, minlength=n_t * k).reshape(n_t, k)
    counts = counts.astype(np.float64, copy=False)
    rng = rng_from(random_state) if tie_break == "random" else None
    labels = argmax_rows(counts, rng)
    tot = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        probas = np.where(tot > 0, counts / np.where(tot > 0, tot, 1.0), 1.0 / k)
    if gold is not None:
        has = gold >= 0
        if has.any():
            probas[has] = 0.0
            probas[has, gold[has]] = 1.0
            labels[has] = gold[has]
    if compute_skills:
        n_by_w = np.bincount(w, minlength=n_w).astype(np.float64)
        agree = np.bincount(w, weights=(labels[t] == y).astype(np.float64), minlength=n_w)
        with np.errstate(invalid="ignore", divide="ignore"):
            skills = agree / n_by_w
    else:
        skills = np.full(n_w, np.nan)
    priors = probas.mean(axis=0)
    return ArrayResult(probas=probas, labels=labels, priors=priors, skills=skills, n_iter=0)


class MajorityVote(BaseAggregator):
    """Majority vote, optionally weighted per worker, with explicit seeded tie-breaking.

    Parameters
    ----------
    tie_break : "random" (default) or "first"
        How to break ties between top-voted classes: uniformly at random (seeded with
        ``random_state``) or the first class in label order.
    random_state : int, Generator or None
        Seed for tie-breaking; the same seed gives the same labels.
    weights : Mapping or Series worker -> weight, optional
        Per-worker vote weights (>= 0). Workers absent from the mapping get ``default_weight``.
    default_weight : float
        Weight of workers not listed in ``weights``.
    labels : sequence, optional
        Declared class set and order; answers outside it raise ``ValidationError``.

    Fitted: ``labels_``, ``probas_`` (vote shares), ``priors_``, ``skills_`` (agreement of each
    worker with the consensus), ``n_iter_ = 0``, ``loss_history_ = []``.
    """

    _min_workers = 2

    def __init__(
        self,
        tie_break: str = "random",
        random_state: Any = 0,
        weights: Mapping[Hashable, float] | pd.Series | None = None,
        default_weight: float = 1.0,
        labels: Sequence[Hashable] | None = None,
    ) -> None:
        self.tie_break = tie_break
        self.random_state = random_state
        self.weights = weights
        self.default_weight = default_weight
        self.labels = labels

    def _worker_weights(self, enc: Encoded) -> np.ndarray | None:
        if self.weights is None:
            return None
        wts = self.weights if isinstance(self.weights, pd.Series) else pd.Series(self.weights)
        arr = wts.reindex(enc.worker_names).to_numpy(dtype=np.float64, copy=True)
        arr[np.isnan(arr)] = float(self.default_weight)
        return arr

    def _fit_encoded(self, enc: Encoded, gold: np.ndarray) -> ArrayResult:
        return majority_vote_arrays(
            enc.task,
            enc.worker,
            enc.label,
            enc.n_tasks,
            enc.n_workers,
            enc.n_classes,
            weights=self._worker_weights(enc),
            tie_break=self.tie_break,
            random_state=self.random_state,
            gold=gold,
        )
