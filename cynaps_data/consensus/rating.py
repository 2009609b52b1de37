r"""Aggregation of numeric ratings (an integer scale such as 1-5 or 0-100): mean, median and a
rater model, plus the platform's per-task decision and Krippendorff's alpha.

Data contract: a long DataFrame, one row per rating, with columns ``task`` (hashable, not
null), ``worker`` (hashable, not null) and ``value`` (numeric, finite). Extra columns are
ignored; repeated ``(task, worker)`` rows count as separate ratings. Results are pandas objects
indexed by ``task`` (in order of first appearance) or ``worker``.

Methods (sklearn-style: parameters in ``__init__``, ``fit(df)`` returns self, ``fit_predict``
returns the ``scores_`` Series):

* :class:`RatingMean`: :math:`\hat z_t = \frac1{n_t}\sum_{w} y_{tw}`.
* :class:`RatingMedian`: the median of the task's ratings (the mean of the two middle ones for
  an even count).
* :class:`RaterModel` (the default, ``method="auto"``): each rater :math:`w` maps the latent
  score :math:`z_t` onto the scale with its own leniency (bias) :math:`a_w` and its own use of
  the scale (spread) :math:`b_w`, plus noise,

  .. math:: y_{tw} = o + a_w + b_w\,(u_{tw} - o), \qquad u_{tw} = z_t + \varepsilon_{tw},
            \quad \varepsilon_{tw}\sim N(0, \sigma_w^2), \quad z_t \sim N(\mu, \tau^2),

  with :math:`o` the scale's lower end (``scale[0]``, else the lowest observed rating).
  Parameters are estimated with shrinkage priors so that raters with few ratings stay close to
  the crowd (:math:`n_w` ratings of rater :math:`w`, mean :math:`m_w`, variance :math:`v_w`;
  :math:`V` the variance of all ratings):

  * scale: :math:`b_w^2 = \frac{n_w v_w + k_b V}{(n_w + k_b) V}` (``scale_prior`` :math:`k_b`
    pseudo-ratings of an average rater; :math:`k_b=\infty` switches it off);
  * bias: :math:`a_w = \frac{1}{n_w + k_a}\sum_{t \in w} (u^0_{tw} - \hat z_t)` with
    :math:`u^0_{tw} = o + (y_{tw} - o)/b_w` (``bias_prior`` :math:`k_a`), alternating with the
    item update below (``n_iter`` rounds);
  * reliability: :math:`\sigma_w^2 = \frac{\mathrm{RSS}_w + \nu \bar\sigma^2}{n_w + \nu}`
    (``reliability_prior`` :math:`\nu`; ``None`` pools one :math:`\bar\sigma^2` for every
    rater, i.e. equal weights);
  * item: the Gaussian posterior :math:`z_t \mid y \sim N(\hat z_t, s_t^2)` with precision
    :math:`s_t^{-2} = \tau^{-2} + \sum_w \sigma_w^{-2}` and mean
    :math:`\hat z_t = s_t^2(\mu/\tau^2 + \sum_w u_{tw}/\sigma_w^2)`, :math:`u_{tw} =
    o + (y_{tw} - o - a_w)/b_w`; :math:`\mu, \tau^2` by moments (prior mean of the item
    scores, their variance minus the mean noise variance). ``intervals_`` holds
    :math:`\hat z_t \pm \Phi^{-1}(\frac{1+c}2) s_t` (``level`` :math:`c`, 0.9).

  No gold is used. The defaults (``scale_prior=40``, ``bias_prior=100``,
  ``reliability_prior=None``) were chosen on the 8 scales of Snow et al. 2008
  (``benchmarks/types_rating.py``, ``docs/aggregation-types.md``): the spread correction is the
  part that helps there (mean Pearson with gold 0.7440 vs the raters' mean 0.7419, no scale
  more than 0.004 below), bias correction is neutral and per-rater reliability weights hurt on
  every setting tried (about 26 ratings per rater are too few to estimate a noise level that
  beats equal weights). Set ``reliability_prior`` (e.g. 20) when raters have hundreds of
  ratings each.

Platform decision (:func:`rating_consensus`, vectorised over tasks): the median as the robust
centre, the spread as the mean absolute deviation from it, and ``disputed`` when the ratings'
range exceeds the project's tolerance. :func:`rating_alpha` is Krippendorff's alpha (interval
or ordinal) of the raters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

from ..errors import ValidationError
from ._base import BaseAggregator, aggregator_params
from ._encode import check_long_frame
from .agreement import krippendorff_alpha

__all__ = [
    "RATING_METHODS",
    "RaterModel",
    "RatingMean",
    "RatingMedian",
    "aggregate_ratings",
    "encode_ratings",
    "rater_model_arrays",
    "rating_alpha",
    "rating_consensus",
]

RATING_COLUMNS = ("task", "worker", "value")


class EncodedRatings:
    """Integer-coded ratings: ``task``/``worker`` int64 codes, ``value`` float64, equal length;
    ``task_names``/``worker_names`` the original ids (pandas Index, first-appearance order)."""

    def __init__(
        self,
        task: np.ndarray,
        worker: np.ndarray,
        value: np.ndarray,
        task_names: pd.Index,
        worker_names: pd.Index,
    ) -> None:
        self.task, self.worker, self.value = task, worker, value
        self.task_names, self.worker_names = task_names, worker_names

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    @property
    def n_workers(self) -> int:
        return len(self.worker_names)


def _check_scale(scale: tuple[float, float] | None) -> tuple[float, float] | None:
    if scale is None:
        return None
    try:
        lo, hi = (float(scale[0]), float(scale[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise ValidationError("scale must be a (min, max) pair of numbers", param="scale") from exc
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValidationError(f"scale must have min < max, got {scale!r}", param="scale")
    return lo, hi


def encode_ratings(
    df: pd.DataFrame, scale: tuple[float, float] | None = None, value_column: str = "value"
) -> EncodedRatings:
    """Validate a long ``task, worker, value`` frame and factorize it (see module docstring).

    ``scale=(min, max)``: ratings outside it raise :class:`ValidationError` naming the row.
    ``value_column``: the name of the rating column (``"value"``)."""
    cols = ("task", "worker", value_column)
    check_long_frame(df, cols, what="ratings need")
    column = df[value_column]
    flags = (
        np.ones(len(df), bool)
        if pd.api.types.is_bool_dtype(column.dtype)
        else column.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
        if column.dtype == object
        else None
    )
    if flags is not None and flags.any():  # True/False are not points of a scale
        first = df.index[flags][0]
        raise ValidationError(
            f"column {value_column!r} holds booleans, not ratings, first at index {first!r} "
            f"(value {column.loc[first]!r}); ratings are numbers on the scale",
            param=value_column,
        )
    try:
        vals = pd.to_numeric(df[value_column], errors="raise").to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"column {value_column!r} must be numeric ({exc})", param=value_column
        ) from exc
    bad = ~np.isfinite(vals)
    sc = _check_scale(scale)
    if sc is not None:
        bad |= (vals < sc[0]) | (vals > sc[1])
    if bad.any():
        first = df.index[bad][0]
        raise ValidationError(
            f"{int(bad.sum())} rating(s) in column {value_column!r} are not finite numbers"
            + (f" within the scale {sc[0]:g}..{sc[1]:g}" if sc else "")
            + f", first at index {first!r} (value {df[value_column].loc[first]!r})",
            param=value_column,
        )
    t_codes, t_names = pd.factorize(df["task"], sort=False)
    w_codes, w_names = pd.factorize(df["worker"], sort=False)
    return EncodedRatings(
        np.asarray(t_codes, dtype=np.int64),
        np.asarray(w_codes, dtype=np.int64),
        vals,
        pd.Index(t_names, name="task"),
        pd.Index(w_names, name="worker"),
    )


class _RatingAggregator(BaseAggregator):
    """Base of the rating aggregators: ``fit(df)`` sets ``scores_`` (Series indexed by task,
    name ``"score"``, float64) and ``n_ratings_`` (Series indexed by task, int64)."""

    scale: tuple[float, float] | None

    def _scores(self, enc: EncodedRatings) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, data: pd.DataFrame, gold: Any = None) -> _RatingAggregator:
        """Fit on a long ``task, worker, value`` frame (``gold`` is not used: accepted for API
        symmetry with the label aggregators and ignored)."""
        enc = encode_ratings(data, self.scale)
        self.encoded_ = enc
        scores = self._scores(enc)
        self.scores_ = pd.Series(scores, index=enc.task_names, name="score")
        self.n_ratings_ = pd.Series(
            np.bincount(enc.task, minlength=enc.n_tasks).astype(np.int64),
            index=enc.task_names,
            name="n_ratings",
        )
        return self

    def fit_predict(self, data: pd.DataFrame, gold: Any = None) -> pd.Series:
        """Fit and return ``scores_``."""
        return self.fit(data, gold).scores_

    def fit_predict_proba(self, data: pd.DataFrame, gold: Any = None) -> pd.DataFrame:
        raise NotImplementedError("ratings have no class probabilities; use fit_predict")


def _group_median(task: np.ndarray, value: np.ndarray, n_tasks: int) -> np.ndarray:
    """Per-task median (mean of the two middle values for even counts), vectorised."""
    order = np.lexsort((value, task))
    v = value[order]
    n = np.bincount(task, minlength=n_tasks)
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    out = np.full(n_tasks, np.nan)
    has = n > 0
    lo = start + (n - 1) // 2
    hi = start + n // 2
    out[has] = 0.5 * (v[lo[has]] + v[hi[has]])
    return out


@aggregator_params
class RatingMean(_RatingAggregator):
    """The raters' mean per task. Parameters: ``scale`` (optional ``(min, max)`` check)."""

    scale: tuple[float, float] | None = None

    def _scores(self, enc: EncodedRatings) -> np.ndarray:
        n = np.bincount(enc.task, minlength=enc.n_tasks)
        return np.bincount(enc.task, enc.value, enc.n_tasks) / n


@aggregator_params
class RatingMedian(_RatingAggregator):
    """The raters' median per task (mean of the two middle ratings for an even count)."""

    scale: tuple[float, float] | None = None

    def _scores(self, enc: EncodedRatings) -> np.ndarray:
        return _group_median(enc.task, enc.value, enc.n_tasks)


def rater_model_arrays(
    task: np.ndarray,
    worker: np.ndarray,
    value: np.ndarray,
    n_tasks: int,
    n_workers: int,
    *,
    origin: float | None = None,
    scale_prior: float = 40.0,
    bias_prior: float = 100.0,
    reliability_prior: float | None = None,
    n_iter: int = 20,
    tol: float = 1e-9,
    level: float = 0.9,
) -> dict[str, np.ndarray]:
    """The rater model on integer codes (see the module docstring for the maths).

    Returns a dict of arrays: ``score`` and ``sd`` (posterior mean and sd per task, rating
    units), ``lower``/``upper`` (the ``level`` interval), ``bias``, ``scale``, ``noise_sd`` and
    ``weight`` per worker (``weight`` = the worker's posterior precision share, mean 1), and
    ``n_iter`` (a 1-element array)."""
    for name, k in (("scale_prior", scale_prior), ("bias_prior", bias_prior)):
        if not k > 0:
            raise ValidationError(f"{name} must be > 0 (use math.inf to switch off)", param=name)
    if reliability_prior is not None and not reliability_prior > 0:
        raise ValidationError("reliability_prior must be > 0 or None", param="reliability_prior")
    if not 0.0 < level < 1.0:
        raise ValidationError(f"level must be in (0, 1), got {level!r}", param="level")
    t, w, y = task, worker, value.astype(np.float64, copy=False)
    n_t = np.bincount(t, minlength=n_tasks).astype(np.float64)
    n_w = np.bincount(w, minlength=n_workers).astype(np.float64)
    o = float(y.min()) if origin is None else float(origin)
    big_v = float(y.var())
    if big_v <= 0.0:  # every rating identical: nothing to correct
        big_v = 1.0
    m_w = np.bincount(w, y, n_workers) / np.maximum(n_w, 1.0)
    v_w = np.bincount(w, (y - m_w[w]) ** 2, n_workers) / np.maximum(n_w, 1.0)
    if math.isinf(scale_prior):
        b = np.ones(n_workers)
    else:
        b = np.sqrt((n_w * v_w + scale_prior * big_v) / ((n_w + scale_prior) * big_v))
        b = np.maximum(b, 1e-3)
    u0 = o + (y - o) / b[w]
    a = np.zeros(n_workers)
    prec_w = np.ones(n_workers)
    z = np.bincount(t, u0, n_tasks) / n_t
    it = 0
    for it in range(1, n_iter + 1):  # noqa: B007
        u = u0 - a[w] / b[w]
        res = u - z[t]
        rss = np.bincount(w, res * res, n_workers)
        pooled = max(float(rss.sum()) / y.size, 1e-12)
        if reliability_prior is None:
            s2 = np.full(n_workers, pooled)
        else:
            s2 = (rss + reliability_prior * pooled) / (n_w + reliability_prior)
        prec_w = 1.0 / np.maximum(s2, 1e-12)
        p_sum = np.bincount(t, prec_w[w], n_tasks)
        z_ml = np.bincount(t, prec_w[w] * u, n_tasks) / p_sum
        mu = float(z_ml.mean())
        tau2 = max(float(z_ml.var()) - float(np.mean(1.0 / p_sum)), 1e-6 * big_v)
        z_new = (mu / tau2 + p_sum * z_ml) / (1.0 / tau2 + p_sum)
        if not math.isinf(bias_prior):
            # bias in rating units: a_w = b_w * shrunk mean of (u0 - z) over the worker's ratings
            a = b * np.bincount(w, u0 - z_new[t], n_workers) / (n_w + bias_prior)
        delta = float(np.max(np.abs(z_new - z)))
        z = z_new
        if delta < tol * math.sqrt(big_v):
            break
    post_var = 1.0 / (1.0 / tau2 + p_sum)
    sd = np.sqrt(post_var)
    half = float(ndtri(0.5 + level / 2.0)) * sd
    return {
        "score": z,
        "sd": sd,
        "lower": z - half,
        "upper": z + half,
        "bias": a,
        "scale": b,
        "noise_sd": b / np.sqrt(prec_w),
        "weight": prec_w / prec_w.mean(),
        "n_iter": np.array([it]),
    }


@aggregator_params
class RaterModel(_RatingAggregator):
    """Rater model: per-rater bias (leniency/severity), spread and noise with shrinkage priors,
    a Gaussian posterior per task (see module docstring for the maths and the defaults).

    Parameters: ``scale_prior`` (40; ``math.inf`` = no spread correction), ``bias_prior``
    (100; ``math.inf`` = no bias correction), ``reliability_prior`` (None = equal weights; a
    number = per-rater noise shrunk with that many pseudo-ratings), ``n_iter`` (20), ``tol``,
    ``level`` (0.9, the interval's coverage), ``scale`` (optional ``(min, max)``; its ``min`` is
    the origin of the spread correction, else the lowest rating).

    Fitted: ``scores_`` (posterior mean), ``sd_`` (posterior sd), ``intervals_`` (DataFrame
    indexed by task, columns ``lower``, ``upper``), ``workers_`` (DataFrame indexed by worker,
    columns ``bias``, ``scale``, ``noise_sd``, ``weight``, ``n_ratings``), ``n_iter_``.
    """

    scale_prior: float = 40.0
    bias_prior: float = 100.0
    reliability_prior: float | None = None
    n_iter: int = 20
    tol: float = 1e-9
    level: float = 0.9
    scale: tuple[float, float] | None = None

    def _scores(self, enc: EncodedRatings) -> np.ndarray:
        sc = _check_scale(self.scale)
        out = rater_model_arrays(
            enc.task,
            enc.worker,
            enc.value,
            enc.n_tasks,
            enc.n_workers,
            origin=None if sc is None else sc[0],
            scale_prior=self.scale_prior,
            bias_prior=self.bias_prior,
            reliability_prior=self.reliability_prior,
            n_iter=self.n_iter,
            tol=self.tol,
            level=self.level,
        )
        self.sd_ = pd.Series(out["sd"], index=enc.task_names, name="sd")
        self.intervals_ = pd.DataFrame(
            {"lower": out["lower"], "upper": out["upper"]}, index=enc.task_names
        )
        self.workers_ = pd.DataFrame(
            {
                "bias": out["bias"],
                "scale": out["scale"],
                "noise_sd": out["noise_sd"],
                "weight": out["weight"],
                "n_ratings": np.bincount(enc.worker, minlength=enc.n_workers).astype(np.int64),
            },
            index=enc.worker_names,
        )
        self.n_iter_ = int(out["n_iter"][0])
        return out["score"]


#: method name -> rating aggregator class
RATING_METHODS: dict[str, Callable[..., _RatingAggregator]] = {
    "auto": RaterModel,
    "rater_model": RaterModel,
    "mean": RatingMean,
    "median": RatingMedian,
}


def aggregate_ratings(df: pd.DataFrame, method: str = "auto", **params: Any) -> _RatingAggregator:
    """Fit and return the rating aggregator ``method`` (``"auto"`` = :class:`RaterModel`,
    ``"mean"``, ``"median"``, ``"rater_model"``); read ``.scores_`` (and for the rater model
    ``.intervals_``, ``.workers_``)."""
    key = str(method).strip().lower().replace("-", "_")
    if key not in RATING_METHODS:
        raise ValidationError(
            f"unknown rating method {method!r}; choose one of {sorted(RATING_METHODS)}",
            param="method",
        )
    try:
        model = RATING_METHODS[key](**params)
    except TypeError as exc:
        raise ValidationError(f"bad parameters for {method!r}: {exc}", param="method") from exc
    return model.fit(df)


def rating_consensus(
    df: pd.DataFrame,
    *,
    tolerance: float,
    scale: tuple[float, float] | None = None,
    value_column: str = "value",
) -> pd.DataFrame:
    """The platform's per-task decision for ratings, vectorised over tasks.

    Per task: ``score`` = the median (robust centre; mean of the two middle ratings for an even
    count), ``rounded`` = the score rounded half up to an integer (int64), ``mean``,
    ``spread`` = the mean absolute deviation from the median, ``range`` = max - min,
    ``n`` = the number of ratings, ``agreement`` = ``1 - spread / (half the scale width)``
    clipped to [0, 1] (the scale is ``scale`` if given, else the observed min..max over all
    tasks; 1 when every rating is the same), ``disputed`` = ``range > tolerance`` (bool; with
    one rating never disputed). Returns a DataFrame indexed by task.
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValidationError(
            f"tolerance must be a finite number >= 0, got {tolerance!r}", param="tolerance"
        )
    enc = encode_ratings(df, scale, value_column)
    t, y, nt = enc.task, enc.value, enc.n_tasks
    n = np.bincount(t, minlength=nt)
    med = _group_median(t, y, nt)
    mad = np.bincount(t, np.abs(y - med[t]), nt) / n
    vmax = np.full(nt, -np.inf)
    np.maximum.at(vmax, t, y)
    vmin = np.full(nt, np.inf)
    np.minimum.at(vmin, t, y)
    sc = _check_scale(scale)
    half = 0.5 * ((sc[1] - sc[0]) if sc else float(y.max() - y.min()))
    agreement = np.ones(nt) if half <= 0 else np.clip(1.0 - mad / half, 0.0, 1.0)
    rng = vmax - vmin
    return pd.DataFrame(
        {
            "score": med,
            "rounded": np.floor(med + 0.5).astype(np.int64),
            "mean": np.bincount(t, y, nt) / n,
            "spread": mad,
            "range": rng,
            "n": n.astype(np.int64),
            "agreement": agreement,
            "disputed": rng > tolerance,
        },
        index=enc.task_names,
    )


def rating_alpha(df: pd.DataFrame, level: str = "interval", value_column: str = "value") -> float:
    """Krippendorff's alpha of the raters, ``level`` ``"interval"`` or ``"ordinal"`` (or
    ``"nominal"``); the ordinal domain is the observed rating values. Equals
    ``krippendorff.alpha`` on the worker x task matrix (tested to 1e-9 on Snow et al. 2008).
    Repeated ``(task, worker)`` rows keep the first rating."""
    enc = encode_ratings(df, None, value_column)
    long = pd.DataFrame({"task": enc.task, "worker": enc.worker, "label": enc.value})
    return krippendorff_alpha(long, level)
