r"""Adaptive overlap, online: a per-annotator skill model updated one judgement at a time.

The platform's adaptive mode (``quality_settings.mode = "adaptive"``) asks for another judgement
on a task only while the task's posterior confidence is below a target. This module is its maths:
pure numpy, no database, no pandas. (The offline, refit-everything counterpart for a frame of
collected judgements is :mod:`cynaps_data.consensus.adaptive`.)

Data contracts
--------------
- ``k``: the number of classes (the answer space a type exposes, in a fixed order); answers are
  class indices ``0 … k-1``.
- **counts** of one annotator: float64 ``(k, k)``, ``counts[c, y]`` the (soft) number of tasks of
  true class ``c`` the annotator answered ``y``. Non-negative.
- **credit** of a task: float64 ``(k,)`` summing to 1, the class distribution each of the task's
  voters is credited with in the counts (the task's posterior, or one-hot gold / expert verdict).

Model
-----
Each annotator :math:`w` has a confusion matrix with a Dirichlet prior per true class
:math:`c`: :math:`\theta_{w,c\cdot} \sim \mathrm{Dir}(\alpha_{c\cdot})`, with
:math:`\alpha_{cc} = s\,a` and :math:`\alpha_{cy} = s\,(1-a)/(k-1)` for :math:`y \ne c`
(:data:`PRIOR_ACCURACY` :math:`a`, :data:`PRIOR_STRENGTH` :math:`s` pseudo-answers per class).
Its point estimate is the posterior mean
:math:`\hat\theta_{w,cy} = (\alpha_{cy} + N_{w,cy}) / \sum_{y'} (\alpha_{cy'} + N_{w,cy'})`.

A task with answers :math:`y_1 \dots y_n` from annotators :math:`w_1 \dots w_n` has the posterior

.. math:: q_c \propto \pi_c \prod_{i=1}^{n} \hat\theta_{w_i, c y_i}

with the class prior :math:`\pi_c \propto 1 + \sum_i \sum_y N_{w_i, cy}` (a uniform Dirichlet
plus the class frequencies the task's voters have been credited with). Its **confidence** is
:math:`\max_c q_c`, its label :math:`\arg\max_c q_c` (ties: the lowest index).

**Online update** (online EM): after each judgement the task's earlier credit
:math:`r^{old}` (zero for a task not credited yet) is taken out of its earlier voters' counts,
the posterior :math:`q` is computed from the counts without this task (so a task never vouches
for itself), and every voter, the new one included, gets the task's new credit :math:`r` (its
:math:`q`; one-hot for a task with gold or an expert's verdict) on the column of its answer:
:math:`N_{w,\cdot y_w} \mathrel{+}= r` (:func:`recredit`). Each vote is thus counted once,
against the task's latest credit.

**Value of the next judgement** (the assignment order): the mutual information (bits) between
the task's true class and one more answer from a typical annotator :math:`\bar\theta` (the mean
of the voters' confusions; the prior's for a task without votes):
:math:`\mathrm{gain} = \sum_{c,y} q_c \bar\theta_{cy} \log_2 \frac{\bar\theta_{cy}}
{\sum_{c'} q_{c'} \bar\theta_{c'y}}`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "MAX_CLASSES",
    "PRIOR_ACCURACY",
    "PRIOR_STRENGTH",
    "confusion",
    "recredit",
    "expected_gain",
    "expected_judgements",
    "posterior",
    "prior",
]

#: the prior's expected accuracy of an annotator nobody has seen yet
PRIOR_ACCURACY = 0.7
#: the prior's weight, in pseudo-answers per true class
PRIOR_STRENGTH = 4.0
#: the most classes the online model takes (its counts are ``k × k`` per annotator)
MAX_CLASSES = 50


def prior(k: int, accuracy: float = PRIOR_ACCURACY, strength: float = PRIOR_STRENGTH) -> np.ndarray:
    """The Dirichlet pseudo-counts ``(k, k)``: ``strength·accuracy`` on the diagonal, the rest
    spread evenly over the other answers (a single class: all on the diagonal)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k == 1:
        return np.full((1, 1), strength)
    alpha = np.full((k, k), strength * (1.0 - accuracy) / (k - 1))
    np.fill_diagonal(alpha, strength * accuracy)
    return alpha


def confusion(counts: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """Posterior-mean confusion ``(..., k, k)`` (rows: true class, columns: answer; rows sum to
    1) of counts ``(..., k, k)`` under the prior ``alpha`` (default :func:`prior`)."""
    counts = np.asarray(counts, dtype="float64")
    k = counts.shape[-1]
    a = prior(k) if alpha is None else alpha
    total = a + np.clip(counts, 0.0, None)
    return total / total.sum(axis=-1, keepdims=True)


def posterior(
    answers: Sequence[int], counts: np.ndarray, alpha: np.ndarray | None = None
) -> np.ndarray:
    """A task's class posterior ``(k,)`` from its ``answers`` (class indices, one per vote) and
    the voters' ``counts`` ``(n, k, k)`` in the same order (see the module's model)."""
    counts = np.asarray(counts, dtype="float64")
    answers = np.asarray(answers, dtype="int64")
    if counts.ndim != 3 or counts.shape[0] != len(answers):
        raise ValueError(f"counts must be (n_votes, k, k); got {counts.shape} for {len(answers)}")
    k = counts.shape[-1]
    if len(answers) and (answers.min() < 0 or answers.max() >= k):
        raise ValueError(f"answers must be class indices in [0, {k})")
    theta = confusion(counts, alpha)  # (n, k, k)
    class_counts = np.clip(counts, 0.0, None).sum(axis=(0, 2))  # (k,)
    log_q = np.log(1.0 + class_counts)
    if len(answers):
        log_q = log_q + np.log(theta[np.arange(len(answers)), :, answers]).sum(axis=0)
    log_q -= log_q.max()
    q = np.exp(log_q)
    return q / q.sum()


def recredit(
    counts: list[np.ndarray],
    answers: Sequence[int],
    credit: np.ndarray | None,
    old_credit: np.ndarray | None = None,
) -> None:
    """Move, in place, each voter's ``counts`` ``(k, k)`` (one per answer in ``answers``) from the
    task's ``old_credit`` to its ``credit`` on the column of the voter's answer (either ``None``:
    nothing to take away / add). Counts stay non-negative."""
    for c, y in zip(counts, answers, strict=True):
        column = c[:, y]
        if old_credit is not None:
            column = column - old_credit
        if credit is not None:
            column = column + credit
        c[:, y] = np.clip(column, 0.0, None)


def expected_gain(q: np.ndarray, theta: np.ndarray) -> float:
    """Mutual information (bits) between the true class (distribution ``q`` ``(k,)``) and one
    more answer from an annotator with confusion ``theta`` ``(k, k)`` (rows: true class);
    0 for a settled task or an uninformative annotator."""
    q = np.asarray(q, dtype="float64")
    e = np.clip(np.asarray(theta, dtype="float64"), 1e-12, None)
    p_y = q @ e  # (k,) marginal of the answer
    joint = q[:, None] * e
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log2(e / p_y[None, :]), 0.0)
    return float(max(terms.sum(), 0.0))


def expected_judgements(
    k: int,
    min_annotators: int,
    max_annotators: int,
    target_confidence: float,
    accuracy: float = PRIOR_ACCURACY,
    n_tasks: int = 4000,
    seed: int = 0,
) -> float:
    """Expected judgements per task under the stopping rule when every annotator is as the prior
    says (one-coin, ``accuracy``, errors uniform over the other classes) and the model has not
    learnt anything yet: a seeded Monte Carlo over ``n_tasks`` tasks (deterministic). The deposit
    quote shows it as the expected cost; the deposit itself covers ``max_annotators``."""
    if k < 2:
        return float(min_annotators)
    rng = np.random.default_rng(seed)
    theta = confusion(np.zeros((k, k)))
    truth = rng.integers(0, k, n_tasks)
    log_lik = np.zeros((n_tasks, k))
    used = np.zeros(n_tasks, dtype="int64")
    running = np.ones(n_tasks, dtype=bool)
    for n in range(1, max_annotators + 1):
        idx = np.flatnonzero(running)
        if not len(idx):
            break
        right = rng.random(len(idx)) < accuracy
        wrong = (truth[idx] + rng.integers(1, k, len(idx))) % k
        answer = np.where(right, truth[idx], wrong)
        log_lik[idx] += np.log(theta[:, answer].T)
        used[idx] = n
        if n >= min_annotators:
            q = np.exp(log_lik[idx] - log_lik[idx].max(axis=1, keepdims=True))
            confident = q.max(axis=1) / q.sum(axis=1) >= target_confidence
            running[idx[confident]] = False
    return float(used.mean())
