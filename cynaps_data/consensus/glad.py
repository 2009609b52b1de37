r"""GLAD: Generative model of Labels, Abilities, and Difficulties (Whitehill et al., 2009).

Each worker has an ability :math:`\alpha_w \in \mathbb R` and each task an (inverse)
difficulty :math:`\beta_t` (we use :math:`e^{\beta_t} > 0`, as crowd-kit does). A worker answers
correctly with probability :math:`\sigma(\alpha_w e^{\beta_t})` and otherwise picks one of the
:math:`K-1` wrong classes uniformly:

.. math:: P(y \mid z_t = c) = \begin{cases} \sigma(x) & y = c\\
          (1-\sigma(x))/(K-1) & y \ne c \end{cases},\qquad x = \alpha_w e^{\beta_t}.

Priors: :math:`\alpha_w \sim N(\mu_\alpha, 1)`, :math:`\beta_t \sim N(\mu_\beta, 1)`
(both means 1, crowd-kit's defaults); class priors uniform (``learn_priors=False``, as in
GLAD and crowd-kit) or re-estimated each iteration.

EM: the E-step is exact (:math:`\log q_{tc}` = log prior + sum of log-likelihoods, via
``bincount``); the M-step maximises the expected complete log-likelihood
:math:`Q=\sum_{(t,w,y)} [p\log\sigma(x) + (1-p)\log\frac{1-\sigma(x)}{K-1}] - \frac12\|\alpha-\mu_\alpha\|^2
- \frac12\|\beta-\mu_\beta\|^2`, :math:`p = q_{ty}`, with ``m_step_iter`` rounds of damped
block-diagonal Gauss-Newton steps on :math:`\alpha` then :math:`\beta`
(:math:`\partial Q/\partial x = p-\sigma(x)`). Everything is O(answers) per step; no task x
worker matrix is formed. ``loss_history_`` holds :math:`Q` per answer.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from scipy.special import expit, log_expit

from ._base import (
    ArrayResult,
    BaseAggregator,
    argmax_rows,
    check_codes,
    rng_from,
    softmax_rows,
)
from ._encode import Encoded
from .dawid_skene import fix_gold

__all__ = ["GLAD", "glad_arrays"]


def glad_arrays(
    task: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_tasks: int | None = None,
    n_workers: int | None = None,
    n_classes: int | None = None,
    *,
    n_iter: int = 100,
    tol: float = 1e-5,
    m_step_iter: int = 3,
    alphas_prior_mean: float = 1.0,
    betas_prior_mean: float = 1.0,
    learn_priors: bool = False,
    gold: np.ndarray | None = None,
    random_state: Any = 0,
) -> ArrayResult:
    """GLAD on integer codes; see the module docstring."""
    t, w, y, n_t, n_w, k = check_codes(task, worker, label, n_tasks, n_workers, n_classes)
    n = t.size
    ty = t * k + y
    log_km1 = np.log(max(k - 1, 1))
    alpha = np.full(n_w, float(alphas_prior_mean))
    beta = np.full(n_t, float(betas_prior_mean))
    log_pi = np.full(k, -np.log(k))
    hist: list[float] = []

    def e_step() -> np.ndarray:
        x = alpha[w] * np.exp(beta[t])
        ls = log_expit(x)
        lns = log_expit(-x) - log_km1
        base = np.bincount(t, weights=lns, minlength=n_t)
        delta = np.bincount(ty, weights=ls - lns, minlength=n_t * k).reshape(n_t, k)
        logits = delta + base[:, None] + log_pi
        return fix_gold(softmax_rows(logits), gold)

    def q_value(p: np.ndarray) -> float:
        x = alpha[w] * np.exp(beta[t])
        val = np.sum(p * log_expit(x) + (1 - p) * (log_expit(-x) - log_km1))
        val -= 0.5 * np.sum((alpha - alphas_prior_mean) ** 2)
        val -= 0.5 * np.sum((beta - betas_prior_mean) ** 2)
        return float(val) / n

    q = e_step()
    prev = -np.inf
    it = 0
    for it in range(1, n_iter + 1):  # noqa: B007
        p = q.ravel()[ty]
        for _ in range(m_step_iter):
            eb = np.exp(beta[t])
            s = expit(alpha[w] * eb)
            g = np.bincount(w, weights=(p - s) * eb, minlength=n_w) - (alpha - alphas_prior_mean)
            h = np.bincount(w, weights=s * (1 - s) * eb * eb, minlength=n_w) + 1.0
            alpha += np.clip(g / h, -2.0, 2.0)
            x = alpha[w] * eb
            s = expit(x)
            g = np.bincount(t, weights=(p - s) * x, minlength=n_t) - (beta - betas_prior_mean)
            h = np.bincount(t, weights=s * (1 - s) * x * x, minlength=n_t) + 1.0
            beta += np.clip(g / h, -1.0, 1.0)
        if learn_priors:
            pc = np.maximum(q.sum(axis=0), 1e-10)
            log_pi = np.log(pc / pc.sum())
        cur = q_value(p)
        hist.append(cur)
        q = e_step()
        if cur - prev < tol:
            break
        prev = cur
    labels = argmax_rows(q, rng_from(random_state))
    return ArrayResult(
        probas=q,
        labels=labels,
        priors=np.exp(log_pi),
        skills=alpha.copy(),
        loss_history=hist,
        n_iter=it,
        extra={"alphas": alpha, "betas": beta},
    )


class GLAD(BaseAggregator):
    """GLAD (worker ability x task difficulty), EM with a Gauss-Newton M-step.

    Parameters: ``n_iter`` (100), ``tol`` (1e-5), ``m_step_iter`` (Newton rounds per M-step),
    ``alphas_prior_mean``/``betas_prior_mean`` (1.0), ``learn_priors`` (False: uniform class
    prior), ``random_state`` (tie-breaking), ``labels``.

    Fitted: ``labels_``, ``probas_``, ``priors_``, ``skills_`` and ``alphas_`` (worker
    abilities :math:`\\alpha_w`), ``betas_`` (task log-inverse-difficulty, Series by task),
    ``loss_history_``, ``n_iter_``.
    """

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        m_step_iter: int = 3,
        alphas_prior_mean: float = 1.0,
        betas_prior_mean: float = 1.0,
        learn_priors: bool = False,
        random_state: Any = 0,
        labels: Sequence[Hashable] | None = None,
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.m_step_iter = m_step_iter
        self.alphas_prior_mean = alphas_prior_mean
        self.betas_prior_mean = betas_prior_mean
        self.learn_priors = learn_priors
        self.random_state = random_state
        self.labels = labels

    def _fit_encoded(self, enc: Encoded, gold: np.ndarray) -> ArrayResult:
        res = glad_arrays(
            enc.task,
            enc.worker,
            enc.label,
            enc.n_tasks,
            enc.n_workers,
            enc.n_classes,
            n_iter=self.n_iter,
            tol=self.tol,
            m_step_iter=self.m_step_iter,
            alphas_prior_mean=self.alphas_prior_mean,
            betas_prior_mean=self.betas_prior_mean,
            learn_priors=self.learn_priors,
            gold=gold,
            random_state=self.random_state,
        )
        import pandas as pd

        self.alphas_ = pd.Series(res.extra["alphas"], index=enc.worker_names, name="alpha")
        self.betas_ = pd.Series(res.extra["betas"], index=enc.task_names, name="beta")
        return res
