r"""EBCC-style Bayesian classifier combination with per-class subtypes (variational Bayes).

After Li, Rubinstein & Cohn, "Exploiting Worker Correlation for Label Aggregation in
Crowdsourcing", ICML 2019 (EBCC), itself an extension of independent Bayesian classifier
combination (IBCC; Kim & Ghahramani, AISTATS 2012). Each task has a class :math:`z_t` and a
latent *subtype* :math:`g_t \in \{1..M\}` within its class; workers' confusion depends on both,
which captures correlated worker behaviour (e.g. groups of workers that all mistake the same
kind of item):

.. math::
    \tau \sim \mathrm{Dir}(\alpha),\quad \nu_k \sim \mathrm{Dir}(a_\pi),\quad
    z_t \sim \mathrm{Cat}(\tau),\quad g_t \mid z_t{=}k \sim \mathrm{Cat}(\nu_k),\\
    \pi_{w,k,m} \sim \mathrm{Dir}(\beta_k),\ \beta_{k,y} = a_v [y{=}k] + b_v [y{\ne}k],\quad
    y_{tw} \mid z_t{=}k, g_t{=}m \sim \mathrm{Cat}(\pi_{w,k,m}).

Mean-field VB over :math:`q(z,g)` per task and Dirichlet posteriors for
:math:`\tau, \nu, \pi`:
:math:`\log r_{t,k,m} = E\log\tau_k + E\log\nu_{k,m} + \sum_{(w,y)\in t} E\log\pi_{w,k,m,y}`
(sparse product with the task x (worker, label) incidence matrix). Classes start from the
majority-vote shares and subtypes from a seeded random split, so the fit is deterministic
under ``random_state``. With ``n_subtypes=1`` this is IBCC. Defaults follow the EBCC paper
(``M=10, a_pi=0.1, alpha=1, a_v=4, b_v=1``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import digamma

from ._base import (
    ArrayResult,
    BaseAggregator,
    aggregator_params,
    argmax_rows,
    check_codes,
    check_em_params,
    fix_gold,
    mv_init,
    rng_from,
    softmax_rows,
)
from ._encode import incidence_pair

__all__ = ["EBCC", "ebcc_arrays"]


def ebcc_arrays(
    task: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_tasks: int | None = None,
    n_workers: int | None = None,
    n_classes: int | None = None,
    *,
    n_subtypes: int = 10,
    a_pi: float = 0.1,
    alpha: float = 1.0,
    a_v: float = 4.0,
    b_v: float = 1.0,
    n_iter: int = 500,
    tol: float = 1e-6,
    gold: np.ndarray | None = None,
    random_state: Any = 0,
    incidence: tuple[sp.csr_matrix, sp.spmatrix] | None = None,
) -> ArrayResult:
    """EBCC on integer codes; see the module docstring."""
    t, w, y, n_t, n_w, k = check_codes(task, worker, label, n_tasks, n_workers, n_classes)
    check_em_params(n_iter, tol)
    m = int(n_subtypes)
    km = k * m
    a, at = incidence_pair(t, w, y, n_t, n_w, k, incidence)
    rng = rng_from(random_state)
    z = mv_init(t, y, n_t, k, gold)
    g = rng.random((n_t, m))
    g /= g.sum(axis=1, keepdims=True)
    r = (z[:, :, None] * g[:, None, :]).reshape(n_t, km)
    prior = np.full((k, k), float(b_v))  # [y, k]
    np.fill_diagonal(prior, float(a_v))
    has_gold = gold is not None and bool((gold >= 0).any())
    max_per_task = float(np.asarray(a.sum(axis=1)).max())
    hist: list[float] = []
    prev = -np.inf
    it = 0
    log_pi_conf = np.empty(0)
    for it in range(1, n_iter + 1):  # noqa: B007
        counts = np.asarray(at @ r).reshape(n_w, k, k, m)  # [w, y, k, m]
        post = counts + prior[None, :, :, None]
        log_pi_conf = digamma(post) - digamma(post.sum(axis=1, keepdims=True))
        rk = r.reshape(n_t, k, m).sum(axis=0)  # [k, m]
        e_log_tau = digamma(rk.sum(axis=1) + alpha) - digamma(rk.sum() + k * alpha)
        e_log_nu = digamma(rk + a_pi) - digamma(rk.sum(axis=1, keepdims=True) + m * a_pi)
        logits = np.asarray(a @ log_pi_conf.reshape(n_w * k, km))
        log_prior = (e_log_tau[:, None] + e_log_nu).ravel()
        logits += log_prior
        # every term is an expected log-probability (<= 0), so each row's largest logit is at
        # least max_per_task * min E[log pi] + min prior term: when that is above -600 the
        # softmax needs no row-max shift (a slow pass over K*M columns)
        safe = max_per_task * float(log_pi_conf.min()) + float(log_prior.min()) > -600.0
        lse: list = []
        r = softmax_rows(logits, lse, shift=not safe)
        ll = float(lse[0].sum()) / t.size
        if has_gold:
            rr = r.reshape(n_t, k, m)
            sub = rr.sum(axis=1)  # keep the subtype split, move mass to the gold class
            sub /= sub.sum(axis=1, keepdims=True)
            hg = gold >= 0
            rr[hg] = 0.0
            rr[np.flatnonzero(hg), gold[hg], :] = sub[hg]
            r = rr.reshape(n_t, km)
        hist.append(ll)
        if abs(ll - prev) < tol:
            break
        prev = ll
    q = fix_gold(r.reshape(n_t, k, m).sum(axis=2), gold)
    q /= q.sum(axis=1, keepdims=True)
    # class-level confusion (posterior mean, subtypes pooled) for reporting
    conf = counts.sum(axis=3) + prior[None]
    conf /= conf.sum(axis=1, keepdims=True)
    priors = q.mean(axis=0)
    skills = np.einsum("wcc,c->w", conf, priors)
    labels = argmax_rows(q, rng)
    return ArrayResult(
        probas=q,
        labels=labels,
        priors=priors,
        skills=skills,
        errors=conf,
        loss_history=hist,
        n_iter=it,
    )


@aggregator_params
class EBCC(BaseAggregator):
    """Enhanced Bayesian classifier combination (subtype mixture, VB); see module docstring.

    Parameters: ``n_subtypes`` (M, 10), ``a_pi`` (0.1), ``alpha`` (1), ``a_v`` (4), ``b_v`` (1),
    ``n_iter`` (500), ``tol`` (1e-6), ``random_state`` (0), ``labels``.
    """

    _arrays = staticmethod(ebcc_arrays)
    _takes_incidence = True

    n_subtypes: int = 10
    a_pi: float = 0.1
    alpha: float = 1.0
    a_v: float = 4.0
    b_v: float = 1.0
    n_iter: int = 500
    tol: float = 1e-6
    random_state: Any = 0
    labels: Sequence[Hashable] | None = None
