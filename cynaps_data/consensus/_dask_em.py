"""The models' EM loops on persisted Dask partitions (see :mod:`.dask` for the data contract).

Each model is a pair: per-partition functions (module level, so a real cluster can run them)
that take a :class:`~.dask.Part` and the broadcast model and return small sufficient statistics
or the partition's final output; and a client-side loop that adds the statistics up in
partition order and runs exactly the in-memory M-step, loss and stopping rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import digamma

from ._base import (
    argmax_rows,
    check_choice,
    check_em_params,
    check_positive_count,
    fix_gold,
    mv_init,
    rng_from,
    softmax_rows,
)
from .dask import Cluster, Part, outputs, part_rng
from .dawid_skene import confusion_from_counts, elbo_per_answer, spmm_add

__all__ = ["FITTERS", "DaskResult"]

_EPS = 1e-10


@dataclass
class DaskResult:
    """Like :class:`~._base.ArrayResult`, with ``probas``/``labels`` as Dask collections."""

    probas: Any
    labels: Any
    priors: np.ndarray
    skills: np.ndarray
    errors: np.ndarray | None = None
    loss_history: list[float] = field(default_factory=list)
    n_iter: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _add(stats: list[tuple]) -> list[Any]:
    """Sum a list of equal-shaped tuples element-wise, in list (partition) order."""
    out = [np.array(x, dtype=np.float64, copy=True) for x in stats[0]]
    for s in stats[1:]:
        for i, x in enumerate(s):
            out[i] += x
    return out


def _labels_of(p: Part, q: np.ndarray, m: tuple) -> np.ndarray:
    return argmax_rows(q, part_rng(m[-1], p.index))


# ---- Dawid-Skene ------------------------------------------------------------------------------


def _ds_start(p: Part, m: tuple) -> tuple:
    q0 = mv_init(p.t.astype(np.int64), p.y, p.n_tasks, p.k, p.gold)
    q0 = np.ascontiguousarray(q0)
    return spmm_add(p.at, q0, np.zeros((p.n_workers * p.k, p.k))), np.einsum("tc->c", q0)


def _ds_posteriors(p: Part, m: tuple) -> tuple[np.ndarray, float]:
    log_e2, log_pi, shift, has_gold = m[:4]
    qs = np.empty((p.n_tasks, p.k))
    qs[:] = log_pi
    spmm_add(p.a, log_e2, qs)
    lse: list = []
    softmax_rows(qs, lse, shift=shift)
    if has_gold:
        fix_gold(qs, p.gold)
        qc = np.maximum(qs, _EPS)
        return qs, -float(np.einsum("tc,tc->", qc, np.log(qc)))
    return qs, float(lse[0].sum())


def _ds_step(p: Part, m: tuple) -> tuple:
    qs, ent = _ds_posteriors(p, m)
    counts = spmm_add(p.at, qs, np.zeros((p.n_workers * p.k, p.k)))
    return counts, np.einsum("tc->c", qs), np.array(ent)


def _ds_final(p: Part, m: tuple) -> tuple:
    if m[0] is None:  # no iteration ran: the majority-vote start
        q = mv_init(p.t.astype(np.int64), p.y, p.n_tasks, p.k, p.gold)
    else:
        q, _ = _ds_posteriors(p, m)
    return outputs(p, q, _labels_of(p, q, m), m[-2])


class _DawidSkene:
    with_incidence = True

    @staticmethod
    def fit(model: Any, cl: Cluster) -> DaskResult:
        if hasattr(model, "n_iter"):
            check_em_params(model.n_iter, getattr(model, "tol", 0.0))
        w_, k = cl.n_workers, cl.k
        wk = w_ * k

        def log_params(counts: np.ndarray, q_sum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            log_e = confusion_from_counts(
                counts.reshape(w_, k, k), model.alpha_correct, model.alpha_wrong, False
            )
            pc = np.maximum(q_sum + model.alpha_prior, _EPS)
            return log_e, np.log(pc / pc.sum())

        counts, q_sum = _add(cl.map(_ds_start))
        log_e, log_pi = log_params(counts, q_sum)
        used: tuple = (None, None, False, cl.has_gold)
        hist: list[float] = []
        prev = -np.inf
        it = 0
        for it in range(1, model.n_iter + 1):  # noqa: B007
            log_e2 = np.ascontiguousarray(log_e.reshape(wk, k))
            shift = cl.max_per_task * -float(log_e.min()) - float(log_pi.min()) >= 700.0
            used = (log_e2, log_pi, shift, cl.has_gold)
            counts, q_sum, ent = _add(cl.map(_ds_step, *used))
            entropy = float(ent)
            if not cl.has_gold:
                entropy -= float(np.einsum("wyc,wyc->", counts.reshape(log_e.shape), log_e))
                entropy -= float(np.einsum("c,c->", q_sum, log_pi))
            log_e, log_pi = log_params(counts, q_sum)
            loss = elbo_per_answer(
                None, counts.reshape(log_e.shape), log_e, log_pi, cl.n_answers, entropy
            )
            hist.append(loss)
            if loss - prev < model.tol:
                break
            prev = loss
        probas, labels = cl.finish(_ds_final, *used, cl.label_names, cl.random_state)
        errors = np.exp(log_e)
        priors = np.exp(log_pi)
        priors /= priors.sum()
        skills = np.einsum("wcc,c->w", errors, priors)
        return DaskResult(probas, labels, priors, skills, errors, hist, it)


# ---- one-coin Dawid-Skene ---------------------------------------------------------------------


def _ods_start(p: Part, m: tuple) -> tuple:
    q = mv_init(p.t.astype(np.int64), p.y, p.n_tasks, p.k, p.gold)
    return _ods_stats(p, q)


def _ods_stats(p: Part, q: np.ndarray) -> tuple:
    correct = np.bincount(p.w, weights=q.ravel()[p.ty], minlength=p.n_workers)
    n_by_t = np.bincount(p.t, minlength=p.n_tasks).astype(np.float64)
    qc = np.maximum(q, _EPS)
    return (
        correct,
        q.sum(axis=0),
        np.einsum("tc,t->c", q, n_by_t),
        np.array(float(np.sum(qc * np.log(qc)))),
    )


def _ods_posteriors(p: Part, m: tuple) -> np.ndarray:
    log_s, log_off, log_pi = m[:3]
    ty = p.ty
    base = np.bincount(p.t, weights=log_off[p.w], minlength=p.n_tasks)
    delta = np.bincount(ty, weights=(log_s - log_off)[p.w], minlength=p.n_tasks * p.k)
    logits = delta.reshape(p.n_tasks, p.k) + base[:, None] + log_pi
    return fix_gold(softmax_rows(logits), p.gold)


def _ods_step(p: Part, m: tuple) -> tuple:
    return _ods_stats(p, _ods_posteriors(p, m))


def _ods_final(p: Part, m: tuple) -> tuple:
    if m[0] is None:
        q = mv_init(p.t.astype(np.int64), p.y, p.n_tasks, p.k, p.gold)
    else:
        q = _ods_posteriors(p, m)
    return outputs(p, q, _labels_of(p, q, m), m[-2])


class _OneCoin:
    with_incidence = False

    @staticmethod
    def fit(model: Any, cl: Cluster) -> DaskResult:
        if hasattr(model, "n_iter"):
            check_em_params(model.n_iter, getattr(model, "tol", 0.0))
        k = cl.k
        n_by_w = cl.n_wy.sum(axis=1)
        smoothing = model.smoothing

        def m_step(correct: np.ndarray, q_sum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            s = (correct + smoothing) / np.maximum(n_by_w + 2 * smoothing, _EPS)
            s = np.clip(s, _EPS, 1 - _EPS)
            pc = np.maximum(q_sum, _EPS)
            return s, np.log(pc / pc.sum())

        correct, q_sum, _, _ = _add(cl.map(_ods_start))
        s, log_pi = m_step(correct, q_sum)
        used: tuple = (None, None, None)
        hist: list[float] = []
        prev = -np.inf
        it = 0
        for it in range(1, model.n_iter + 1):  # noqa: B007
            log_s = np.log(s)
            log_off = np.log((1 - s) / max(k - 1, 1))
            used = (log_s, log_off, log_pi)
            correct, q_sum, nq, qlogq = _add(cl.map(_ods_step, *used))
            s, log_pi = m_step(correct, q_sum)
            log_s = np.log(s)
            log_off = np.log(np.maximum((1 - s) / max(k - 1, 1), _EPS))
            # the in-memory loss, with sum_i p_ok_i g[w_i] = sum_w correct_w g_w
            joint = float(correct @ (log_s - log_off) + log_off @ n_by_w)
            joint += float(nq @ log_pi)
            loss = (joint - float(qlogq)) / cl.n_answers
            hist.append(loss)
            if loss - prev < model.tol:
                break
            prev = loss
        probas, labels = cl.finish(_ods_final, *used, cl.label_names, cl.random_state)
        off = (1 - s) / max(k - 1, 1)
        errors = np.repeat(off[:, None, None], k, axis=1).repeat(k, axis=2)
        idx = np.arange(k)
        errors[:, idx, idx] = s[:, None]
        return DaskResult(probas, labels, np.exp(log_pi), s, errors, hist, it)


# ---- MACE -------------------------------------------------------------------------------------


def _mace_posteriors(p: Part, m: tuple) -> tuple[np.ndarray, float]:
    gain, log_pi, safe = m[:3]
    logits = np.bincount(p.ty, weights=gain.ravel()[p.wy], minlength=p.n_tasks * p.k)
    logits = logits.reshape(p.n_tasks, p.k)
    logits += log_pi
    lse: list = []
    q = fix_gold(softmax_rows(logits, lse, shift=not safe), p.gold)
    return q, float(lse[0].sum())


def _mace_step(p: Part, m: tuple) -> tuple:
    q, lse = _mace_posteriors(p, m)
    q_wy = np.bincount(p.wy, weights=q.ravel()[p.ty], minlength=p.n_workers * p.k)
    return np.array(lse), q.sum(axis=0), q_wy


def _mace_final(p: Part, m: tuple) -> tuple:
    q, _ = _mace_posteriors(p, m)
    return outputs(p, q, _labels_of(p, q, m), m[-2])


class _MACE:
    with_incidence = False

    @staticmethod
    def fit(model: Any, cl: Cluster) -> DaskResult:
        if hasattr(model, "n_iter"):
            check_em_params(model.n_iter, getattr(model, "tol", 0.0))
        check_choice(model.method, ("vb", "em"), "method")
        check_positive_count(model.n_restarts, "n_restarts")
        w_, k, n = cl.n_workers, cl.k, cl.n_answers
        n_wy = cl.n_wy
        n_by_w = n_wy.sum(axis=1)
        smooth = 0.01 / k if model.smoothing is None else float(model.smoothing)
        alpha, beta, prior = model.alpha, model.beta, model.strategy_prior
        rng = rng_from(model.random_state)
        log_pi = [np.full(k, -np.log(k))]

        def gain_of(log_know: np.ndarray, log_spam: np.ndarray, log_xi: np.ndarray) -> tuple:
            lo = log_spam[:, None] + log_xi
            hi = np.logaddexp(lo, log_know[:, None])
            return lo, hi, hi - lo

        def e_step(params: tuple) -> tuple[float, np.ndarray, tuple]:
            log_know = params[0]
            lo, hi, gain = gain_of(*params)
            safe = cl.max_per_task * float(gain.max()) < 600.0 and float(log_pi[0].min()) > -600.0
            used = (gain, log_pi[0].copy(), safe)
            lse, q_sum, q_wy = _add(cl.map(_mace_step, *used))
            ll = (float(lse) + float(np.einsum("wy,wy->", n_wy, lo))) / n
            if model.learn_priors:
                pc = q_sum + 1.0
                log_pi[0] = np.log(pc / pc.sum())
            knowing = q_wy.reshape(w_, k) * np.exp(log_know[:, None] - hi)
            return ll, knowing, used

        def m_step(knowing: np.ndarray) -> tuple:
            know_w = knowing.sum(axis=1)
            spam_w = n_by_w - know_w
            strat = n_wy - knowing
            if model.method == "vb":
                tot = digamma(n_by_w + alpha + beta)
                return (
                    digamma(know_w + beta) - tot,
                    digamma(spam_w + alpha) - tot,
                    digamma(strat + prior) - digamma(strat.sum(axis=1, keepdims=True) + k * prior),
                )
            tot = np.log(n_by_w + 2 * smooth)
            return (
                np.log(know_w + smooth) - tot,
                np.log(spam_w + smooth) - tot,
                np.log(strat + smooth) - np.log(strat.sum(axis=1, keepdims=True) + k * smooth),
            )

        best: Any = None
        for _ in range(model.n_restarts):
            sp_ = rng.uniform(1.0, 1.0 + model.default_noise, size=(w_, 2))
            sp_ /= sp_.sum(axis=1, keepdims=True)
            xi = rng.uniform(1.0, 1.0 + model.default_noise, size=(w_, k))
            xi /= xi.sum(axis=1, keepdims=True)
            params = (np.log(sp_[:, 1]), np.log(sp_[:, 0]), np.log(xi))
            log_pi[0] = np.full(k, -np.log(k))
            hist: list[float] = []
            prev = -np.inf
            it = 0
            for it in range(1, model.n_iter + 1):  # noqa: B007
                ll, knowing, _ = e_step(params)
                hist.append(ll)
                params = m_step(knowing)
                if ll - prev < model.tol:
                    break
                prev = ll
            used_log_pi = log_pi[0].copy()
            ll, _, _ = e_step(params)
            if best is None or ll > best[0]:
                best = (ll, params, hist, it, used_log_pi)
        _, params, hist, it, log_pi[0] = best
        # the best restart's posteriors under its own class prior; the E-step then re-learns
        # the prior (``priors_``), as in memory
        _, _, used = e_step(params)
        probas, labels = cl.finish(_mace_final, *used, cl.label_names, cl.random_state)
        know = np.exp(params[0])
        know = know / (know + np.exp(params[1]))
        strategy = pd.DataFrame(np.exp(params[2]), index=cl.worker_names, columns=cl.label_names)
        return DaskResult(
            probas,
            labels,
            np.exp(log_pi[0]),
            know,
            None,
            hist,
            it,
            {"spam_strategy_": strategy},
        )


# ---- majority vote ------------------------------------------------------------------------


def _mv_final(p: Part, m: tuple) -> tuple:
    weights, tie_break = m[:2]
    ty = p.ty
    vote_w = None if weights is None else weights[p.w]
    counts = np.bincount(ty, weights=vote_w, minlength=p.n_tasks * p.k).reshape(p.n_tasks, p.k)
    if tie_break == "random":
        labels = argmax_rows(counts.astype(np.float64), part_rng(m[-1], p.index))
    else:
        labels = counts.argmax(axis=1)
    tot = counts.sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        probas = np.where(tot > 0, counts / np.where(tot > 0, tot, 1.0), 1.0 / p.k)
    if p.gold is not None:
        fix_gold(probas, p.gold)
        has = p.gold >= 0
        labels[has] = p.gold[has]
    return outputs(p, probas, labels, m[-2])


def _mv_stats(p: Part, m: tuple) -> tuple:
    probas, labels = _mv_final(p, m)
    codes = m[-2].get_indexer(labels.to_numpy())
    ok = (codes[p.t] == p.y).astype(np.float64)
    agree = np.bincount(p.w, weights=ok, minlength=p.n_workers)
    return agree, probas.to_numpy().sum(axis=0), np.array(float(p.n_tasks))


class _MajorityVote:
    with_incidence = False

    @staticmethod
    def fit(model: Any, cl: Cluster) -> DaskResult:
        check_choice(model.tie_break, ("first", "random"), "tie_break")
        weights = None
        if model.weights is not None:
            wts = model.weights
            wts = wts if isinstance(wts, pd.Series) else pd.Series(wts)
            weights = wts.reindex(cl.worker_names).to_numpy(dtype=np.float64, copy=True)
            weights[np.isnan(weights)] = float(model.default_weight)
            if not np.all(np.isfinite(weights)) or (weights < 0).any():
                from ..errors import ValidationError

                raise ValidationError("worker weights must be finite and >= 0", param="weights")
        m = (weights, model.tie_break, cl.label_names, cl.random_state)
        agree, p_sum, n_tasks = _add(cl.map(_mv_stats, *m))
        probas, labels = cl.finish(_mv_final, *m)
        with np.errstate(invalid="ignore", divide="ignore"):
            skills = agree / cl.n_wy.sum(axis=1)
        return DaskResult(probas, labels, p_sum / float(n_tasks), skills)


FITTERS: dict[str, Any] = {
    "MajorityVote": _MajorityVote,
    "DawidSkene": _DawidSkene,
    "OneCoinDawidSkene": _OneCoin,
    "MACE": _MACE,
}
