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

EM as in crowd-kit 1.4.2: the E-step is exact (:math:`\log q_{tc}` = log prior + sum of
log-likelihoods, via ``bincount``); the M-step maximises the expected complete log-likelihood
:math:`Q=\sum_{(t,w,y)} [p\log\sigma(x) + (1-p)\log\frac{1-\sigma(x)}{K-1}] - \frac12\|\alpha-\mu_\alpha\|^2
- \frac12\|\beta-\mu_\beta\|^2`, :math:`p = q_{ty}`, by conjugate gradient on
:math:`(\alpha, \beta)` jointly (``m_step="cg"``: scipy's CG, ``m_step_max_iter=25``,
``m_step_tol=1e-2``, crowd-kit's settings), or by ``m_step_iter`` rounds of damped
block-diagonal Gauss-Newton steps (``m_step="newton"``: cheaper, but it climbs further per
EM step than crowd-kit's loose CG, which cost 6.5 points on relevance_s4). EM stops when
:math:`Q` per (answer, class) pair -- crowd-kit's normalisation -- rises by less than ``tol``.
Everything is O(answers) per step; no task x worker matrix is formed. ``loss_history_`` holds
that loss.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit
from threadpoolctl import threadpool_limits

from ._base import (
    ArrayResult,
    BaseAggregator,
    aggregator_params,
    argmax_rows,
    check_choice,
    check_codes,
    check_em_params,
    fix_gold,
    rng_from,
    softmax_rows,
)
from ._encode import Encoded

__all__ = ["GLAD", "glad_arrays"]


def _log_sigmoid(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log sigma(x), sigma(x))`` for float64 ``x``, stable for any sign.

    ``log sigma(x) = min(x, 0) - log(1 + exp(-|x|))``: one ``exp`` and one ``log`` per element
    (scipy's ``log_expit`` costs ~4x as much). ``1 + exp(-|x|)`` lies in (1, 2], so ``log`` is
    accurate to an absolute 1e-16, which is all a sum of log-likelihoods needs."""
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)
    e += 1.0
    np.log(e, out=e)
    ls = np.minimum(x, 0.0)
    ls -= e
    return ls, np.exp(ls)


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
    m_step: str = "cg",
    m_step_max_iter: int = 25,
    m_step_tol: float = 1e-2,
    gold: np.ndarray | None = None,
    random_state: Any = 0,
) -> ArrayResult:
    """GLAD on integer codes; see the module docstring."""
    check_choice(m_step, ("cg", "newton"), "m_step")
    t, w, y, n_t, n_w, k = check_codes(task, worker, label, n_tasks, n_workers, n_classes)
    check_em_params(n_iter, tol)
    rng = rng_from(random_state)
    n = t.size
    if n > 1 and bool((t[1:] < t[:-1]).any()):  # group answers by task once (stable: same sums)
        order = np.argsort(t, kind="stable")
        t, w, y = t[order], w[order], y[order]
    per_task = np.bincount(t, minlength=n_t)  # answers sorted by task: gather = np.repeat
    ty = t * k + y
    log_km1 = np.log(max(k - 1, 1))
    alpha = np.full(n_w, float(alphas_prior_mean))
    beta = np.full(n_t, float(betas_prior_mean))
    log_pi = np.full(k, -np.log(k))
    hist: list[float] = []

    def e_step() -> np.ndarray:
        x = alpha[w] * np.repeat(np.exp(beta), per_task)
        ls, _ = _log_sigmoid(x)
        lns = ls - x - log_km1  # log((1 - sigma(x)) / (K-1))
        base = np.bincount(t, weights=lns, minlength=n_t)
        delta = np.bincount(ty, weights=x + log_km1, minlength=n_t * k).reshape(n_t, k)
        logits = delta + base[:, None] + log_pi
        return fix_gold(softmax_rows(logits), gold)

    def neg_q_and_grad(
        xv: np.ndarray, p: np.ndarray, one_minus_p: np.ndarray, const: float
    ) -> tuple[float, np.ndarray]:
        """-Q and its gradient at ``xv = [alpha, beta]`` for fixed posteriors ``p``
        (``one_minus_p = 1 - p``, ``const = log(K-1) * sum(1 - p)``)."""
        a_, b_ = xv[:n_w], xv[n_w:]
        eb = np.repeat(np.exp(b_), per_task)  # exp per task, then expand: fewer exps than answers
        x = a_[w] * eb
        ls, sig = _log_sigmoid(x)  # log sigma(x); log(1 - sigma(x)) = ls - x
        # sum p ls + (1 - p)(ls - x - log(K-1)) = sum ls - (1 - p)(x + log(K-1))
        val = ls.sum() - np.einsum("i,i->", one_minus_p, x) - const
        da, db = a_ - alphas_prior_mean, b_ - betas_prior_mean
        val -= 0.5 * (np.einsum("i,i->", da, da) + np.einsum("i,i->", db, db))
        r = np.subtract(p, sig, out=sig)
        ga = np.bincount(w, weights=r * eb, minlength=n_w) - da
        gb = np.bincount(t, weights=np.multiply(r, x, out=x), minlength=n_t) - db
        return -float(val), -np.concatenate([ga, gb])

    q = e_step()
    prev = -np.inf
    it = 0
    for it in range(1, n_iter + 1):  # noqa: B007
        p = q.ravel()[ty]
        one_minus_p = 1.0 - p
        fargs = (p, one_minus_p, log_km1 * float(one_minus_p.sum()))
        if m_step == "cg":  # crowd-kit's M-step: conjugate gradient on (alpha, beta) jointly
            with threadpool_limits(1):  # scipy's CG does many small BLAS dots: threads only stall
                res = minimize(
                    neg_q_and_grad,
                    np.concatenate([alpha, beta]),
                    args=fargs,
                    jac=True,
                    method="CG",
                    tol=m_step_tol,
                    options={"maxiter": m_step_max_iter},
                )
            alpha, beta = res.x[:n_w].copy(), res.x[n_w:].copy()
        else:
            for _ in range(m_step_iter):
                eb = np.exp(beta[t])
                s = expit(alpha[w] * eb)
                g = np.bincount(w, weights=(p - s) * eb, minlength=n_w) - (
                    alpha - alphas_prior_mean
                )
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
        # crowd-kit's loss: Q per (answer, class) row of its long table
        cur = -neg_q_and_grad(np.concatenate([alpha, beta]), *fargs)[0] / (n * k)
        hist.append(cur)
        q = e_step()
        if cur - prev < tol:
            break
        prev = cur
    labels = argmax_rows(q, rng)
    return ArrayResult(
        probas=q,
        labels=labels,
        priors=np.exp(log_pi),
        skills=alpha.copy(),
        loss_history=hist,
        n_iter=it,
        extra={"alphas": alpha, "betas": beta},
    )


@aggregator_params
class GLAD(BaseAggregator):
    """GLAD (worker ability x task difficulty), EM with crowd-kit's conjugate-gradient M-step.

    Parameters: ``n_iter`` (100), ``tol`` (1e-5), ``m_step`` ("cg" as crowd-kit, or "newton"),
    ``m_step_max_iter`` (25) and ``m_step_tol`` (1e-2) for CG, ``m_step_iter`` (Newton rounds),
    ``alphas_prior_mean``/``betas_prior_mean`` (1.0), ``learn_priors`` (False: uniform class
    prior), ``random_state`` (tie-breaking), ``labels``.

    Fitted: ``labels_``, ``probas_``, ``priors_``, ``skills_`` and ``alphas_`` (worker
    abilities :math:`\\alpha_w`), ``betas_`` (task log-inverse-difficulty, Series by task),
    ``loss_history_``, ``n_iter_``.
    """

    _arrays = staticmethod(glad_arrays)

    n_iter: int = 100
    tol: float = 1e-5
    m_step_iter: int = 3
    alphas_prior_mean: float = 1.0
    betas_prior_mean: float = 1.0
    learn_priors: bool = False
    m_step: str = "cg"
    m_step_max_iter: int = 25
    m_step_tol: float = 1e-2
    random_state: Any = 0
    labels: Sequence[Hashable] | None = None

    def _finish_fit(self, enc: Encoded, out: ArrayResult) -> ArrayResult:
        self.alphas_ = pd.Series(out.extra["alphas"], index=enc.worker_names, name="alpha")
        self.betas_ = pd.Series(out.extra["betas"], index=enc.task_names, name="beta")
        return out
