r"""Multi-label aggregation: each answer is a *set* of labels (possibly empty).

Data contract: a long DataFrame, one row per judgement, with columns ``task`` and ``worker``
(hashable, not null) and ``labels``: a list-like (list, tuple, set, numpy array) of labels,
empty meaning "none of them". The label set is ``labels=`` if given (answers outside it raise
:class:`~cynaps_data.errors.ValidationError`), else the sorted labels seen. Internally the
answers become a multi-hot matrix :math:`Y \in \{0,1\}^{N \times L}` (answer rows, label
columns) beside task and worker codes; nothing of size tasks x workers is formed.

Fitted attributes of every aggregator here:

* ``probas_``: DataFrame ``task x label`` (float64), the per-label posterior
  :math:`P(l \in S_t)` -- the multi-hot soft matrix for training;
* ``multi_hot_``: DataFrame ``task x label`` of bool, ``probas_ > threshold``;
* ``labels_``: Series indexed by task (name ``"labels"``) of lists of labels in label order.

Methods:

* :class:`BinaryRelevance`: one binary problem per label (is :math:`l` in the worker's set or
  not), solved by any binary method of the engine (``"mv"``, ``"ds"``, ``"ebcc"``, ``"auto"``
  or an aggregator instance); ``probas_[:, l]`` is that method's posterior of "present".
  ``BinaryRelevance("mv")`` equals crowd-kit's ``BinaryRelevance(MajorityVote)`` (a 50/50 tie
  is "absent").
* :class:`MultiLabelModel` (the default, ``"auto"``): per-worker, per-label sensitivity and
  false-positive rate with Beta priors, and a prior over label *sets* from a mixture of
  :math:`M` item clusters (the label co-occurrence the binary view throws away). With
  :math:`z_{tl}\in\{0,1\}` the truth, :math:`g_t` the item's cluster:

  .. math::
      g_t \sim \mathrm{Cat}(\pi),\quad z_{tl}\mid g_t{=}m \sim \mathrm{Bern}(\theta_{ml}),\quad
      y_{twl}\mid z_{tl} \sim \mathrm{Bern}(z_{tl}\, s_{wl} + (1-z_{tl})\, f_{wl}),

  :math:`s_{wl} \sim \mathrm{Beta}(\alpha_s)` (``sensitivity_prior``), :math:`f_{wl} \sim
  \mathrm{Beta}(\alpha_f)` (``fpr_prior``). Mean-field EM over :math:`q(z_{tl})` and
  :math:`q(g_t)`:

  .. math::
      \operatorname{logit} q_{tl} = \sum_m r_{tm}\operatorname{logit}\theta_{ml}
        + \sum_{w \in t}\Big[y_{twl}\log\tfrac{s_{wl}}{f_{wl}}
        + (1-y_{twl})\log\tfrac{1-s_{wl}}{1-f_{wl}}\Big],\qquad
      \log r_{tm} = \log\pi_m + \sum_l q_{tl}\log\theta_{ml} + (1-q_{tl})\log(1-\theta_{ml})
        + c,

  M-step: :math:`s_{wl}` and :math:`f_{wl}` are posterior means (expected true/false positive
  counts plus the Beta pseudo-counts), :math:`\theta_{ml} = (\sum_t r_{tm} q_{tl} + 1) /
  (\sum_t r_{tm} + 2)`, :math:`\pi_m \propto 1 + \sum_t r_{tm}`. :math:`q` starts from the
  vote shares, :math:`r` from a seeded random split (``random_state``). The decision is
  :math:`q_{tl} > 0.5` (``threshold``).

  Why the sensitivity prior matters: crowd workers tick few labels (on CrowdTruth RelEx 89 %
  of answers hold one label), so the maximum-likelihood sensitivity is low and a model fitted
  without a prior reads two votes out of fifteen as strong evidence of a label, which makes its
  answer unstable. The default prior (mean 0.8 over 50 pseudo-counts) keeps each worker's vote
  worth about what a majority vote assumes while still learning who adds spurious labels
  (the false-positive rates) and which labels go together. Evidence and the other settings
  tried: ``docs/aggregation-types.md``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit, logsumexp

from ..errors import ValidationError
from ._base import BaseAggregator, aggregator_params, rng_from
from ._encode import check_long_frame
from .dawid_skene import DawidSkene, OneCoinDawidSkene
from .ebcc import EBCC
from .ensemble import ConsensusEnsemble
from .glad import GLAD
from .mace import MACE
from .majority_vote import MajorityVote

__all__ = [
    "BinaryRelevance",
    "EncodedSets",
    "MULTILABEL_METHODS",
    "MultiLabelModel",
    "ShareConsensus",
    "aggregate_multilabel",
    "encode_label_sets",
    "multilabel_model_arrays",
    "share_consensus",
]

#: binary methods usable inside :class:`BinaryRelevance` (name -> class)
BINARY_METHODS: dict[str, type[BaseAggregator]] = {
    "mv": MajorityVote,
    "majority_vote": MajorityVote,
    "ds": DawidSkene,
    "dawid_skene": DawidSkene,
    "one_coin": OneCoinDawidSkene,
    "glad": GLAD,
    "mace": MACE,
    "ebcc": EBCC,
    "auto": ConsensusEnsemble,
}


class EncodedSets:
    """Coded multi-label answers: ``task``/``worker`` int64 codes (length N), ``Y`` bool
    ``(N, L)``, ``task_names``/``worker_names``/``label_names`` pandas Indexes."""

    def __init__(
        self,
        task: np.ndarray,
        worker: np.ndarray,
        y: np.ndarray,
        task_names: pd.Index,
        worker_names: pd.Index,
        label_names: pd.Index,
    ) -> None:
        self.task, self.worker, self.Y = task, worker, y
        self.task_names, self.worker_names, self.label_names = (
            task_names,
            worker_names,
            label_names,
        )

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    @property
    def n_workers(self) -> int:
        return len(self.worker_names)

    @property
    def n_labels(self) -> int:
        return len(self.label_names)


def _as_list(v: Any, row: Any) -> list:
    if isinstance(v, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
        return list(v)
    raise ValidationError(
        f"column 'labels' must hold list-likes of labels (list, tuple, set, array), got "
        f"{type(v).__name__} {v!r} at index {row!r}",
        param="labels",
    )


def encode_label_sets(
    df: pd.DataFrame, labels: Sequence[Hashable] | None = None, column: str = "labels"
) -> EncodedSets:
    """Validate a long ``task, worker, labels`` frame and code it (see the module docstring)."""
    cols = ("task", "worker", column)
    check_long_frame(df, cols, not_null=("task", "worker"), what="multi-label answers need")
    sets = [_as_list(v, i) for i, v in zip(df.index, df[column].to_numpy(), strict=True)]
    lengths = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    flat = pd.Series([x for s in sets for x in s], dtype=object)
    if flat.isna().any():
        raise ValidationError("a label set contains a missing value (None/NaN)", param=column)
    if labels is not None:
        names = pd.Index(list(labels))
        if names.has_duplicates:
            raise ValidationError(
                f"labels= has duplicate entries {names[names.duplicated()].tolist()}",
                param="labels",
            )
        codes = names.get_indexer(flat) if len(flat) else np.empty(0, np.int64)
        if (codes < 0).any():
            unknown = pd.unique(flat[codes < 0])[:10].tolist()
            row_of = np.repeat(np.arange(len(sets)), lengths)[codes < 0][0]
            raise ValidationError(
                f"{int((codes < 0).sum())} selected label(s) outside the declared label set "
                f"{names.tolist()}: {unknown}, first at index {df.index[row_of]!r}",
                param=column,
            )
    else:
        if len(flat) == 0:
            raise ValidationError(
                "no answer selects any label; pass labels= to declare the label set",
                param="labels",
            )
        try:
            codes, uniq = pd.factorize(flat, sort=True)
        except TypeError:
            codes, uniq = pd.factorize(flat, sort=False)
        names = pd.Index(uniq)
    n = len(sets)
    y = np.zeros((n, len(names)), dtype=bool)
    y[np.repeat(np.arange(n), lengths), np.asarray(codes, dtype=np.int64)] = True
    t_codes, t_names = pd.factorize(df["task"], sort=False)
    w_codes, w_names = pd.factorize(df["worker"], sort=False)
    return EncodedSets(
        np.asarray(t_codes, dtype=np.int64),
        np.asarray(w_codes, dtype=np.int64),
        y,
        pd.Index(t_names, name="task"),
        pd.Index(w_names, name="worker"),
        pd.Index(names, name="label"),
    )


def _group_matrix(codes: np.ndarray, n: int) -> sp.csr_matrix:
    """Sparse ``n x N`` 0/1 matrix summing answer rows into their group (task or worker)."""
    m = codes.size
    return sp.csr_matrix((np.ones(m), (codes, np.arange(m))), shape=(n, m))


def vote_shares(task: np.ndarray, y: np.ndarray, n_tasks: int) -> np.ndarray:
    """Per-task share of answers selecting each label, float ``(n_tasks, L)``."""
    counts = np.asarray(_group_matrix(task, n_tasks) @ y.astype(np.float64))
    n = np.bincount(task, minlength=n_tasks).astype(np.float64)
    return counts / np.maximum(n, 1.0)[:, None]


def multilabel_model_arrays(
    task: np.ndarray,
    worker: np.ndarray,
    y: np.ndarray,
    n_tasks: int,
    n_workers: int,
    *,
    sensitivity_prior: tuple[float, float] = (40.0, 10.0),
    fpr_prior: tuple[float, float] = (1.0, 10.0),
    n_clusters: int = 4,
    n_iter: int = 50,
    tol: float = 1e-5,
    random_state: Any = 0,
) -> dict[str, Any]:
    """:class:`MultiLabelModel` on codes; ``y`` bool ``(N, L)``. Returns ``probas`` ``(n_tasks,
    L)``, ``sensitivity``/``fpr`` ``(n_workers, L)``, ``theta`` ``(M, L)``, ``pi`` ``(M,)``,
    ``clusters`` ``(n_tasks, M)`` and ``n_iter``."""
    a_s, b_s = (float(v) for v in sensitivity_prior)
    a_f, b_f = (float(v) for v in fpr_prior)
    if min(a_s, b_s, a_f, b_f) <= 0:
        raise ValidationError("Beta prior pseudo-counts must be > 0", param="sensitivity_prior")
    m = int(n_clusters)
    if m < 1:
        raise ValidationError("n_clusters must be >= 1", param="n_clusters")
    n_l = y.shape[1]
    yf = y.astype(np.float64)
    tm, wm = _group_matrix(task, n_tasks), _group_matrix(worker, n_workers)
    n_w = np.asarray(wm.sum(axis=1)).ravel()
    sel_w = np.asarray(wm @ yf)  # selections per worker and label
    q = vote_shares(task, y, n_tasks)
    rng = rng_from(random_state)
    r = rng.dirichlet(np.ones(m), n_tasks) if m > 1 else np.ones((n_tasks, 1))
    it = 0
    sens = fpr = theta = pi = None
    for it in range(1, n_iter + 1):  # noqa: B007
        qa = q[task]
        tp = np.asarray(wm @ (qa * yf))
        pos = np.asarray(wm @ qa)
        sens = (tp + a_s) / (pos + a_s + b_s)
        fpr = (sel_w - tp + a_f) / (n_w[:, None] - pos + a_f + b_f)
        rs = r.sum(axis=0)
        theta = (r.T @ q + 1.0) / (rs[:, None] + 2.0)
        pi = (rs + 1.0) / (n_tasks + m)
        d1 = np.log(sens) - np.log(fpr)
        d0 = np.log1p(-sens) - np.log1p(-fpr)
        ev = np.asarray(tm @ (yf * (d1 - d0)[worker] + d0[worker]))
        log_th, log_1th = np.log(theta), np.log1p(-theta)
        q_new = expit(ev + r @ (log_th - log_1th))
        if m > 1:
            lr = np.log(pi)[None, :] + q_new @ log_th.T + (1.0 - q_new) @ log_1th.T
            r = np.exp(lr - logsumexp(lr, axis=1, keepdims=True))
        delta = float(np.max(np.abs(q_new - q)))
        q = q_new
        if delta < tol:
            break
    return {
        "probas": q,
        "sensitivity": sens,
        "fpr": fpr,
        "theta": theta,
        "pi": pi,
        "clusters": r,
        "n_iter": it,
        "n_labels": n_l,
    }


class _MultiLabelAggregator(BaseAggregator):
    """Base: ``fit(df)`` sets ``probas_``, ``multi_hot_``, ``labels_`` (module docstring)."""

    labels: Sequence[Hashable] | None
    threshold: float

    def _probas(self, enc: EncodedSets) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, data: pd.DataFrame, gold: Any = None) -> _MultiLabelAggregator:
        """Fit on a long ``task, worker, labels`` frame (``gold`` is not used)."""
        if not 0.0 <= float(self.threshold) < 1.0:
            raise ValidationError(
                f"threshold must be in [0, 1), got {self.threshold!r}", param="threshold"
            )
        enc = encode_label_sets(data, self.labels)
        self.encoded_ = enc
        q = self._probas(enc)
        self.classes_ = enc.label_names
        self.probas_ = pd.DataFrame(q, index=enc.task_names, columns=enc.label_names)
        hot = q > float(self.threshold)
        self.multi_hot_ = pd.DataFrame(hot, index=enc.task_names, columns=enc.label_names)
        names = np.asarray(enc.label_names, dtype=object)
        self.labels_ = pd.Series(
            [names[row].tolist() for row in hot], index=enc.task_names, name="labels"
        )
        return self

    def fit_predict(self, data: pd.DataFrame, gold: Any = None) -> pd.Series:
        """Fit and return ``labels_`` (Series of label lists indexed by task)."""
        return self.fit(data, gold).labels_

    def fit_predict_proba(self, data: pd.DataFrame, gold: Any = None) -> pd.DataFrame:
        """Fit and return ``probas_`` (task x label posteriors, rows need not sum to 1)."""
        return self.fit(data, gold).probas_


@aggregator_params
class MultiLabelModel(_MultiLabelAggregator):
    """The default multi-label aggregator (module docstring): per-worker per-label sensitivity
    and false-positive rate, a cluster mixture prior over label sets, mean-field EM.

    Parameters: ``sensitivity_prior`` (Beta pseudo-counts ``(hits, misses)``, (40, 10)),
    ``fpr_prior`` (``(false alarms, correct rejections)``, (1, 10)), ``n_clusters`` (4; 1 =
    independent labels), ``n_iter`` (50), ``tol``, ``threshold`` (0.5), ``random_state``,
    ``labels``.

    Fitted: ``probas_``, ``multi_hot_``, ``labels_``; ``sensitivity_`` and ``fpr_``
    (DataFrames worker x label), ``cooccurrence_`` (label x label: the model's
    :math:`P(l, l')` under the cluster prior), ``n_iter_``.
    """

    sensitivity_prior: tuple[float, float] = (40.0, 10.0)
    fpr_prior: tuple[float, float] = (1.0, 10.0)
    n_clusters: int = 4
    n_iter: int = 50
    tol: float = 1e-5
    threshold: float = 0.5
    random_state: Any = 0
    labels: Sequence[Hashable] | None = None

    def _probas(self, enc: EncodedSets) -> np.ndarray:
        out = multilabel_model_arrays(
            enc.task,
            enc.worker,
            enc.Y,
            enc.n_tasks,
            enc.n_workers,
            sensitivity_prior=self.sensitivity_prior,
            fpr_prior=self.fpr_prior,
            n_clusters=self.n_clusters,
            n_iter=self.n_iter,
            tol=self.tol,
            random_state=self.random_state,
        )
        ln, wn = enc.label_names, enc.worker_names
        self.sensitivity_ = pd.DataFrame(out["sensitivity"], index=wn, columns=ln)
        self.fpr_ = pd.DataFrame(out["fpr"], index=wn, columns=ln)
        th, pi = out["theta"], out["pi"]
        co = np.einsum("m,ml,mk->lk", pi, th, th)
        np.fill_diagonal(co, pi @ th)
        self.cooccurrence_ = pd.DataFrame(co, index=ln, columns=ln)
        self.n_iter_ = int(out["n_iter"])
        return out["probas"]


@aggregator_params
class BinaryRelevance(_MultiLabelAggregator):
    """One binary aggregation per label with any binary method of the engine.

    ``method``: a name from :data:`BINARY_METHODS` (``"mv"``, ``"ds"``, ``"ebcc"``, ``"auto"``,
    ...) or an unfitted aggregator instance (cloned per label). ``threshold`` (0.5) applies to
    the method's posterior of "present"; ``labels`` declares the label set. Fitted:
    ``probas_``, ``multi_hot_``, ``labels_``, ``estimators_`` (dict label -> fitted model).
    MajorityVote's tie policy makes a 50/50 split "absent" (classes ordered absent, present).
    """

    method: Any = "mv"
    threshold: float = 0.5
    labels: Sequence[Hashable] | None = None

    def _make(self) -> BaseAggregator:
        m = self.method
        if isinstance(m, BaseAggregator):
            return type(m)(**{**m.get_params(), "labels": [False, True]})
        key = str(m).strip().lower().replace("-", "_")
        if key not in BINARY_METHODS:
            raise ValidationError(
                f"unknown binary method {m!r}; choose one of {sorted(BINARY_METHODS)}",
                param="method",
            )
        return BINARY_METHODS[key](labels=[False, True])

    def _probas(self, enc: EncodedSets) -> np.ndarray:
        q = np.zeros((enc.n_tasks, enc.n_labels))
        self.estimators_ = {}
        for j, name in enumerate(enc.label_names):
            frame = pd.DataFrame({"task": enc.task, "worker": enc.worker, "label": enc.Y[:, j]})
            model = self._make().fit(frame)
            # tasks keep first-appearance order in both codings, so rows line up; a 50/50
            # majority-vote tie has share 0.5, which is not > threshold 0.5: "absent"
            q[:, j] = model.probas_[True].to_numpy()
            self.estimators_[name] = model
        return q


#: multi-label method name -> class
MULTILABEL_METHODS: dict[str, Any] = {
    "auto": MultiLabelModel,
    "model": MultiLabelModel,
    "binary_relevance": BinaryRelevance,
    "br": BinaryRelevance,
}


def aggregate_multilabel(
    df: pd.DataFrame, method: str | BaseAggregator = "auto", **params: Any
) -> _MultiLabelAggregator:
    """Fit and return a multi-label aggregator: ``"auto"`` (:class:`MultiLabelModel`), or a
    binary method name (``"mv"``, ``"ds"``, ``"ebcc"``, ...) / instance wrapped in
    :class:`BinaryRelevance`. Read ``.labels_``, ``.probas_``, ``.multi_hot_``."""
    if isinstance(method, BaseAggregator):
        return BinaryRelevance(method=method, **params).fit(df)
    key = str(method).strip().lower().replace("-", "_")
    try:
        if key in ("auto", "model"):
            return MultiLabelModel(**params).fit(df)
        if key in BINARY_METHODS:
            return BinaryRelevance(method=key, **params).fit(df)
    except TypeError as exc:
        raise ValidationError(f"bad parameters for {method!r}: {exc}", param="method") from exc
    raise ValidationError(
        f"unknown multi-label method {method!r}; choose 'auto' or one of {sorted(BINARY_METHODS)}",
        param="method",
    )


class ShareConsensus(NamedTuple):
    """:func:`share_consensus`'s result: ``labels`` (Series of label lists indexed by task),
    ``shares`` (DataFrame task x label, float64 vote shares), ``n`` (Series, answers per task)."""

    labels: pd.Series
    shares: pd.DataFrame
    n: pd.Series


def share_consensus(
    df: pd.DataFrame,
    *,
    threshold: float = 0.5,
    labels: Sequence[Hashable] | None = None,
    strict: bool = False,
) -> ShareConsensus:
    """The platform's per-task decision for multi-label answers, vectorised over tasks: a label
    is in the final set when its vote share reaches ``threshold`` (``share >= threshold``; with
    ``strict=True`` ``share > threshold``, which is crowd-kit's BR(MV) at 0.5). Per-task
    agreement: :func:`~cynaps_data.consensus.agreement.set_agreement`."""
    if (
        isinstance(threshold, (bool, np.bool_))
        or not isinstance(threshold, (int, float, np.integer, np.floating))
        or not 0 <= threshold <= 1  # NaN fails too
    ):
        raise ValidationError(
            f"threshold must be a number in [0, 1], got {threshold!r}", param="threshold"
        )
    enc = encode_label_sets(df, labels)
    s = vote_shares(enc.task, enc.Y, enc.n_tasks)
    hot = s > threshold if strict else s >= threshold - 1e-12
    names = np.asarray(enc.label_names, dtype=object)
    return ShareConsensus(
        labels=pd.Series([names[row].tolist() for row in hot], index=enc.task_names, name="labels"),
        shares=pd.DataFrame(s, index=enc.task_names, columns=enc.label_names),
        n=pd.Series(
            np.bincount(enc.task, minlength=enc.n_tasks).astype(np.int64),
            index=enc.task_names,
            name="n",
        ),
    )
