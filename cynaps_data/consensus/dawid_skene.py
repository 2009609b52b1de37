r"""Dawid-Skene (full confusion matrices) and one-coin Dawid-Skene, EM in log space.

Dawid-Skene (Dawid & Skene, 1979). Each task has a latent class :math:`z_t \sim
\mathrm{Cat}(\pi)`; worker :math:`w` answers :math:`y` with probability
:math:`e^w_{yc} = P(y \mid z_t = c)` (a full :math:`K\times K` confusion matrix per worker).
EM alternates

* E-step: :math:`\log q_{tc} = \log \pi_c + \sum_{(w,y)\in t} \log e^w_{yc} + \text{const}`;
* M-step: :math:`e^w_{yc} \propto \alpha_{yc} + \sum_{t:(w,y)\in t} q_{tc}`,
  :math:`\pi_c \propto \beta + \sum_t q_{tc}`,

where :math:`\alpha` are Dirichlet pseudo-counts (``alpha_correct`` on the diagonal,
``alpha_wrong`` off it; both default to 0, i.e. maximum likelihood with a 1e-10 floor as in
crowd-kit) and :math:`\beta` is ``alpha_prior``. Sums over answers are sparse matrix products
with the task x (worker, label) incidence matrix ``A``: E-step ``A @ log E``, M-step
``A.T @ q``; nothing of size tasks x workers is ever formed.

One-coin Dawid-Skene (e.g. Zhang, Chen, Zhou & Jordan, 2016): :math:`e^w_{yc} = s_w` if
:math:`y=c` and :math:`(1-s_w)/(K-1)` otherwise; the M-step sets :math:`s_w` to the expected
accuracy :math:`\sum_{(t,y)\in w} q_{ty} / n_w`.

EM starts from the (soft) majority-vote shares. Stopping rule (Dawid-Skene) = crowd-kit
1.4.2's: after each E+M step the loss is its per-answer evidence lower bound
:math:`\frac1N[\sum_{(t,w,y)}\sum_c q_{tc}(\log e^w_{yc} + \log\pi_c) + \sum_t H(q_t)]`
(the prior counted once per answer, as crowd-kit does); EM stops as soon as it rises by less than
``tol`` (``tol=-inf`` forces ``n_iter``). On bluebirds, adult_s5, trec2010 and ZenCrowd this
stops after 2-3 iterations, which is what crowd-kit's published accuracy reflects; run to
convergence (``tol=-inf``) DS is 1-2 points worse on adult_s5 and zencrowd_us. One-coin DS
uses the same loss and rule with its one-coin confusion matrices. ``loss_history_`` holds the
loss per iteration.
Tasks with gold labels have their posterior fixed to the gold class throughout.
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
from ._parallel import Shard, resolve_n_jobs, shard_runner, task_shards

__all__ = [
    "DawidSkene",
    "OneCoinDawidSkene",
    "dawid_skene_arrays",
    "one_coin_arrays",
    "mv_init",
]

_EPS = 1e-10

try:  # scipy's own kernel behind ``A @ X``; calling it directly accumulates into our buffer
    from scipy.sparse import _sparsetools
except ImportError:  # pragma: no cover - private module moved: fall back to ``A @ X``
    _sparsetools = None


def spmm_add(a: sp.spmatrix, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out += a @ x`` for a CSR/CSC float64 matrix and C-contiguous float64 ``x`` / ``out``
    (2-D). Uses scipy's ``csr_matvecs`` / ``csc_matvecs`` kernel directly, which adds into
    ``out``: no fresh zeroed result per call (page faults) and no extra pass to add a bias the
    caller pre-filled into ``out``. Falls back to ``out += a @ x``."""
    fmt = getattr(a, "format", "")
    ok = (
        _sparsetools is not None
        and fmt in ("csr", "csc")
        and a.dtype == np.float64
        and x.dtype == np.float64
        and out.dtype == np.float64
        and x.flags.c_contiguous
        and out.flags.c_contiguous
        and out.shape == (a.shape[0], x.shape[1])
    )
    if ok:
        fn = getattr(_sparsetools, fmt + "_matvecs")
        fn(a.shape[0], a.shape[1], x.shape[1], a.indptr, a.indices, a.data, x.ravel(), out.ravel())
    else:
        out += a @ x
    return out


def confusion_from_counts(
    counts: np.ndarray, alpha_correct: float, alpha_wrong: float, variational: bool
) -> np.ndarray:
    """counts ``(W, K_obs, K_true)`` -> log confusion ``(W, K, K)`` (normalised over axis 1)."""
    k = counts.shape[1]
    if alpha_correct or alpha_wrong:
        counts = counts + alpha_wrong
        idx = np.arange(k)
        counts[:, idx, idx] += alpha_correct - alpha_wrong
    if variational:
        counts = np.maximum(counts, _EPS)
        return digamma(counts) - digamma(counts.sum(axis=1, keepdims=True))
    counts = np.maximum(counts, _EPS)
    return np.log(counts) - np.log(counts.sum(axis=1, keepdims=True))


def elbo_per_answer(
    q: np.ndarray,
    counts: np.ndarray,
    log_e: np.ndarray,
    log_pi: np.ndarray,
    n_answers: int,
    entropy: float | None = None,
) -> float:
    """crowd-kit's DawidSkene loss: ``(sum over answers (t, w, y) of sum_c q_tc (log e^w_yc +
    log pi_c) + sum_t H(q_t)) / n_answers``, with ``counts[w, y, c] = sum q_tc`` over w's answers
    y. (The class prior enters once per *answer*, as in crowd-kit 1.4.2.) ``entropy``: the
    total entropy of ``q`` if already known."""
    joint = float(np.einsum("wyc,wyc->", counts, log_e))
    joint += float(np.einsum("wyc,c->", counts, log_pi))
    if entropy is None:
        qc = np.maximum(q, _EPS)
        entropy = -float(np.einsum("tc,tc->", qc, np.log(qc)))
    return (joint + entropy) / n_answers


def dawid_skene_em(
    a: sp.csr_matrix,
    n_workers: int,
    k: int,
    q: np.ndarray,
    gold: np.ndarray | None,
    *,
    n_iter: int = 100,
    tol: float = 1e-5,
    alpha_correct: float = 0.0,
    alpha_wrong: float = 0.0,
    alpha_prior: float = 0.0,
    variational: bool = False,
    n_answers: int | None = None,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float], int]:
    """Core EM on a prepared incidence matrix. Returns (q, log_errors, priors, history, n_iter).

    Each iteration runs on task shards (:mod:`._parallel`): a shard's E-step, softmax and its
    share of the M-step counts ``A_s.T @ q_s`` run together, on ``n_jobs`` threads; the counts
    are added in shard order, so the result does not depend on ``n_jobs``."""
    n_answers = int(a.sum()) if n_answers is None else n_answers
    shards = task_shards(a)
    n_threads = resolve_n_jobs(n_jobs, n_answers, len(shards))
    wk = n_workers * k
    has_gold = gold is not None and bool((gold >= 0).any())
    history: list[float] = []

    def log_params(counts: np.ndarray, q_sum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_e = confusion_from_counts(
            counts.reshape(n_workers, k, k), alpha_correct, alpha_wrong, variational
        )
        pc = np.maximum(q_sum + alpha_prior, _EPS)
        log_pi = digamma(pc) - digamma(pc.sum()) if variational else np.log(pc / pc.sum())
        return log_e, log_pi

    def add_up(parts: Any) -> tuple[np.ndarray, np.ndarray, float]:
        """Sum the shards' (counts, q_sum, entropy part) in shard order."""
        counts = np.zeros((wk, k))
        q_sum = np.zeros(k)
        ent = 0.0
        for c, qs, e in parts:
            counts += c
            q_sum += qs
            ent += e
        return counts, q_sum, ent

    def shard_counts(s: Shard, qs: np.ndarray) -> np.ndarray:
        return spmm_add(s.at, qs, np.zeros((wk, k)))

    # every logit is a sum of <= max_per_task log-probabilities (all <= 0) plus log pi, so when
    # max_per_task * |min log e| + |min log pi| < 700 the softmax needs no row-max shift
    max_per_task = float(np.asarray(a.sum(axis=1)).max()) if a.nnz else 0.0
    logits = np.empty((a.shape[0], k))  # reused: q of one iteration is dead after its M-step
    with shard_runner(n_threads) as run:
        q0 = np.ascontiguousarray(q)

        def start(s: Shard) -> tuple:
            qs = q0[s.start : s.stop]
            return shard_counts(s, qs), np.einsum("tc->c", qs), 0.0

        counts, q_sum, _ = add_up(run(start, shards))
        log_e, log_pi = log_params(counts, q_sum)
        prev = -np.inf
        it = 0
        for it in range(1, n_iter + 1):  # noqa: B007
            log_e2 = np.ascontiguousarray(log_e.reshape(wk, k))
            shift = max_per_task * -float(log_e.min()) - float(log_pi.min()) >= 700.0

            def step(s: Shard, log_e2=log_e2, log_pi=log_pi, shift=shift) -> tuple:
                qs = logits[s.start : s.stop]
                qs[:] = log_pi
                spmm_add(s.a, log_e2, qs)
                lse: list = []
                softmax_rows(qs, lse, shift=shift)
                if has_gold:
                    fix_gold(qs, gold[s.start : s.stop])
                    qc = np.maximum(qs, _EPS)
                    ent = -float(np.einsum("tc,tc->", qc, np.log(qc)))
                else:
                    ent = float(lse[0].sum())  # sum_t lse(L_t); q . L is subtracted below
                return shard_counts(s, qs), np.einsum("tc->c", qs), ent

            counts, q_sum, entropy = add_up(run(step, shards))
            q = logits
            if not has_gold:
                # q_t = softmax(L_t) => H(q_t) = lse(L_t) - sum_c q_tc L_tc, and sum_t q_t . L_t
                # is cheap from the new counts and the old parameters (no pass over q).
                entropy -= float(np.einsum("wyc,wyc->", counts.reshape(log_e.shape), log_e))
                entropy -= float(np.einsum("c,c->", q_sum, log_pi))
            log_e, log_pi = log_params(counts, q_sum)
            loss = elbo_per_answer(
                q, counts.reshape(log_e.shape), log_e, log_pi, n_answers, entropy
            )
            history.append(loss)
            if loss - prev < tol:
                break
            prev = loss
    return q, log_e, log_pi, history, it


def dawid_skene_arrays(
    task: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_tasks: int | None = None,
    n_workers: int | None = None,
    n_classes: int | None = None,
    *,
    n_iter: int = 100,
    tol: float = 1e-5,
    alpha_correct: float = 0.0,
    alpha_wrong: float = 0.0,
    alpha_prior: float = 0.0,
    variational: bool = False,
    gold: np.ndarray | None = None,
    random_state: Any = 0,
    n_jobs: int | None = None,
    incidence: tuple[sp.csr_matrix, sp.spmatrix] | None = None,
) -> ArrayResult:
    """Dawid-Skene on integer codes; see the module docstring for the model and
    :class:`DawidSkene` for the parameters."""
    t, w, y, n_t, n_w, k = check_codes(task, worker, label, n_tasks, n_workers, n_classes)
    check_em_params(n_iter, tol)
    rng = rng_from(random_state)
    a, _ = incidence_pair(t, w, y, n_t, n_w, k, incidence)
    q0 = mv_init(t, y, n_t, k, gold)
    q, log_e, log_pi, hist, it = dawid_skene_em(
        a,
        n_w,
        k,
        q0,
        gold,
        n_iter=n_iter,
        tol=tol,
        alpha_correct=alpha_correct,
        alpha_wrong=alpha_wrong,
        alpha_prior=alpha_prior,
        variational=variational,
        n_answers=t.size,
        n_jobs=n_jobs,
    )
    errors = np.exp(log_e)
    if variational:  # report the posterior-mean confusion, not exp(E[log])
        errors /= errors.sum(axis=1, keepdims=True)
    priors = np.exp(log_pi)
    priors /= priors.sum()
    labels = argmax_rows(q, rng)
    # skill: expected accuracy sum_c pi_c e_cc (chance-level is ~1/K)
    skills = np.einsum("wcc,c->w", errors, priors)
    return ArrayResult(
        probas=q,
        labels=labels,
        priors=priors,
        skills=skills,
        errors=errors,
        loss_history=hist,
        n_iter=it,
    )


@aggregator_params
class DawidSkene(BaseAggregator):
    """Dawid-Skene EM with full per-worker confusion matrices (log-space, sparse).

    Parameters
    ----------
    n_iter : int
        Maximum EM iterations (crowd-kit's name and default, 100).
    tol : float
        Stop when the per-answer ELBO (crowd-kit's loss, see the module docstring) rises by
        less than ``tol``; ``-inf`` forces ``n_iter`` iterations.
    alpha_correct, alpha_wrong : float
        Dirichlet pseudo-counts added to the diagonal / off-diagonal confusion counts
        (smoothing; 0 = maximum likelihood).
    alpha_prior : float
        Pseudo-count added to every class when estimating the class priors.
    random_state : int or None
        Seed used only to break exact ties in the final argmax.
    n_jobs : int or None
        Threads for the EM iterations, which run on fixed blocks of 65,536 tasks: ``None``
        (default) uses one thread below 200,000 answers and up to 4 cores above; ``-1`` all
        cores. The result is bit-identical for every value.
    labels : sequence, optional
        Declared class set/order.

    Fitted: ``labels_``, ``probas_``, ``priors_``, ``errors_`` (confusion matrices),
    ``skills_`` (expected accuracy :math:`\\sum_c \\pi_c e^w_{cc}`), ``loss_history_``,
    ``n_iter_``.
    """

    _arrays = staticmethod(dawid_skene_arrays)
    _takes_incidence = True

    n_iter: int = 100
    tol: float = 1e-5
    alpha_correct: float = 0.0
    alpha_wrong: float = 0.0
    alpha_prior: float = 0.0
    random_state: Any = 0
    n_jobs: int | None = None
    labels: Sequence[Hashable] | None = None


def one_coin_arrays(
    task: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_tasks: int | None = None,
    n_workers: int | None = None,
    n_classes: int | None = None,
    *,
    n_iter: int = 100,
    tol: float = 1e-5,
    smoothing: float = 0.0,
    gold: np.ndarray | None = None,
    random_state: Any = 0,
) -> ArrayResult:
    """One-coin Dawid-Skene on integer codes (see module docstring).

    ``smoothing`` adds pseudo-counts to each worker's (correct, wrong) expected counts.
    """
    t, w, y, n_t, n_w, k = check_codes(task, worker, label, n_tasks, n_workers, n_classes)
    check_em_params(n_iter, tol)
    rng = rng_from(random_state)
    n_by_w = np.bincount(w, minlength=n_w).astype(np.float64)
    n_by_t = np.bincount(t, minlength=n_t).astype(np.float64)
    ty = t * k + y
    q = mv_init(t, y, n_t, k, gold)

    def m_step(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        correct = np.bincount(w, weights=q.ravel()[ty], minlength=n_w)
        s = (correct + smoothing) / np.maximum(n_by_w + 2 * smoothing, _EPS)
        s = np.clip(s, _EPS, 1 - _EPS)
        pc = np.maximum(q.sum(axis=0), _EPS)
        return s, np.log(pc / pc.sum())

    s, log_pi = m_step(q)
    hist: list[float] = []
    prev = -np.inf
    it = 0
    for it in range(1, n_iter + 1):  # noqa: B007
        log_s = np.log(s)
        log_off = np.log((1 - s) / max(k - 1, 1))
        base = np.bincount(t, weights=log_off[w], minlength=n_t)
        delta = np.bincount(ty, weights=(log_s - log_off)[w], minlength=n_t * k)
        logits = delta.reshape(n_t, k) + base[:, None] + log_pi
        q = fix_gold(softmax_rows(logits), gold)
        s, log_pi = m_step(q)
        # crowd-kit's ELBO per answer (see DawidSkene) with one-coin confusion matrices
        p_ok = q.ravel()[ty]
        log_s = np.log(s)
        log_off = np.log(np.maximum((1 - s) / max(k - 1, 1), _EPS))
        # einsum, not BLAS dot: threaded BLAS stalls on small vectors when cores are busy
        joint = float(np.einsum("i,i->", p_ok, (log_s - log_off)[w]) + log_off @ n_by_w)
        joint += float(np.einsum("tc,t,c->", q, n_by_t, log_pi))
        qc = np.maximum(q, _EPS)
        loss = (joint - float(np.sum(qc * np.log(qc)))) / t.size
        hist.append(loss)
        if loss - prev < tol:
            break
        prev = loss
    off = (1 - s) / max(k - 1, 1)
    errors = np.repeat(off[:, None, None], k, axis=1).repeat(k, axis=2)
    idx = np.arange(k)
    errors[:, idx, idx] = s[:, None]
    priors = np.exp(log_pi)
    labels = argmax_rows(q, rng)
    return ArrayResult(
        probas=q,
        labels=labels,
        priors=priors,
        skills=s,
        errors=errors,
        loss_history=hist,
        n_iter=it,
    )


@aggregator_params
class OneCoinDawidSkene(BaseAggregator):
    """One-coin Dawid-Skene: one accuracy ``s_w`` per worker, errors spread uniformly.

    Parameters: ``n_iter``, ``tol`` (as :class:`DawidSkene`), ``smoothing`` (pseudo-counts on
    each worker's correct/wrong counts), ``random_state``, ``labels``. ``skills_`` is
    :math:`s_w`.
    """

    _arrays = staticmethod(one_coin_arrays)

    n_iter: int = 100
    tol: float = 1e-5
    smoothing: float = 0.0
    random_state: Any = 0
    labels: Sequence[Hashable] | None = None
