"""Shared machinery of the pairwise models (:mod:`cynaps_data.consensus.pairwise`): input
encoding and validation, the connectivity check, the Newton solver of (weighted) Bradley–Terry,
Laplace standard errors and the ``scores_frame_`` layout, and the sklearn-style base class."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import spsolve
from scipy.special import expit, ndtri

from ..errors import ValidationError

__all__ = [
    "EncodedPairs",
    "PairwiseModel",
    "bt_newton",
    "check_connected",
    "collapse_pairs",
    "encode_pairs",
    "laplacian",
    "posterior_se",
    "scores_table",
    "solve",
]

PAIRWISE_COLUMNS = ("worker", "left", "right", "label")
TIE = "tie"
#: items above this count get ``se`` from the Hessian's diagonal only (a lower bound) instead
#: of the full inverse
DENSE_SE_MAX_ITEMS = 3000


# --------------------------------------------------------------------------------------------
# encoding and validation
# --------------------------------------------------------------------------------------------
@dataclass
class EncodedPairs:
    """Integer-coded comparisons, one entry per row (equal lengths).

    ``left``/``right``: int64 item codes; ``y``: float64 outcome for the left item (1 won,
    0 lost, 0.5 tie); ``worker``: int64 worker codes (all 0 when the frame has no ``worker``
    column); ``items``/``workers``: the original ids (pandas Index, first-appearance order).
    """

    left: np.ndarray
    right: np.ndarray
    y: np.ndarray
    worker: np.ndarray
    items: pd.Index
    workers: pd.Index

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_workers(self) -> int:
        return len(self.workers)

    @property
    def n_comparisons(self) -> int:
        return len(self.y)

    def counts(self) -> np.ndarray:
        """Comparisons per item (int64, ``(n_items,)``)."""
        n = self.n_items
        return np.bincount(self.left, minlength=n) + np.bincount(self.right, minlength=n)


def _row_names(index: pd.Index, mask: np.ndarray, limit: int = 3) -> str:
    rows = index[np.flatnonzero(mask)[:limit]]
    more = int(mask.sum()) - len(rows)
    text = ", ".join(repr(r) for r in rows)
    return text + (f" (and {more} more)" if more > 0 else "")


def encode_pairs(frame: pd.DataFrame, *, require_worker: bool = False) -> EncodedPairs:
    """Validate and integer-code a comparisons frame (see the module's data contract).

    Raises :class:`ValidationError` naming the missing column, or the rows (by index label)
    with a null item, ``left == right`` or a label that is neither item nor a tie."""
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(
            f"pairwise comparisons must be a pandas DataFrame, got {type(frame).__name__}",
            param="frame",
        )
    needed = [c for c in PAIRWISE_COLUMNS if c != "worker" or require_worker]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"comparisons frame is missing column(s) {missing}; expected columns "
            f"{list(PAIRWISE_COLUMNS)} (got {list(frame.columns)})",
            param=missing[0],
        )
    if len(frame) == 0:
        raise ValidationError("comparisons frame has no rows", param="frame")
    left = frame["left"]
    right = frame["right"]
    label = frame["label"]
    for name, col in (("left", left), ("right", right)):
        bad = col.isna().to_numpy()
        if bad.any():
            raise ValidationError(
                f"column {name!r} has null item ids in row(s) {_row_names(frame.index, bad)}",
                param=name,
            )
    lv = left.to_numpy()
    rv = right.to_numpy()
    labv = label.to_numpy()
    same = _eq(lv, rv)
    if same.any():
        raise ValidationError(
            f"left == right (an item compared with itself) in row(s) "
            f"{_row_names(frame.index, same)}",
            param="right",
        )
    won = _eq(labv, lv)
    lost = _eq(labv, rv)
    tie = ~won & ~lost & (label.isna().to_numpy() | _eq(labv, TIE))
    bad = ~(won | lost | tie)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValidationError(
            f"label must be the row's left or right item, or a tie (null or {TIE!r}); "
            f"row(s) {_row_names(frame.index, bad)} are not (e.g. label {labv[i]!r} for "
            f"left {lv[i]!r}, right {rv[i]!r})",
            param="label",
        )
    both = pd.concat([left, right], ignore_index=True)
    try:
        codes, items = pd.factorize(both, sort=False)
    except TypeError as exc:  # unhashable ids (lists, dicts)
        raise ValidationError(
            f"item ids in 'left'/'right' must be hashable (str, int, tuple...): {exc}",
            param="left",
        ) from None
    n = len(frame)
    y = np.where(won, 1.0, np.where(lost, 0.0, 0.5))
    if "worker" in frame.columns:
        wcol = frame["worker"]
        badw = wcol.isna().to_numpy()
        if badw.any():
            raise ValidationError(
                f"column 'worker' is null in row(s) {_row_names(frame.index, badw)}",
                param="worker",
            )
        try:
            wcodes, workers = pd.factorize(wcol.to_numpy(dtype=object), sort=False)
        except TypeError as exc:
            raise ValidationError(
                f"column 'worker' must hold hashable ids (str, int...): {exc}", param="worker"
            ) from None
    else:
        wcodes, workers = np.zeros(n, dtype=np.int64), pd.Index([None])
    return EncodedPairs(
        left=codes[:n].astype(np.int64),
        right=codes[n:].astype(np.int64),
        y=y,
        worker=wcodes.astype(np.int64),
        items=pd.Index(items, name="item"),
        workers=pd.Index(workers, name="worker"),
    )


_NULL_LEFT, _NULL_RIGHT = object(), object()


def _eq(a: np.ndarray, b: Any) -> np.ndarray:
    """Elementwise equality (False where either side is null or the types differ)."""
    numeric = "iufb"
    if (
        isinstance(b, np.ndarray)
        and a.dtype != object
        and b.dtype != object
        and (a.dtype.kind in numeric and b.dtype.kind in numeric or a.dtype == b.dtype)
    ):
        return np.asarray(a == b, dtype=bool)
    a = a.astype(object)
    b = b.astype(object) if isinstance(b, np.ndarray) else b
    # a null (None, NaN, pd.NA, NaT) equals nothing; pd.NA would make ``==`` ambiguous
    null = pd.isna(a) | (pd.isna(b) if isinstance(b, np.ndarray) else False)
    if null.any():
        a = np.where(null, _NULL_LEFT, a)
        b = np.where(null, _NULL_RIGHT, b) if isinstance(b, np.ndarray) else b
    try:
        out = np.asarray(a == b)
    except (TypeError, ValueError):
        out = np.empty(0)
    if out.shape != a.shape:  # no elementwise comparison (e.g. tuple ids): compare one by one
        bb = b if isinstance(b, np.ndarray) else [b] * len(a)
        out = np.fromiter((x == z for x, z in zip(a, bb, strict=True)), bool, len(a))
    return out.astype(bool)


def check_connected(enc: EncodedPairs, *, max_examples: int = 3) -> None:
    """Raise :class:`ValidationError` if the comparison graph has more than one component,
    naming the number of components and up to ``max_examples`` items of each (largest first,
    at most 5 components listed)."""
    n = enc.n_items
    adj = sp.coo_matrix((np.ones(len(enc.left)), (enc.left, enc.right)), shape=(n, n))
    k, comp = connected_components(adj, directed=False)
    if k <= 1:
        return
    sizes = np.bincount(comp)
    order = np.argsort(-sizes, kind="stable")
    parts = []
    for c in order[:5]:
        members = enc.items[np.flatnonzero(comp == c)[:max_examples]]
        more = "" if sizes[c] <= max_examples else ", ..."
        parts.append(f"{sizes[c]} item(s): {', '.join(repr(m) for m in members)}{more}")
    raise ValidationError(
        f"the comparison graph is disconnected: {k} components whose scores cannot be compared "
        f"(add comparisons between them or fit each separately); components: "
        + "; ".join(parts)
        + ("; ..." if k > 5 else ""),
        param="left",
    )


# --------------------------------------------------------------------------------------------
# numeric core
# --------------------------------------------------------------------------------------------
def collapse_pairs(enc: EncodedPairs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unordered pairs ``i < j`` with ``wins`` of ``i`` (ties count 1/2) and ``total`` counts."""
    i = np.minimum(enc.left, enc.right)
    j = np.maximum(enc.left, enc.right)
    y_i = np.where(enc.left == i, enc.y, 1.0 - enc.y)
    key = i * enc.n_items + j
    uniq, inv = np.unique(key, return_inverse=True)
    wins = np.bincount(inv, weights=y_i, minlength=len(uniq))
    total = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    return uniq // enc.n_items, uniq % enc.n_items, wins, total


#: up to this many items the Hessian is a dense array (faster than sparse for small graphs)
DENSE_MAX_ITEMS = 1500


def laplacian(
    i: np.ndarray, j: np.ndarray, w: np.ndarray, n: int, ridge: float = 0.0
) -> np.ndarray | sp.csc_matrix:
    r"""Weighted graph Laplacian plus a ridge, :math:`L = \sum_e w_e (e_i - e_j)(e_i -
    e_j)^\top + \rho I`: dense up to :data:`DENSE_MAX_ITEMS` items, else sparse CSC."""
    if n <= DENSE_MAX_ITEMS:
        off = np.bincount(i * n + j, w, minlength=n * n).reshape(n, n)
        off += off.T
        h = -off
        h[np.diag_indices(n)] = off.sum(axis=1) + ridge
        return h
    rows = np.concatenate([i, j, i, j, np.arange(n)])
    cols = np.concatenate([i, j, j, i, np.arange(n)])
    vals = np.concatenate([w, w, -w, -w, np.full(n, ridge)])
    return sp.csc_matrix((vals, (rows, cols)), shape=(n, n))


def solve(h: np.ndarray | sp.csc_matrix, g: np.ndarray) -> np.ndarray:
    """``h^{-1} g`` for a symmetric positive definite ``h`` (dense or sparse)."""
    if isinstance(h, np.ndarray):
        return np.linalg.solve(h, g)
    return spsolve(h, g)


def bt_newton(
    i: np.ndarray,
    j: np.ndarray,
    wins: np.ndarray,
    total: np.ndarray,
    n: int,
    *,
    prior: float,
    weight: np.ndarray | None = None,
    s0: np.ndarray | None = None,
    n_iter: int = 100,
    tol: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray | sp.csc_matrix, int]:
    r"""Penalised (weighted) Bradley–Terry by damped Newton.

    Maximises :math:`\sum_e w_e\log\sigma(a_e d_e) + (t_e - w_e)\log\sigma(-a_e d_e) -
    \frac\lambda2\lVert s\rVert^2` with :math:`d_e = s_{i_e} - s_{j_e}`, ``wins`` :math:`w_e`
    of :math:`i_e` out of ``total`` :math:`t_e`, and :math:`a_e` = ``weight`` (an edge-specific
    discrimination; 1 for plain Bradley–Terry). Returns the scores, the negative Hessian
    (sparse, :math:`L + \lambda I`) at the solution and the number of iterations."""
    a = np.ones_like(wins) if weight is None else weight
    s = np.zeros(n) if s0 is None else s0.astype(np.float64, copy=True)

    def objective(x: np.ndarray) -> float:
        d = a * (x[i] - x[j])
        ll = -(total @ np.logaddexp(0.0, -d) + (total - wins) @ d)
        return float(ll - 0.5 * prior * (x @ x))

    f = objective(s)
    it = 0
    while it < n_iter:
        it += 1
        d = a * (s[i] - s[j])
        p = expit(d)
        r = a * (wins - total * p)
        g = np.bincount(i, r, minlength=n) - np.bincount(j, r, minlength=n) - prior * s
        h = laplacian(i, j, a * a * total * p * (1.0 - p), n, prior)
        step = solve(h, g)
        t = 1.0
        while True:
            cand = s + t * step
            fc = objective(cand)
            if fc >= f - 1e-12 * abs(f) or t < 1e-6:
                break
            t *= 0.5
        s, f_old, f = cand, f, fc
        if np.max(np.abs(t * step)) < tol or abs(f - f_old) < tol * max(1.0, abs(f)) * 1e-3:
            break
    d = a * (s[i] - s[j])
    p = expit(d)
    h = laplacian(i, j, a * a * total * p * (1.0 - p), n, prior)
    return s, h, it


def posterior_se(h: np.ndarray | sp.csc_matrix) -> np.ndarray:
    r"""Standard errors of the centred scores :math:`s_i - \bar s` under the Laplace posterior
    :math:`N(\hat s, H^{-1})`: :math:`\sqrt{(P H^{-1} P)_{ii}}`, :math:`P = I - \frac1n
    \mathbf 1\mathbf 1^\top` (the common shift of all scores is fixed only by the prior, so its
    variance is left out). Full inverse up to :data:`DENSE_SE_MAX_ITEMS` items; beyond,
    ``1/sqrt(H_ii)`` (a lower bound)."""
    n = h.shape[0]
    if n <= DENSE_SE_MAX_ITEMS:
        cov = np.linalg.inv(h.toarray() if sp.issparse(h) else h)
        m = cov.mean(axis=1)
        var = np.diag(cov) - 2.0 * m + m.mean()
        return np.sqrt(np.clip(var, 0.0, None))
    return 1.0 / np.sqrt(h.diagonal())


def scores_table(
    enc: EncodedPairs, scores: np.ndarray, se: np.ndarray, level: float
) -> pd.DataFrame:
    """The ``scores_frame_`` layout (see the module docstring)."""
    z = float(ndtri(0.5 + level / 2.0))
    frame = pd.DataFrame(
        {
            "score": scores.astype(np.float64),
            "se": se.astype(np.float64),
            "ci_low": scores - z * se,
            "ci_high": scores + z * se,
        },
        index=enc.items,
    )
    frame["rank"] = frame["score"].rank(ascending=False, method="min").astype(np.int64)
    frame["n_comparisons"] = enc.counts().astype(np.int64)
    return frame


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------
def _real(value: Any) -> bool:
    """A real number, numpy scalars included (``np.float32(0.1)``, ``np.int64(1)``), not a
    bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


class PairwiseModel:
    """sklearn-style base: ``get_params``/``set_params``, ``fit`` returns self."""

    _require_worker = False

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._params}

    def set_params(self, **params: Any) -> PairwiseModel:
        for k, v in params.items():
            if k not in self._params:
                raise ValidationError(f"unknown parameter {k!r} for {type(self).__name__}", param=k)
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @property
    def _params(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _check_params(self) -> None:
        for name in getattr(self, "_positive", ("prior",)):
            v = getattr(self, name, None)
            if v is not None and (not _real(v) or not math.isfinite(v) or v <= 0):
                raise ValidationError(f"{name} must be a positive number, got {v!r}", param=name)
        tol = getattr(self, "tol", 0.0)
        if not _real(tol) or not math.isfinite(tol) or tol < 0:
            raise ValidationError(f"tol must be a number >= 0, got {tol!r}", param="tol")
        lvl = getattr(self, "level", 0.95)
        if not _real(lvl) or not 0 < lvl < 1:
            raise ValidationError(f"level must be in (0, 1), got {lvl!r}", param="level")
        n_iter = getattr(self, "n_iter", 1)
        if not isinstance(n_iter, (int, np.integer)) or isinstance(n_iter, bool) or n_iter < 1:
            raise ValidationError(
                f"n_iter must be a positive integer, got {n_iter!r}", param="n_iter"
            )

    def _encode(self, frame: pd.DataFrame) -> EncodedPairs:
        self._check_params()
        enc = encode_pairs(frame, require_worker=self._require_worker)
        check_connected(enc)
        return enc

    def fit(self, frame: pd.DataFrame) -> PairwiseModel:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_predict(self, frame: pd.DataFrame) -> pd.Series:
        """Fit and return ``scores_`` (Series indexed by item, name ``"score"``)."""
        return self.fit(frame).scores_

    def _set_scores(self, enc: EncodedPairs, s: np.ndarray, se: np.ndarray) -> None:
        self.items_ = enc.items
        self.scores_frame_ = scores_table(enc, s, se, self.level)
        self.scores_ = self.scores_frame_["score"].rename("score")
