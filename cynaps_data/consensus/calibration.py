r"""Calibration of posterior probabilities.

Expected calibration error (Guo et al., 2017) with ``n_bins`` equal-width confidence bins:
:math:`\mathrm{ECE} = \sum_b \frac{|B_b|}{n} \, |\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|`,
where the confidence of a task is its top posterior probability and its accuracy is whether the
arg-max class equals the gold label.

:func:`resampled_confidence` calibrates a posterior without gold: the confidence of each task's
label is its average posterior over Poisson(1) re-weightings of the task's answers (a vote
bootstrap, no refit), each answer scored by a leave-this-task-out confusion model built from the
posterior itself; the row is then tempered to that confidence, so the arg-max never changes.

:func:`design_effect_temper` then discounts correlated answers: the answers to one task are not
independent (hard items fool several annotators the same way), so with an intra-task correlation
:math:`\rho` the :math:`\bar n` answers of a task carry the information of
:math:`\bar n / (1 + (\bar n - 1)\rho)` independent ones (Kish's design effect); the
log-posterior is scaled by that factor (a monotone map again).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import ValidationError
from ._base import rng_from

__all__ = [
    "design_effect_temper",
    "expected_calibration_error",
    "reliability_table",
    "resampled_confidence",
    "temper_to",
]


def reliability_table(probas: pd.DataFrame, gold: pd.Series, n_bins: int = 10) -> pd.DataFrame:
    """Per-bin ``count``, mean ``confidence`` and ``accuracy`` on the tasks that have gold.

    ``probas``: DataFrame task x label (rows sum to 1). ``gold``: Series indexed by task.
    """
    if not isinstance(probas, pd.DataFrame):
        raise ValidationError("probas must be a DataFrame task x label", param="probas")
    if not isinstance(gold, pd.Series):
        raise ValidationError("gold must be a Series indexed by task", param="gold")
    if (
        isinstance(n_bins, (bool, np.bool_))
        or not isinstance(n_bins, (int, np.integer))
        or n_bins < 1
    ):
        raise ValidationError(f"n_bins must be an integer >= 1, got {n_bins!r}", param="n_bins")
    if probas.index.has_duplicates:
        dup = probas.index[probas.index.duplicated()][:5].tolist()
        raise ValidationError(f"probas has duplicate task(s) {dup}", param="probas")
    g = gold.dropna()
    g = g[g.index.isin(probas.index)]
    if g.index.has_duplicates:
        g = g[~g.index.duplicated(keep="first")]
    if g.empty:
        raise ValidationError("no gold task is present in probas", param="gold")
    # a gold class that is no column counts as a miss, unless it looks like a type mismatch
    # (no gold label is a column, or one is a column's text: 1 vs "1"): then every task would
    # silently count as wrong
    gold_codes = probas.columns.get_indexer(g.to_numpy())
    unknown = gold_codes < 0
    if unknown.any():
        bad = pd.unique(g.to_numpy()[unknown])
        as_text = {str(c) for c in probas.columns}
        if unknown.all() or any(str(v) in as_text for v in bad):
            raise ValidationError(
                f"gold labels {bad[:10].tolist()} are not columns of probas "
                f"{probas.columns.tolist()[:20]}; gold and probas must use the same label "
                "values and types (e.g. 1 vs '1')",
                param="gold",
            )
    p = probas.loc[g.index].to_numpy(dtype=np.float64)
    nan_rows = np.isnan(p).any(axis=1)
    if nan_rows.any():
        raise ValidationError(
            f"probas has {int(nan_rows.sum())} gold task(s) with missing (NaN) posteriors, "
            f"first {g.index[nan_rows][0]!r}",
            param="probas",
        )
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == gold_codes).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    cnt = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / cnt
        mean_acc = np.bincount(bins, weights=correct, minlength=n_bins) / cnt
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "lower": edges[:-1],
            "upper": edges[1:],
            "count": cnt,
            "confidence": mean_conf,
            "accuracy": mean_acc,
        }
    )


def expected_calibration_error(probas: pd.DataFrame, gold: pd.Series, n_bins: int = 10) -> float:
    """ECE of ``probas`` on the gold tasks (0 = perfectly calibrated)."""
    tab = reliability_table(probas, gold, n_bins)
    used = tab["count"] > 0
    w = tab.loc[used, "count"] / tab["count"].sum()
    return float((w * (tab.loc[used, "accuracy"] - tab.loc[used, "confidence"]).abs()).sum())


def temper_to(q: np.ndarray, target: np.ndarray, n_steps: int = 12) -> np.ndarray:
    r"""Temper each row of ``q`` (``(n, k)``, rows sum to 1) to the top probability ``target``
    (``(n,)``): :math:`q_c^{\beta} / \sum_j q_j^{\beta}` with the row's :math:`\beta \in (0, 1]`
    (:math:`T = 1/\beta \ge 1`). A monotone map: the order of the classes, hence the arg-max,
    is kept; ``target`` is clipped to ``[1/k, max q]`` (tempering only lowers it).

    :math:`\beta` solves :math:`-\log \sum_c e^{\beta d_c} = \log \mathrm{target}` with
    :math:`d_c = \log q_c - \log q_{\max} \le 0`; the left side is increasing and concave in
    :math:`\beta`, so Newton's method from :math:`\beta = 1` steps past the root once and then
    climbs to it monotonically (``n_steps`` iterations, rows that are already there stop moving)."""
    n, k = q.shape
    if n == 0 or k < 2:
        return q.copy()
    d = np.log(np.clip(q, 1e-300, 1.0))
    d -= d.max(axis=1, keepdims=True)
    np.maximum(d, -700.0, out=d)
    top = q.max(axis=1)
    goal = np.log(np.clip(target, 1.0 / k + 1e-9, top))
    beta = np.ones(n)
    lower = goal < np.log(np.clip(top, 1e-300, 1.0)) - 1e-12
    idx = np.flatnonzero(lower)
    for _ in range(n_steps):
        if idx.size == 0:
            break
        w = np.exp(d[idx] * beta[idx, None])
        sw = w.sum(axis=1)
        f = -np.log(sw)
        slope = -(w * d[idx]).sum(axis=1) / sw  # >= 0
        step = (f - goal[idx]) / np.maximum(slope, 1e-300)
        beta[idx] = np.clip(beta[idx] - step, 1e-6, 1.0)
        idx = idx[np.abs(step) > 1e-10 * np.maximum(beta[idx], 1e-6)]
    out = np.exp(d * beta[:, None])
    out /= out.sum(axis=1, keepdims=True)
    out[~lower] = q[~lower]  # nothing to lower: keep the row bit for bit
    return out


# Poisson(1) weights from one random byte each: 256 slots in proportion to the probabilities
# of 0, 1, 2, ... (quantised to 1/256; mean 1.0 within 0.004)
_POISSON_TABLE = np.repeat(
    np.arange(7, dtype=np.float64),
    np.diff(
        np.round(
            256 * np.r_[0.0, np.cumsum(np.exp(-1.0) / np.cumprod(np.r_[1, np.arange(1, 7)]))]
        ).astype(int)
    ),
)
_POISSON_TABLE = np.r_[_POISSON_TABLE, np.full(256 - _POISSON_TABLE.size, 3.0)]


def resampled_confidence(
    task: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    q: np.ndarray,
    n_workers: int,
    *,
    n_draws: int = 40,
    alpha: float = 1.0,
    random_state: object = 0,
) -> np.ndarray:
    r"""Gold-free calibration of a posterior ``q`` (``(n_tasks, k)``) from the answers it came from
    (integer codes ``task``, ``worker``, ``label``); returns the calibrated ``(n_tasks, k)`` array,
    rows summing to 1, same arg-max as ``q``.

    1. Leave-this-task-out confusions from ``q`` itself: with :math:`N_{wyc} = \sum q_{tc}` over
       w's answers y, answer (t, w, y) scores class c by
       :math:`\ell_{c} = \log \frac{N_{wyc} - q_{tc} + \alpha}{\sum_{y'} N_{wy'c} - q_{tc} + k\alpha}`
       (the task's own answers do not vouch for themselves).
    2. ``n_draws`` vote bootstraps: weights :math:`W \sim \mathrm{Poisson}(1)` per answer (one random byte each, probabilities quantised to 1/256),
       :math:`p^{(b)}_t = \mathrm{softmax}(\log \bar\pi + \sum W \ell)`; the confidence of the
       label :math:`\hat z_t = \arg\max q_t` is :math:`\frac1B \sum_b p^{(b)}_{t \hat z_t}`.
    3. :func:`temper_to` that confidence (only ever lowers it).

    Only the classes that occur (in an answer or as a row's arg-max) are re-weighted; a
    declared class nobody chose keeps its raw posterior.

    Cost: ``n_draws`` sparse products over the answers (no refit of the model).
    """
    t = np.asarray(task, dtype=np.int64)
    w = np.asarray(worker, dtype=np.int64)
    y = np.asarray(label, dtype=np.int64)
    n_t, k = q.shape
    if k < 2 or t.size == 0:
        return q.copy()
    # only the classes that occur (in an answer, or as a row's arg-max: gold) take part: a
    # declared class nobody chose keeps its raw posterior instead of receiving tempered mass
    used = np.bincount(y, minlength=k) > 0
    used[q.argmax(axis=1)] = True
    if not used.all():
        mass = q[:, used].sum(axis=1, keepdims=True)
        out = q.copy()
        sub_y = (np.cumsum(used) - 1)[y]
        sub = resampled_confidence(
            t,
            w,
            sub_y,
            q[:, used] / mass,
            n_workers,
            n_draws=n_draws,
            alpha=alpha,
            random_state=random_state,
        )
        out[:, used] = sub * mass
        return out
    qt = q[t]
    cell = ((w * k + y)[:, None] * k + np.arange(k)).ravel()
    counts = np.bincount(cell, weights=qt.ravel(), minlength=n_workers * k * k)
    counts = counts.reshape(n_workers, k, k)
    totals = counts.sum(axis=1)  # [w, c]
    ell = np.log(np.maximum(counts[w, y, :] - qt, 0.0) + alpha) - np.log(
        np.maximum(totals[w, :] - qt, 0.0) + k * alpha
    )
    log_prior = np.log(np.clip(q.mean(axis=0), 1e-300, 1.0))
    z = q.argmax(axis=1)
    rows = np.arange(n_t)
    rng = rng_from(random_state)
    conf = np.zeros(n_t)
    by_task = sp.csr_matrix((np.ones(t.size), (t, np.arange(t.size))), shape=(n_t, t.size))
    for _ in range(int(n_draws)):
        wts = _POISSON_TABLE[rng.integers(0, 256, t.size, dtype=np.uint8)]
        a = by_task @ (ell * wts[:, None])
        a += log_prior
        a -= a.max(axis=1, keepdims=True)
        np.exp(a, out=a)
        conf += a[rows, z] / a.sum(axis=1)
    conf /= n_draws
    return temper_to(q, conf)


def design_effect_temper(q: np.ndarray, n_mean: float, rho: float) -> np.ndarray:
    r"""Temper every row of ``q`` (``(n, k)``, rows sum to 1) by Kish's design effect:
    :math:`q_c^{\beta} / \sum_j q_j^{\beta}` with :math:`\beta = 1 / (1 + (\bar n - 1)\rho)`,
    ``n_mean`` = :math:`\bar n` the mean number of answers per task, ``rho`` the assumed
    intra-task correlation of the answers (0 = independent: ``q`` unchanged). Monotone (the
    arg-max is kept); one-hot rows (gold) stay one-hot. Returns a new array."""
    if rho < 0:
        raise ValidationError("rho must be >= 0", param="rho")
    beta = 1.0 / (1.0 + max(float(n_mean) - 1.0, 0.0) * float(rho))
    if beta >= 1.0 or q.size == 0:
        return q.copy()
    lq = np.log(np.clip(q, 1e-300, 1.0)) * beta
    lq -= lq.max(axis=1, keepdims=True)
    out = np.exp(lq)
    out[q <= 0] = 0.0
    out /= out.sum(axis=1, keepdims=True)
    return out
