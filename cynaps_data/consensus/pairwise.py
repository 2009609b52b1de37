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

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit

from ..errors import ValidationError
from ._pairwise_core import (
    EncodedPairs,
    PairwiseModel,
    bt_newton,
    collapse_pairs,
    encode_pairs,
    laplacian,
    posterior_se,
    solve,
)

__all__ = [
    "PAIRWISE_METHODS",
    "AnnotatorBradleyTerry",
    "BradleyTerry",
    "EncodedPairs",
    "PairwiseModel",
    "aggregate_pairwise",
    "encode_pairs",
    "get_pairwise_model",
]


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
        i, j, wins, total = collapse_pairs(enc)
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


class AnnotatorBradleyTerry(PairwiseModel):
    r"""Bradley–Terry with per-annotator reliability (discrimination) and position bias.

    Annotator :math:`w` prefers the left item of comparison :math:`c` with probability

    .. math:: P(y_c = 1) = \sigma\big(a_w (s_{l_c} - s_{r_c}) + b_w\big),

    :math:`a_w` its *skill* (1 = an average annotator, 0 = answers unrelated to the items, < 0
    inverted), :math:`b_w` its *position bias* (log-odds of picking the left item of two equal
    ones). Gaussian priors keep every parameter finite and let annotators with few comparisons
    stay close to the crowd:

    .. math:: s_i \sim N(0, 1/\lambda), \quad a_w \sim N(1, 1/\kappa_a), \quad
              b_w \sim N(\beta, 1/\kappa_b), \quad \beta \sim N(0, 1/\kappa_\beta),

    (``prior`` :math:`\lambda`, ``skill_prior`` :math:`\kappa_a`, ``bias_prior``
    :math:`\kappa_b`, ``position_prior`` :math:`\kappa_\beta`; :math:`\beta` is the crowd's
    shared position bias). Ties are :math:`y_c = \frac12`.

    Fit (MAP): start from plain Bradley–Terry, then alternate, ``n_iter`` rounds at most,
    (1) one Newton step per annotator on :math:`(a_w, b_w)`, a logistic regression of the
    outcomes on :math:`(s_l - s_r, 1)` with its prior (2 x 2 systems solved for every annotator
    at once from ``bincount`` sums; steps capped at ``max_step``), then :math:`\beta = \kappa_b
    \sum_w b_w / (W\kappa_b + \kappa_\beta)`; (2) one Newton step on the scores with
    annotator-weighted edges: gradient :math:`\sum_c a_{w_c}(y_c - p_c)(e_{l_c} - e_{r_c}) -
    \lambda s`, Hessian :math:`-(L + \lambda I)`, :math:`L` the Laplacian weighted by
    :math:`a_{w_c}^2 p_c(1-p_c)`, with step halving on the log posterior. Stops when no score
    and no annotator parameter moves more than ``tol``. ``se`` is the Laplace posterior of the
    scores given the annotator estimates.

    Each block is a convex problem; the whole is not (the product :math:`a_w s`), which is why
    it starts from Bradley–Terry and the skill prior is centred at 1. Unlike a mixture of "answers
    by the scores" and "answers by position" (crowd-kit's NoisyBradleyTerry), a biased or
    careless annotator here only shifts or flattens its own logits, so the item scores can never
    be explained away by the bias terms (e.g. when every row lists the winner on the left).

    Fitted: ``scores_``, ``scores_frame_``, ``skills_`` (:math:`a_w`), ``biases_``
    (:math:`b_w`, log-odds), ``workers_frame_`` (index worker: ``skill``, ``bias``,
    ``p_left`` :math:`= \sigma(b_w)`, ``n_comparisons``), ``position_bias_``
    (:math:`\beta`), ``n_iter_``.
    """

    _require_worker = True

    def __init__(
        self,
        prior: float = 0.01,
        skill_prior: float = 20.0,
        bias_prior: float = 1.0,
        position_prior: float = 1.0,
        n_iter: int = 100,
        tol: float = 1e-6,
        max_step: float = 1.0,
        position_bias: bool | str = "auto",
        level: float = 0.95,
    ) -> None:
        self.prior = prior
        self.skill_prior = skill_prior
        self.bias_prior = bias_prior
        self.position_prior = position_prior
        self.n_iter = n_iter
        self.tol = tol
        self.max_step = max_step
        self.position_bias = position_bias
        self.level = level

    _params = (
        "prior",
        "skill_prior",
        "bias_prior",
        "position_prior",
        "n_iter",
        "tol",
        "max_step",
        "position_bias",
        "level",
    )
    _positive = ("prior", "skill_prior", "bias_prior", "position_prior", "max_step")

    def fit(self, frame: pd.DataFrame) -> AnnotatorBradleyTerry:
        """Fit on a comparisons frame (columns ``worker``, ``left``, ``right``, ``label``)."""
        if self.position_bias not in (True, False, "auto"):
            raise ValidationError(
                f"position_bias must be True, False or 'auto', got {self.position_bias!r}",
                param="position_bias",
            )
        enc = self._encode(frame)
        s, a, b, beta, h, it = annotator_bt(
            enc,
            prior=float(self.prior),
            skill_prior=float(self.skill_prior),
            bias_prior=float(self.bias_prior),
            position_prior=float(self.position_prior),
            n_iter=int(self.n_iter),
            tol=float(self.tol),
            max_step=float(self.max_step),
            position_bias=self.position_bias,
        )
        self.n_iter_ = it
        self._set_scores(enc, s, posterior_se(h))
        self.skills_ = pd.Series(a, index=enc.workers, name="skill")
        self.biases_ = pd.Series(b, index=enc.workers, name="bias")
        self.position_bias_ = float(beta)
        self.workers_frame_ = pd.DataFrame(
            {
                "skill": a,
                "bias": b,
                "p_left": expit(b),
                "n_comparisons": np.bincount(enc.worker, minlength=enc.n_workers),
            },
            index=enc.workers,
        )
        return self


def annotator_bt(
    enc: EncodedPairs,
    *,
    prior: float,
    skill_prior: float,
    bias_prior: float,
    position_prior: float,
    n_iter: int,
    tol: float,
    max_step: float,
    position_bias: bool | str = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, Any, int]:
    """Array-level :class:`AnnotatorBradleyTerry`: returns scores, skills, biases, the shared
    position bias, the scores' negative Hessian and the number of Fisher-scoring steps."""
    n, nw = enc.n_items, enc.n_workers
    le, ri, y, w = enc.left, enc.right, enc.y, enc.worker
    i, j, wins, total = collapse_pairs(enc)
    s, _, _ = bt_newton(i, j, wins, total, n, prior=prior, n_iter=50, tol=1e-8)
    decisive = y[y != 0.5]
    # "auto": a frame where the left item wins every decisive comparison (or loses every one)
    # is laid out winner-first, not in presentation order, so position says nothing
    identifiable = len(decisive) > 0 and 0.0 < float(decisive.mean()) < 1.0
    use_bias = position_bias is True or (position_bias == "auto" and identifiable)
    # parameter vector theta = [s (n), a (nw), b (nw), beta]; b and beta stay 0 without bias
    na = n + nw
    nb = na + nw
    dim = nb + 1 if use_bias else na
    theta = np.concatenate([s, np.ones(nw), np.zeros(nw + 1)])[:dim]
    prec = np.concatenate(
        [np.full(n, prior), np.full(nw, skill_prior), np.full(nw, bias_prior), [position_prior]]
    )[:dim]
    mean0 = np.concatenate([np.zeros(n), np.ones(nw), np.zeros(nw + 1)])[:dim]
    col_a = n + w
    col_b = na + w

    def unpack(th: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        if use_bias:
            return th[:n], th[n:na], th[na:nb], float(th[nb])
        return th[:n], th[n:na], np.zeros(nw), 0.0

    def log_post(th: np.ndarray) -> float:
        s_, a_, b_, beta_ = unpack(th)
        eta = a_[w] * (s_[le] - s_[ri]) + b_[w]
        ll = -(np.logaddexp(0.0, -eta).sum() + (1.0 - y) @ eta)
        dev = th - mean0
        if use_bias:  # b_w ~ N(beta, 1/kb): centre the b block on beta
            dev = dev.copy()
            dev[na:nb] -= beta_
        return float(ll - 0.5 * (prec * dev) @ dev)

    f = log_post(theta)
    it = 0
    while it < n_iter:
        it += 1
        s, a, b, beta = unpack(theta)
        x = s[le] - s[ri]
        aw = a[w]
        p = expit(aw * x + b[w])
        res = y - p
        v = p * (1.0 - p)
        # gradient of the log-likelihood: d eta / d(s_l, s_r, a_w, b_w) = (a_w, -a_w, x, 1)
        grad = np.zeros(dim)
        grad[:n] = np.bincount(le, aw * res, n) - np.bincount(ri, aw * res, n)
        grad[n:na] = np.bincount(w, res * x, nw)
        # Fisher information J^T diag(v) J (positive semi-definite), assembled sparse
        cols = [le, ri, col_a]
        vals = [aw, -aw, x]
        if use_bias:
            grad[na:nb] = np.bincount(w, res, nw)
            cols.append(col_b)
            vals.append(np.ones_like(x))
        k = len(cols)
        rr = np.concatenate([np.repeat(c[None, :], k, 0).ravel() for c in cols])
        cc = np.concatenate([np.concatenate(cols) for _ in cols])
        vv = np.concatenate(
            [np.concatenate([vals[q] * vals[r] * v for r in range(k)]) for q in range(k)]
        )
        fisher = sp.coo_matrix((vv, (rr, cc)), shape=(dim, dim)).tocsc()
        dev = theta - mean0
        prior_h = sp.diags(prec)
        if use_bias:
            dev = dev.copy()
            dev[na:nb] -= beta
            # -log prior of b given beta: kb/2 sum (b_w - beta)^2 couples b and beta
            grad[nb] += bias_prior * float(dev[na:nb].sum())
            coupling = sp.coo_matrix(
                (
                    np.full(2 * nw, -bias_prior),
                    (
                        np.r_[np.arange(na, nb), np.full(nw, nb)],
                        np.r_[np.full(nw, nb), np.arange(na, nb)],
                    ),
                ),
                shape=(dim, dim),
            )
            prior_h = (
                prior_h
                + coupling
                + sp.coo_matrix(([nw * bias_prior], ([nb], [nb])), shape=(dim, dim))
            )
        grad -= prec * dev
        h = (fisher + prior_h).tocsc()
        step = solve(h.toarray() if dim <= 4000 else h, grad)
        step = np.clip(step, -max_step, max_step)
        t = 1.0
        while True:
            cand = theta + t * step
            cand[n:na] = np.maximum(cand[n:na], 0.0)
            fc = log_post(cand)
            if fc >= f - 1e-10 * abs(f) or t < 1e-4:
                break
            t *= 0.5
        moved = float(np.max(np.abs(cand - theta)))
        theta, f = cand, fc
        if moved < tol:
            break
    s, a, b, beta = unpack(theta)
    aw = a[w]
    p = expit(aw * (s[le] - s[ri]) + b[w])
    h = laplacian(le, ri, aw * aw * p * (1.0 - p), n, prior)
    return s, a, b, beta, h, it


# --------------------------------------------------------------------------------------------
# method registry (used by the ``pairwise``/``ranking`` annotation types)
# --------------------------------------------------------------------------------------------
#: method name -> model class; ``"auto"`` is the robust default
PAIRWISE_METHODS: dict[str, type[PairwiseModel]] = {
    "auto": AnnotatorBradleyTerry,
    "annotator_bt": AnnotatorBradleyTerry,
    "annotator_bradley_terry": AnnotatorBradleyTerry,
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
