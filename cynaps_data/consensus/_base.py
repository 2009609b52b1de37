"""Shared machinery: the sklearn-style base class, array-level results and numeric helpers."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ValidationError
from ._encode import Encoded, encode, encode_gold

__all__ = [
    "ArrayResult",
    "BaseAggregator",
    "aggregator_params",
    "softmax_rows",
    "check_codes",
    "check_choice",
    "check_positive_count",
    "check_real",
    "check_em_params",
    "fix_gold",
    "mv_init",
]

_TINY = 1e-300


@dataclass
class ArrayResult:
    """Result of an array-level fit (all arrays are numpy, codes are dense ints).

    ``probas``: float64 ``(n_tasks, n_classes)``, rows sum to 1. ``labels``: int64 ``(n_tasks,)``.
    ``priors``: ``(n_classes,)``. ``skills``: ``(n_workers,)`` (model-specific skill, see each
    class). ``errors``: optional ``(n_workers, n_classes_observed, n_classes_true)`` confusion
    matrices, ``errors[w, y, c] = P(worker w answers y | true class c)``.
    """

    probas: np.ndarray
    labels: np.ndarray
    priors: np.ndarray
    skills: np.ndarray
    errors: np.ndarray | None = None
    loss_history: list[float] = field(default_factory=list)
    n_iter: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _row_max(x: np.ndarray) -> np.ndarray:
    # column loop: numpy reductions along a short last axis are slow; this is ~3x faster for
    # up to ~8 columns, and much slower beyond (strided passes), where numpy's reduce wins
    if x.shape[1] > 8:
        return x.max(axis=1)
    m = x[:, 0].copy()
    for j in range(1, x.shape[1]):
        np.maximum(m, x[:, j], out=m)
    return m


def _row_sum(x: np.ndarray) -> np.ndarray:
    if x.shape[1] > 8:
        return np.einsum("ij->i", x)
    s = x[:, 0].copy()
    for j in range(1, x.shape[1]):
        s += x[:, j]
    return s


def softmax_rows(
    logits: np.ndarray, lse_out: list | None = None, *, shift: bool = True
) -> np.ndarray:
    """Row-wise softmax, in place on ``logits``; returns it. If ``lse_out`` is a list, the
    per-row log-sum-exp (log normaliser) is appended to it.

    ``shift=False`` skips the usual row-max shift (two passes over the array). Only for callers
    that guarantee every row's largest logit lies in [-700, 700], so ``exp`` cannot overflow and
    the row sum cannot underflow; the result is then the same up to rounding."""
    if shift:
        m = _row_max(logits)
        logits -= m[:, None]
    np.exp(logits, out=logits)
    s = np.einsum("ij->i", logits)  # no temporary, faster than sum(axis=1) on short rows
    if lse_out is not None:
        lse_out.append(m + np.log(s) if shift else np.log(s))
    logits /= s[:, None]
    return logits


def logsumexp_rows(logits: np.ndarray) -> np.ndarray:
    m = _row_max(logits)
    return m + np.log(_row_sum(np.exp(logits - m[:, None])))


def argmax_rows(
    probas: np.ndarray, rng: np.random.Generator | None, rtol: float = 1e-12
) -> np.ndarray:
    """Argmax per row; exact ties are broken uniformly at random with ``rng`` (or towards the
    lowest class code when ``rng`` is None)."""
    best = probas.argmax(axis=1)
    if rng is None or probas.shape[1] < 2:
        return best
    top = probas[np.arange(probas.shape[0]), best]
    tied_mask = probas >= (top - rtol * np.abs(top))[:, None]
    n_top = tied_mask.sum(axis=1)
    rows = np.flatnonzero(n_top > 1)
    if rows.size:
        r = rng.random((rows.size, probas.shape[1]))
        r[~tied_mask[rows]] = -1.0
        best[rows] = r.argmax(axis=1)
    return best


def fix_gold(q: np.ndarray, gold: np.ndarray | None) -> np.ndarray:
    """Set, in place, the rows of posteriors ``q`` ``(n_tasks, k)`` whose ``gold`` code is
    ``>= 0`` to that class's one-hot; ``gold``: int ``(n_tasks,)`` with -1 = no gold, or None."""
    if gold is not None:
        has = gold >= 0
        if has.any():
            q[has] = 0.0
            q[has, gold[has]] = 1.0
    return q


def mv_init(
    task: np.ndarray, label: np.ndarray, n_tasks: int, k: int, gold: np.ndarray | None
) -> np.ndarray:
    """Soft majority-vote shares ``(n_tasks, k)``, gold rows one-hot."""
    counts = np.bincount(task * k + label, minlength=n_tasks * k).reshape(n_tasks, k)
    q = counts / counts.sum(axis=1, keepdims=True)
    return fix_gold(q, gold)


def check_choice(value: Any, choices: tuple[str, ...], param: str) -> None:
    """Raise ``ValidationError`` ("<param> must be 'a' or 'b', got ...") unless ``value`` is one
    of ``choices``."""
    if value not in choices:
        allowed = " or ".join(repr(c) for c in choices)
        raise ValidationError(f"{param} must be {allowed}, got {value!r}", param=param)


def check_positive_count(value: int, param: str) -> None:
    """Raise ``ValidationError`` ("<param> must be an integer >= 1") unless ``value`` is an
    integer (not a bool, not a float or string) and ``>= 1``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValidationError(
            f"{param} must be an integer >= 1, got {value!r} ({type(value).__name__})",
            param=param,
        )
    if value < 1:
        raise ValidationError(f"{param} must be an integer >= 1, got {value!r}", param=param)


def check_real(value: float, param: str) -> None:
    """Raise ``ValidationError`` unless ``value`` is a real number (int or float, not a bool,
    string or None)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise ValidationError(
            f"{param} must be a number, got {value!r} ({type(value).__name__})", param=param
        )


def check_em_params(n_iter: Any, tol: Any) -> None:
    """Validate an iterative model's ``n_iter`` (integer >= 1) and ``tol`` (a number)."""
    check_positive_count(n_iter, "n_iter")
    check_real(tol, "tol")


def check_codes(
    task: Any,
    worker: Any,
    label: Any,
    n_tasks: int | None,
    n_workers: int | None,
    n_classes: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, int]:
    """Validate integer code arrays for the array-level API."""
    arrs = []
    for name, a in (("task", task), ("worker", worker), ("label", label)):
        a = np.asarray(a)
        if a.ndim != 1:
            raise ValidationError(f"{name} codes must be a 1-D array", param=name)
        if a.dtype.kind not in "iu":
            raise ValidationError(
                f"{name} codes must be integers (got dtype {a.dtype}); factorize first", param=name
            )
        arrs.append(a.astype(np.int64, copy=False))
    t, w, y = arrs
    if not (t.shape == w.shape == y.shape):
        raise ValidationError("task, worker and label code arrays differ in length", param="task")
    if t.size == 0:
        raise ValidationError("empty input: no answers", param="data")
    out = []
    for name, a, n in (("task", t, n_tasks), ("worker", w, n_workers), ("label", y, n_classes)):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0:
            raise ValidationError(f"{name} codes must be >= 0", param=name)
        if n is None:
            n = hi + 1
        elif hi >= n:
            raise ValidationError(f"{name} code {hi} out of range (n={n})", param=name)
        out.append(int(n))
    return t, w, y, out[0], out[1], out[2]


class BaseAggregator:
    """sklearn-style base: parameters in ``__init__``, ``fit(data, gold=None)`` returns self.

    A model is an :func:`aggregator_params` subclass: its annotated class fields (type,
    default) are the ``__init__`` parameters, in order, stored under the same names; ``_arrays``
    is its array-level function (same keyword defaults; ``labels`` is not passed). Override
    ``_array_params`` to translate parameters and ``_finish_fit`` to set extra fitted attributes.

    Fitted attributes (pandas, original ids/labels preserved):

    * ``labels_``: Series indexed by ``task`` (name ``"label"``), the consensus label;
    * ``probas_``: DataFrame ``task x label`` of posterior probabilities (rows sum to 1);
    * ``priors_``: Series indexed by label; ``skills_``: Series indexed by ``worker``;
    * ``errors_`` (confusion models): DataFrame indexed by (``worker``, observed ``label``) with
      one column per true label, ``errors_.loc[(w, y), c] = P(w answers y | truth c)``;
    * ``loss_history_`` (list of floats) and ``n_iter_`` (int).
    """

    #: minimum distinct workers required by the model
    _min_workers = 2
    #: the model's array-level function, called by :meth:`_fit_encoded` as
    #: ``_arrays(task, worker, label, n_tasks, n_workers, n_classes, gold=..., **params)``
    _arrays: Callable[..., Any] | None = None
    #: whether ``_arrays`` accepts ``incidence=`` (the encoding's cached sparse matrices)
    _takes_incidence = False

    def __init__(self) -> None:  # pragma: no cover - subclasses define their params
        pass

    # ---- sklearn parameter protocol -------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        return list(_init_param_names(cls))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> BaseAggregator:
        valid = set(self._param_names())
        for k, v in params.items():
            if k not in valid:
                raise ValidationError(f"unknown parameter {k!r} for {type(self).__name__}", param=k)
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---- model hooks (override as needed) --------------------------------------------------
    def _array_params(self, enc: Encoded) -> dict[str, Any]:
        """Keyword arguments for ``_arrays``: every ``__init__`` parameter except ``labels``."""
        return {k: getattr(self, k) for k in _init_param_names(type(self)) if k != "labels"}

    def _finish_fit(self, enc: Encoded, out: Any) -> ArrayResult:
        """Turn ``_arrays``' return value into the :class:`ArrayResult`, setting any
        model-specific fitted attributes first. Default: ``out`` is the result."""
        return out

    def _fit_encoded(self, enc: Encoded, gold: np.ndarray) -> ArrayResult:
        """Run ``_arrays`` on the encoded answers with this estimator's parameters."""
        if self._arrays is None:
            raise NotImplementedError(f"{type(self).__name__} defines no _arrays")
        params = self._array_params(enc)
        if self._takes_incidence:
            params["incidence"] = (enc.incidence(), enc.incidence_t())
        out = self._arrays(*enc.codes, gold=gold, **params)
        return self._finish_fit(enc, out)

    # ---- public API -------------------------------------------------------------------------
    def fit(self, data: pd.DataFrame, gold: Any = None) -> BaseAggregator:
        """Fit on a long DataFrame with columns ``task``, ``worker``, ``label``.

        ``gold``: optional Series indexed by task with known true labels; those tasks' posteriors
        are fixed to the gold label during fitting (worker parameters learn from them).
        """
        if type(data).__module__.split(".")[0] in ("dask", "dask_expr"):  # on the cluster
            from .dask import fit_dask

            return fit_dask(self, data, gold)
        labels = getattr(self, "labels", None)
        enc = encode(data, labels, min_workers=self._min_workers)
        g = encode_gold(gold, enc)
        res = self._fit_encoded(enc, g)
        self._set_results(enc, res)
        return self

    def fit_predict(self, data: pd.DataFrame, gold: Any = None) -> pd.Series:
        """Fit and return the consensus label per task (Series indexed by task, name "label")."""
        return self.fit(data, gold).labels_

    def fit_predict_proba(self, data: pd.DataFrame, gold: Any = None) -> pd.DataFrame:
        """Fit and return the posterior ``task x label`` DataFrame."""
        return self.fit(data, gold).probas_

    # ---- helpers --------------------------------------------------------------------------
    def _set_results(self, enc: Encoded, res: ArrayResult) -> None:
        self.encoded_ = enc
        self.result_ = res
        self.classes_ = enc.label_names
        self.probas_ = pd.DataFrame(res.probas, index=enc.task_names, columns=enc.label_names)
        self.labels_ = pd.Series(
            enc.label_names.take(res.labels), index=enc.task_names, name="label"
        )
        self.priors_ = pd.Series(res.priors, index=enc.label_names, name="prior")
        self.skills_ = pd.Series(res.skills, index=enc.worker_names, name="skill")
        if res.errors is not None:
            k = enc.n_classes
            idx = pd.MultiIndex.from_product(
                [enc.worker_names, enc.label_names], names=["worker", "label"]
            )
            self.errors_ = pd.DataFrame(
                res.errors.reshape(enc.n_workers * k, k), index=idx, columns=enc.label_names
            )
        self.loss_history_ = list(res.loss_history)
        self.n_iter_ = int(res.n_iter)


#: class decorator for aggregators: a dataclass whose fields are the ``__init__`` parameters,
#: keeping identity equality (hashable, like any estimator) and ``BaseAggregator.__repr__``
aggregator_params = dataclass(eq=False, repr=False)


@functools.cache
def _init_param_names(cls: type) -> tuple[str, ...]:
    """``cls.__init__``'s parameter names (without ``self``), in signature order."""
    return tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")


def rng_from(random_state: Any) -> np.random.Generator:
    """A Generator from ``random_state``: a Generator (used as is), None, a non-negative int
    seed, a sequence of them, a SeedSequence, a BitGenerator or a legacy RandomState; anything
    else raises ``ValidationError`` (param ``random_state``)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, (bool, np.bool_, float, np.floating, str, bytes)):
        raise ValidationError(
            f"random_state must be None, an integer seed >= 0 or a numpy Generator, "
            f"got {random_state!r}",
            param="random_state",
        )
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"random_state must be None, an integer seed >= 0 or a numpy Generator, "
            f"got {random_state!r} ({exc})",
            param="random_state",
        ) from exc


def labels_param(labels: Sequence[Hashable] | None) -> Sequence[Hashable] | None:
    return None if labels is None else list(labels)
