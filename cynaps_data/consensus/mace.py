r"""MACE: Multi-Annotator Competence Estimation (Hovy, Berg-Kirkpatrick, Vaswani & Hovy, 2013).

Each worker :math:`w` either *knows* the answer (probability :math:`\theta_w`) and gives the
true class, or *spams* and draws an answer from its own strategy :math:`\xi_w \in \Delta^K`:

.. math:: P(y \mid z_t = c) = (1-\theta_w)\,\xi_{wy} + \theta_w [y = c],
          \qquad z_t \sim \mathrm{Uniform}(K).

Variational Bayes (``method="vb"``, default, as in MACE and crowd-kit) with priors
:math:`\theta_w \sim \mathrm{Beta}(\beta, \alpha)` (``alpha = beta = 0.5``) and
:math:`\xi_w \sim \mathrm{Dir}(10)`: the E-step uses :math:`\exp E_q[\log \cdot]` of the
parameters, in log space (no underflow on tasks with many answers); expected counts per answer
are :math:`k = q_{ty}\,\theta_w / ((1-\theta_w)\xi_{wy} + \theta_w)` (knowing) and
:math:`1-k` (spamming, credited to :math:`\xi_{wy}`). ``method="em"`` uses maximum-likelihood
M-steps with additive ``smoothing``. ``n_restarts`` random initialisations (seeded by
``random_state``, each different) are run for up to ``n_iter`` iterations (early stop when the
per-answer log marginal likelihood rises by less than ``tol``); the best restart by marginal
likelihood is kept. ``learn_priors=True`` (default; the original MACE and crowd-kit use a
uniform class prior, ``learn_priors=False``) re-estimates the class prior from the posteriors
with one pseudo-count per class; on imbalanced data (product, ZenCrowd) the uniform prior costs
up to 10 points. ``skills_`` is the posterior mean competence :math:`E[\theta_w]`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import digamma

from ._base import (
    ArrayResult,
    BaseAggregator,
    aggregator_params,
    argmax_rows,
    check_choice,
    check_codes,
    check_em_params,
    check_positive_count,
    fix_gold,
    rng_from,
    softmax_rows,
)
from ._encode import Encoded

__all__ = ["MACE", "mace_arrays"]


def mace_arrays(
    task: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_tasks: int | None = None,
    n_workers: int | None = None,
    n_classes: int | None = None,
    *,
    n_restarts: int = 3,
    n_iter: int = 50,
    tol: float = 1e-6,
    method: str = "vb",
    smoothing: float | None = None,
    default_noise: float = 0.5,
    alpha: float = 0.5,
    beta: float = 0.5,
    strategy_prior: float = 10.0,
    learn_priors: bool = True,
    gold: np.ndarray | None = None,
    random_state: Any = 0,
) -> ArrayResult:
    """MACE on integer codes; see the module docstring."""
    check_choice(method, ("vb", "em"), "method")
    check_positive_count(n_restarts, "n_restarts")
    check_em_params(n_iter, tol)
    rng = rng_from(random_state)
    t, w, y, n_t, n_w, k = check_codes(task, worker, label, n_tasks, n_workers, n_classes)
    n = t.size
    ty = t * k + y
    wy = w * k + y
    n_by_w = np.bincount(w, minlength=n_w).astype(np.float64)
    smooth = 0.01 / k if smoothing is None else float(smoothing)
    log_pi = [np.full(k, -np.log(k))]  # uniform class prior, re-estimated if learn_priors

    n_wy = np.bincount(wy, minlength=n_w * k).astype(np.float64).reshape(n_w, k)
    max_per_task = int(np.bincount(t, minlength=n_t).max())

    def e_step(
        log_know: np.ndarray, log_spam: np.ndarray, log_xi: np.ndarray
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """Posteriors, log marginal likelihood per answer and the expected "knowing" counts per
        (worker, answer) ``(n_w, k)``. Every per-answer factor depends on (worker, answer) only,
        so it is computed on that small table and gathered once."""
        lo = log_spam[:, None] + log_xi  # log((1-theta) xi_y)            (n_w, k)
        hi = np.logaddexp(lo, log_know[:, None])  # log((1-theta) xi_y + theta)
        gain = hi - lo  # >= 0: extra log-likelihood of answer y when the truth is y
        # log P(answers of t, z_t = c) = sum_answers lo + sum_{answers y = c} gain + log pi_c. The
        # first term is the same for every class: it cancels in q and is summed once for the
        # marginal likelihood over the (worker, answer) table instead of per task.
        logits = np.bincount(ty, weights=gain.ravel()[wy], minlength=n_t * k).reshape(n_t, k)
        logits += log_pi[0]
        # every logit lies in [min log pi, max answers per task * max gain + max log pi]: when
        # that is inside [-700, 700] the softmax needs no row-max shift (one pass less)
        safe = max_per_task * float(gain.max()) < 600.0 and float(log_pi[0].min()) > -600.0
        lse: list = []
        q = fix_gold(softmax_rows(logits, lse, shift=not safe), gold)
        ll = (float(lse[0].sum()) + float(np.einsum("wy,wy->", n_wy, lo))) / n
        if learn_priors:
            pc = q.sum(axis=0) + 1.0
            log_pi[0] = np.log(pc / pc.sum())
        # sum over w's answers y of q_ty, times P(knowing | y, z = y)
        q_wy = np.bincount(wy, weights=q.ravel()[ty], minlength=n_w * k).reshape(n_w, k)
        knowing = q_wy * np.exp(log_know[:, None] - hi)
        return q, ll, knowing

    def m_step(knowing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        know_w = knowing.sum(axis=1)
        spam_w = n_by_w - know_w
        strat = n_wy - knowing
        if method == "vb":
            tot = digamma(n_by_w + alpha + beta)
            log_know = digamma(know_w + beta) - tot
            log_spam = digamma(spam_w + alpha) - tot
            log_xi = digamma(strat + strategy_prior) - digamma(
                strat.sum(axis=1, keepdims=True) + k * strategy_prior
            )
        else:
            tot = np.log(n_by_w + 2 * smooth)
            log_know = np.log(know_w + smooth) - tot
            log_spam = np.log(spam_w + smooth) - tot
            log_xi = np.log(strat + smooth) - np.log(strat.sum(axis=1, keepdims=True) + k * smooth)
        return log_know, log_spam, log_xi

    best: tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray], list[float], int, np.ndarray]
    best = None  # type: ignore[assignment]
    for _ in range(n_restarts):
        sp_ = rng.uniform(1.0, 1.0 + default_noise, size=(n_w, 2))
        sp_ /= sp_.sum(axis=1, keepdims=True)
        xi = rng.uniform(1.0, 1.0 + default_noise, size=(n_w, k))
        xi /= xi.sum(axis=1, keepdims=True)
        params = (np.log(sp_[:, 1]), np.log(sp_[:, 0]), np.log(xi))
        log_pi[0] = np.full(k, -np.log(k))
        hist: list[float] = []
        prev = -np.inf
        it = 0
        for it in range(1, n_iter + 1):  # noqa: B007
            _, ll, knowing = e_step(*params)
            hist.append(ll)
            params = m_step(knowing)
            if ll - prev < tol:
                break
            prev = ll
        used_log_pi = log_pi[0].copy()  # the class prior this restart's final E-step uses
        _, ll, _ = e_step(*params)
        if best is None or ll > best[0]:
            best = (ll, params, hist, it, used_log_pi)
    _, params, hist, it, log_pi[0] = best
    q, _, _ = e_step(*params)  # the best restart's posteriors, under its own class prior
    know_mean = np.exp(params[0])
    know_mean = know_mean / (know_mean + np.exp(params[1]))
    labels = argmax_rows(q, rng)
    return ArrayResult(
        probas=q,
        labels=labels,
        priors=np.exp(log_pi[0]),
        skills=know_mean,
        loss_history=hist,
        n_iter=it,
        extra={"strategy": np.exp(params[2])},
    )


@aggregator_params
class MACE(BaseAggregator):
    """MACE with variational Bayes (default) or EM, seeded random restarts.

    Parameters follow crowd-kit: ``n_restarts`` (3; crowd-kit's default is 10 but it reseeds every
    restart identically, so it effectively runs one; 3 and 10 distinct restarts gave the same
    accuracy on the 14 real datasets), ``n_iter`` (50), ``method`` ("vb"/"em"),
    ``smoothing`` (EM only; default ``0.01/K``), ``default_noise`` (0.5), ``alpha``/``beta``
    (Beta prior on competence, 0.5/0.5), plus ``strategy_prior`` (Dirichlet, 10), ``tol``,
    ``random_state`` and ``labels``.

    Fitted: ``labels_``, ``probas_``, ``priors_`` (uniform), ``skills_`` (competence
    :math:`\\theta_w`), ``spam_strategy_`` (DataFrame worker x label), ``loss_history_``,
    ``n_iter_``.
    """

    _arrays = staticmethod(mace_arrays)

    n_restarts: int = 3
    n_iter: int = 50
    tol: float = 1e-6
    method: str = "vb"
    smoothing: float | None = None
    default_noise: float = 0.5
    alpha: float = 0.5
    beta: float = 0.5
    strategy_prior: float = 10.0
    learn_priors: bool = True
    random_state: Any = 0
    labels: Sequence[Hashable] | None = None

    def _finish_fit(self, enc: Encoded, out: ArrayResult) -> ArrayResult:
        self.spam_strategy_ = pd.DataFrame(
            out.extra["strategy"], index=enc.worker_names, columns=enc.label_names
        )
        return out
