r"""Aggregation of pairwise comparisons (preference pairs) into item scores and a ranking:
the Bradley–Terry family.

Data contract (the crowd-kit pairwise layout): a long DataFrame, one row per comparison, with
columns

* ``worker``: hashable, not null (who compared; required by :class:`AnnotatorBradleyTerry`,
  ignored by :class:`BradleyTerry`);
* ``left``, ``right``: the two item ids (hashable, not null, ``left != right``). ``left`` is the
  item shown first / on the left, so a position bias is estimable when the order varies;
* ``label``: the winning item id (equal to that row's ``left`` or ``right``), or a tie: a null
  label (``None``/``NaN``) or the string ``"tie"`` (unless ``"tie"`` is itself one of the row's
  items) counts as half a win for each side.

Extra columns are ignored; repeated rows count as separate comparisons. Bad input raises
:class:`~cynaps_data.errors.ValidationError` naming the column and row; a comparison graph
that is not connected (items of one part never compared, directly or through others, with any
item of another) raises it too, with the number of components and example items of each,
because scores of different components are not comparable.

Fitted attributes (pandas, original ids preserved, items in order of first appearance):

* ``scores_``: Series indexed by item (name ``"score"``, float64), the log-strength
  :math:`s_i` (higher is better; :math:`P(i \succ j) = \sigma(s_i - s_j)`);
* ``scores_frame_``: DataFrame indexed by item with ``score``, ``se`` (posterior standard
  deviation from the Laplace approximation, the inverse Hessian of the penalised
  log-likelihood), ``ci_low``/``ci_high`` (``score ± z se``, ``level`` 0.95), ``rank`` (int64,
  1 = best, ties share the lower rank) and ``n_comparisons`` (int64, rows involving the item);
* :class:`AnnotatorBradleyTerry` also has ``skills_`` and ``biases_`` (Series indexed by
  worker) and ``workers_frame_``.

Models (sklearn-style: parameters in ``__init__``, ``fit(frame)`` returns self, ``fit_predict``
returns ``scores_``):

* :class:`BradleyTerry`: maximum a posteriori Bradley–Terry,

  .. math:: \max_s \sum_{c} \big[y_c \log\sigma(s_{l_c} - s_{r_c})
            + (1 - y_c)\log\sigma(s_{r_c} - s_{l_c})\big] - \frac{\lambda}{2}\lVert s\rVert^2,

  :math:`y_c \in \{0, \frac12, 1\}` (left lost / tie / left won), ``prior`` :math:`\lambda`
  (a Gaussian prior :math:`s_i \sim N(0, 1/\lambda)`; the weak default 0.01 keeps scores finite
  when an item always wins or loses, e.g. on sparse graphs). Solved by Newton's method on the
  comparisons collapsed to unordered pairs: gradient :math:`g = \sum_c (y_c - p_c)(e_{l_c} -
  e_{r_c}) - \lambda s`, Hessian :math:`-(L + \lambda I)` with :math:`L` the graph Laplacian
  weighted by :math:`p_c(1 - p_c)` (sparse, solved with a sparse direct solver), step halving
  on the objective.
* :class:`AnnotatorBradleyTerry`: see its docstring (annotator reliability and position bias).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import spsolve
from scipy.special import expit, log_expit, ndtri

from ..errors import ValidationError

__all__ = [
    "PAIRWISE_METHODS",
    "BradleyTerry",
    "EncodedPairs",
    "aggregate_pairwise",
    "encode_pairs",
    "get_pairwise_model",
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
    codes, items = pd.factorize(both, sort=False)
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
        wcodes, workers = pd.factorize(wcol.to_numpy(dtype=object), sort=False)
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
def _collapse_pairs(enc: EncodedPairs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
        ll = wins @ log_expit(d) + (total - wins) @ log_expit(-d)
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
        for name in ("prior",):
            v = getattr(self, name, None)
            if v is not None and (
                not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
            ):
                raise ValidationError(f"{name} must be a positive number, got {v!r}", param=name)
        lvl = getattr(self, "level", 0.95)
        if not isinstance(lvl, (int, float)) or not 0 < lvl < 1:
            raise ValidationError(f"level must be in (0, 1), got {lvl!r}", param="level")
        n_iter = getattr(self, "n_iter", 1)
        if not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
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


class BradleyTerry(PairwiseModel):
    r"""Bradley–Terry with a weak Gaussian prior, fitted by Newton's method (see the module
    docstring for the objective). :math:`P(i \succ j) = \sigma(s_i - s_j)`; ties are half a
    win each; the ``worker`` column is not needed (ignored if present).

    Parameters: ``prior`` :math:`\lambda` (precision of the ``N(0, 1/λ)`` prior on each score,
    default 0.01: weak, yet finite scores when an item never loses), ``n_iter`` (Newton steps,
    100; it usually converges in under 10), ``tol``, ``level`` (of ``ci_low``/``ci_high``).

    Fitted: ``scores_``, ``scores_frame_``, ``n_iter_``.
    """

    def __init__(
        self, prior: float = 0.01, n_iter: int = 100, tol: float = 1e-8, level: float = 0.95
    ) -> None:
        self.prior = prior
        self.n_iter = n_iter
        self.tol = tol
        self.level = level

    _params = ("prior", "n_iter", "tol", "level")

    def fit(self, frame: pd.DataFrame) -> BradleyTerry:
        """Fit on a comparisons frame (columns ``left``, ``right``, ``label``)."""
        enc = self._encode(frame)
        i, j, wins, total = _collapse_pairs(enc)
        s, h, it = bt_newton(
            i,
            j,
            wins,
            total,
            enc.n_items,
            prior=float(self.prior),
            n_iter=self.n_iter,
            tol=self.tol,
        )
        self.n_iter_ = it
        self._set_scores(enc, s, posterior_se(h))
        return self


# --------------------------------------------------------------------------------------------
# method registry (used by the ``pairwise``/``ranking`` annotation types)
# --------------------------------------------------------------------------------------------
#: method name -> model class; ``"auto"`` is the robust default
PAIRWISE_METHODS: dict[str, type[PairwiseModel]] = {
    "auto": BradleyTerry,
    "bt": BradleyTerry,
    "bradley_terry": BradleyTerry,
}


def get_pairwise_model(method: str | PairwiseModel = "auto", **params: Any) -> PairwiseModel:
    """An unfitted model for ``method`` (a name of :data:`PAIRWISE_METHODS`, case-insensitive,
    ``-`` = ``_``; or a model instance). Unknown method or parameter → ValidationError."""
    if isinstance(method, PairwiseModel):
        return method.set_params(**params) if params else method
    if not isinstance(method, str):
        raise ValidationError(
            f"method must be a string, got {type(method).__name__}", param="method"
        )
    key = method.strip().lower().replace("-", "_")
    cls = PAIRWISE_METHODS.get(key)
    if cls is None:
        by_class = {c.__name__.lower(): c for c in PAIRWISE_METHODS.values()}
        cls = by_class.get(key.replace("_", ""))
    if cls is None:
        raise ValidationError(
            f"unknown pairwise method {method!r}; choose one of {sorted(PAIRWISE_METHODS)}",
            param="method",
        )
    model = cls()
    return model.set_params(**params)


def aggregate_pairwise(
    frame: pd.DataFrame, method: str | PairwiseModel = "auto", **params: Any
) -> pd.DataFrame:
    """One call: fit ``method`` on ``frame`` and return its ``scores_frame_`` (index item;
    ``score``, ``se``, ``ci_low``, ``ci_high``, ``rank``, ``n_comparisons``)."""
    return get_pairwise_model(method, **params).fit(frame).scores_frame_
