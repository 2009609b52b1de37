r"""Inter-annotator agreement on long ``task, worker, label`` data (missing data allowed).

All functions work on sparse / per-task count tables (tasks x classes), never on a dense
task x worker matrix. Let :math:`n_{tc}` be the number of answers of class :math:`c` on task
:math:`t` and :math:`n_t = \sum_c n_{tc}`.

* :func:`percent_agreement`: mean over tasks with :math:`n_t \ge 2` of the share of agreeing
  answer pairs, :math:`P_t = \sum_c n_{tc}(n_{tc}-1) / (n_t(n_t-1))`.
* :func:`fleiss_kappa` (Fleiss, 1971): :math:`\kappa = (\bar P - P_e)/(1-P_e)`,
  :math:`\bar P` the mean of :math:`P_t`, :math:`P_e=\sum_c p_c^2` with
  :math:`p_c = \sum_t n_{tc} / \sum_t n_t`. With a constant number of raters per task this is
  exactly statsmodels' ``fleiss_kappa(table, method="fleiss")``; with varying numbers it is the
  usual generalisation (tasks with one answer are skipped).
* :func:`cohen_kappa_matrix` (Cohen, 1960): pairwise worker x worker kappa on the tasks both
  workers labelled, :math:`\kappa = (p_o - p_e)/(1-p_e)` with marginals from those shared tasks
  (as ``sklearn.metrics.cohen_kappa_score``).
* :func:`krippendorff_alpha` (Krippendorff, 2011): :math:`\alpha = 1 - D_o/D_e` from the
  coincidence matrix :math:`o_{ck}=\sum_t (n_{tc}n_{tk}-[c=k]n_{tc})/(n_t-1)`, with nominal,
  ordinal or interval distance; identical to the ``krippendorff`` package.

Set-valued (multi-label) answers, a ``labels`` column of list-likes (see
:mod:`~cynaps_data.consensus.multilabel`):

* :func:`set_agreement`: per task, the mean over answer pairs of the Jaccard similarity
  :math:`|A\cap B|/|A\cup B|` (1 for two empty sets) and of the MASI similarity
  :math:`J\cdot M` (Passonneau, 2006; :math:`M` = 1 if :math:`A=B`, 2/3 if one contains the
  other, 1/3 if they only overlap, 0 if disjoint).
* :func:`krippendorff_alpha_sets`: Krippendorff's alpha with each distinct label set as a value
  and distance :math:`1 - \mathrm{MASI}`, :math:`1 - J` or nominal (whole-set equality):
  :math:`\alpha = 1 - D_o/D_e` as above with :math:`D_o = \frac1N\sum_t
  \frac{1}{n_t-1}\sum_{v,v'} n_{tv}n_{tv'}d_{vv'}`, :math:`D_e = \frac{1}{N(N-1)}
  \sum_{v,v'} n_v n_{v'} d_{vv'}` (tasks with one answer drop out) -- the same quantity as
  nltk's ``AnnotationTask(distance=masi_distance).alpha()``.

Repeated ``(task, worker)`` rows: :func:`cohen_kappa_matrix` and :func:`krippendorff_alpha`
keep the first answer of each pair (a coder has one value per unit); the others use all rows.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

from ..errors import ValidationError
from ._encode import Encoded, encode

__all__ = [
    "cohen_kappa",
    "cohen_kappa_matrix",
    "fleiss_kappa",
    "krippendorff_alpha",
    "percent_agreement",
    "count_table",
    "krippendorff_alpha_sets",
    "set_agreement",
]


def count_table(enc: Encoded) -> np.ndarray:
    """Dense ``n_tasks x n_classes`` answer counts."""
    k = enc.n_classes
    return (
        np.bincount(enc.task * k + enc.label, minlength=enc.n_tasks * k)
        .reshape(enc.n_tasks, k)
        .astype(np.float64)
    )


def _dedup(df: pd.DataFrame) -> pd.DataFrame:
    if df.duplicated(["task", "worker"]).any():
        return df.drop_duplicates(["task", "worker"], keep="first")
    return df


def _multi_rated(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = counts.sum(axis=1)
    keep = n >= 2
    if not keep.any():
        raise ValidationError(
            "no task has two or more answers; agreement is undefined", param="task"
        )
    return counts[keep], n[keep]


def percent_agreement(df: pd.DataFrame, labels: Sequence[Hashable] | None = None) -> float:
    """Mean pairwise agreement over tasks with at least two answers (0..1)."""
    counts, n = _multi_rated(count_table(encode(df, labels)))
    return float(np.mean((counts * (counts - 1)).sum(axis=1) / (n * (n - 1))))


def fleiss_kappa(df: pd.DataFrame, labels: Sequence[Hashable] | None = None) -> float:
    """Fleiss' kappa (see module docstring). Returns NaN if chance agreement is 1."""
    counts, n = _multi_rated(count_table(encode(df, labels)))
    p_t = (counts * (counts - 1)).sum(axis=1) / (n * (n - 1))
    p_c = counts.sum(axis=0) / counts.sum()
    p_e = float((p_c * p_c).sum())
    if p_e >= 1.0:
        return float("nan")
    return float((p_t.mean() - p_e) / (1.0 - p_e))


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa between two equal-length label sequences (NaN if undefined)."""
    sa, sb = pd.Series(list(a)), pd.Series(list(b))
    if len(sa) != len(sb):
        raise ValidationError("the two label sequences differ in length", param="b")
    if len(sa) == 0:
        raise ValidationError("empty input", param="a")
    codes, _ = pd.factorize(pd.concat([sa, sb], ignore_index=True))
    ca, cb = codes[: len(sa)], codes[len(sa) :]
    k = int(codes.max()) + 1
    po = float(np.mean(ca == cb))
    pe = float((np.bincount(ca, minlength=k) * np.bincount(cb, minlength=k)).sum()) / len(sa) ** 2
    return float("nan") if pe >= 1.0 else (po - pe) / (1.0 - pe)


def cohen_kappa_matrix(
    df: pd.DataFrame, labels: Sequence[Hashable] | None = None, min_overlap: int = 1
) -> pd.DataFrame:
    """Pairwise Cohen's kappa, a symmetric ``worker x worker`` DataFrame.

    Entry ``(u, v)`` is kappa on the tasks both ``u`` and ``v`` answered; NaN when they share
    fewer than ``min_overlap`` tasks or kappa is undefined (chance agreement 1). Diagonal 1.
    Built from the answer pairs of each task (sum over tasks of answers squared), so it never
    forms a task x worker matrix; the output is workers x workers.
    """
    enc = encode(_dedup(df) if isinstance(df, pd.DataFrame) else df, labels)
    k, n_w = enc.n_classes, enc.n_workers
    order = np.argsort(enc.task, kind="stable")
    t, w, y = enc.task[order], enc.worker[order], enc.label[order]
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    sizes = np.diff(np.r_[starts, t.size])
    # all ordered pairs (i, j), i != j, within each task
    rep = np.repeat(sizes, sizes)  # for each answer, the size of its task
    first = np.repeat(starts, sizes)
    i_idx = np.repeat(np.arange(t.size), rep)
    j_idx = np.repeat(first, rep) + (np.arange(i_idx.size) - np.repeat(np.cumsum(rep) - rep, rep))
    keep = i_idx != j_idx
    i_idx, j_idx = i_idx[keep], j_idx[keep]
    pair = w[i_idx] * n_w + w[j_idx]
    pid, uniq = pd.factorize(pair, sort=True)
    n_p = len(uniq)
    n_common = np.bincount(pid, minlength=n_p).astype(np.float64)
    agree = np.bincount(pid, weights=(y[i_idx] == y[j_idx]).astype(np.float64), minlength=n_p)
    m1 = np.bincount(pid * k + y[i_idx], minlength=n_p * k).reshape(n_p, k)
    m2 = np.bincount(pid * k + y[j_idx], minlength=n_p * k).reshape(n_p, k)
    po = agree / n_common
    pe = (m1 * m2).sum(axis=1) / n_common**2
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(pe < 1.0, (po - pe) / (1.0 - pe), np.nan)
    kappa[n_common < min_overlap] = np.nan
    mat = np.full((n_w, n_w), np.nan)
    u, v = np.divmod(np.asarray(uniq, dtype=np.int64), n_w)
    mat[u, v] = kappa
    np.fill_diagonal(mat, 1.0)
    return pd.DataFrame(mat, index=enc.worker_names, columns=enc.worker_names.rename("worker_2"))


_LEVELS = ("nominal", "ordinal", "interval")


def krippendorff_alpha(
    df: pd.DataFrame,
    level: str = "nominal",
    labels: Sequence[Hashable] | None = None,
) -> float:
    """Krippendorff's alpha for ``level`` in ``"nominal"``, ``"ordinal"``, ``"interval"``.

    Missing data is natural here: each task (unit) uses whatever answers it has; units with a
    single answer are not pairable and drop out. For ``ordinal`` the class order is ``labels=``
    if given, else the sorted labels; ``interval`` needs numeric labels. Matches
    ``krippendorff.alpha(reliability_data, level_of_measurement=level)`` (with the value domain
    the observed labels) to floating-point precision.
    """
    if level not in _LEVELS:
        raise ValidationError(f"level must be one of {_LEVELS}, got {level!r}", param="level")
    data = _dedup(df) if isinstance(df, pd.DataFrame) else df
    enc = encode(data, labels)
    counts = count_table(enc)
    n_t = counts.sum(axis=1)
    pairable = n_t >= 2
    counts, n_t = counts[pairable], n_t[pairable]
    if counts.shape[0] == 0:
        raise ValidationError("no task has two or more answers; alpha is undefined", param="task")
    w = 1.0 / (n_t - 1.0)
    o = (counts * w[:, None]).T @ counts
    o[np.diag_indices_from(o)] -= (counts * w[:, None]).sum(axis=0)
    n_v = o.sum(axis=0)
    n = n_v.sum()
    e = (np.outer(n_v, n_v) - np.diag(n_v)) / (n - 1.0)
    kk = o.shape[0]
    if level == "nominal":
        d = 1.0 - np.eye(kk)
    elif level == "interval":
        try:
            vals = np.asarray(enc.label_names, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValidationError("interval alpha needs numeric labels", param="label") from exc
        d = (vals[:, None] - vals[None, :]) ** 2
    else:  # ordinal
        cum = np.concatenate([[0.0], np.cumsum(n_v)])
        i1 = np.minimum.outer(np.arange(kk), np.arange(kk))
        i2 = np.maximum.outer(np.arange(kk), np.arange(kk))
        between = cum[i2 + 1] - cum[i1]
        d = (between - (n_v[i1] + n_v[i2]) / 2.0) ** 2
    de = float((e * d).sum())
    if de == 0.0:
        return float("nan")
    return float(1.0 - (o * d).sum() / de)


_SET_DISTANCES = ("masi", "jaccard", "nominal")


def _distinct_sets(
    df: pd.DataFrame, labels: Sequence[Hashable] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.Index]:
    """``(task codes, value codes, H, task_names)``: each answer's distinct-set code and the
    multi-hot matrix ``H`` (bool, distinct sets x labels)."""
    from .multilabel import encode_label_sets

    enc = encode_label_sets(df, labels)
    packed = np.packbits(enc.Y, axis=1)
    _, first, inv = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    return enc.task, np.asarray(inv).ravel().astype(np.int64), enc.Y[first], enc.task_names


def _set_similarity(h: np.ndarray, kind: str) -> np.ndarray:
    """Similarity matrix between the distinct sets ``h`` (bool V x L): Jaccard or MASI."""
    hf = h.astype(np.float64)
    inter = hf @ hf.T
    size = hf.sum(axis=1)
    union = size[:, None] + size[None, :] - inter
    jac = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 1.0)
    if kind == "jaccard":
        return jac
    same = (inter == size[:, None]) & (inter == size[None, :])
    subset = inter == np.minimum.outer(size, size)
    m = np.where(same, 1.0, np.where(subset, 2.0 / 3.0, np.where(inter > 0, 1.0 / 3.0, 0.0)))
    return jac * m


def _task_value_counts(t: np.ndarray, v: np.ndarray, n_t: int, n_v: int) -> np.ndarray:
    import scipy.sparse as sp

    c = sp.csr_matrix((np.ones(t.size), (t, v)), shape=(n_t, n_v))
    c.sum_duplicates()
    return c


def set_agreement(df: pd.DataFrame, labels: Sequence[Hashable] | None = None) -> pd.DataFrame:
    """Per-task agreement of multi-label answers: DataFrame indexed by task with ``jaccard`` and
    ``masi`` (mean pairwise similarity over the task's answer pairs, float64; NaN for a task with
    one answer) and ``n`` (answers). Vectorised: distinct label sets are coded once and the pair
    sums come from a sparse task x set count matrix (see the module docstring)."""
    data = _dedup(df) if isinstance(df, pd.DataFrame) else df
    t, v, h, names = _distinct_sets(data, labels)
    c = _task_value_counts(t, v, len(names), h.shape[0])
    n = np.asarray(c.sum(axis=1)).ravel()
    out = {}
    for kind in ("jaccard", "masi"):
        s = _set_similarity(h, kind)
        pair = np.asarray(c.multiply(c @ s).sum(axis=1)).ravel()
        self_ = np.asarray(c @ np.diag(s)).ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            out[kind] = np.where(n >= 2, (pair - self_) / (n * (n - 1)), np.nan)
    out["n"] = n.astype(np.int64)
    return pd.DataFrame(out, index=names)


def krippendorff_alpha_sets(
    df: pd.DataFrame, distance: str = "masi", labels: Sequence[Hashable] | None = None
) -> float:
    """Krippendorff's alpha of multi-label answers with ``distance`` ``"masi"`` (1 - MASI),
    ``"jaccard"`` (1 - Jaccard) or ``"nominal"`` (sets equal or not); see the module docstring.
    Repeated ``(task, worker)`` rows keep the first answer. NaN if expected disagreement is 0."""
    if distance not in _SET_DISTANCES:
        raise ValidationError(
            f"distance must be one of {_SET_DISTANCES}, got {distance!r}", param="distance"
        )
    data = _dedup(df) if isinstance(df, pd.DataFrame) else df
    t, v, h, names = _distinct_sets(data, labels)
    c = _task_value_counts(t, v, len(names), h.shape[0])
    n_t = np.asarray(c.sum(axis=1)).ravel()
    keep = n_t >= 2
    if not keep.any():
        raise ValidationError("no task has two or more answers; alpha is undefined", param="task")
    c, n_t = c[keep], n_t[keep]
    sim = np.eye(h.shape[0]) if distance == "nominal" else _set_similarity(h, distance)
    d = 1.0 - sim
    w = 1.0 / (n_t - 1.0)
    cw = c.multiply(w[:, None]).tocsr()
    d_o = float(cw.multiply(c @ d).sum())
    n_v = np.asarray(c.sum(axis=0)).ravel()
    n = n_v.sum()
    d_e = float(n_v @ d @ n_v) / (n - 1.0)
    if d_e == 0.0:
        return float("nan")
    return float(1.0 - d_o / d_e)
