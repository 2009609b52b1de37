"""Consensus on a Dask cluster: fit an aggregator on a ``dask.dataframe.DataFrame``.

Data contract
-------------
Input: a Dask DataFrame with (at least) the columns ``task``, ``worker``, ``label`` (one row
per judgement, as for the in-memory engine). ``aggregator.fit(ddf)`` dispatches here; so does
:func:`fit_dask`, which also takes ``to_pandas=`` and ``partitioned_by_task=``.

How it runs (DESIGN §8; no home-made distribution, only Dask):

1. one pass collects each partition's workers (first appearance) and labels, so the worker
   codes and class order are exactly those of the in-memory :func:`~._encode.encode`;
2. the frame is shuffled once by ``task`` (skipped when it is already partitioned by task:
   indexed by ``task`` with known divisions, or ``partitioned_by_task=True``), and each
   partition is turned into a :class:`Part` (local task codes, global worker and class codes,
   its sparse incidence matrix) that stays *persisted on the workers*;
3. every EM iteration maps one small function over the parts with the current model
   (confusion matrices / accuracies, class priors: one delayed object, sent once to each
   worker), each part returns its sufficient statistics (``W*K x K`` counts, ``K`` sums, a few
   scalars), and the client adds them up in partition order and runs the M-step. The E-step
   never moves a judgement: tasks never span partitions;
4. the last E-step writes each partition's posteriors and labels, persisted, returned as
   ``probas_`` (Dask DataFrame task x label) and ``labels_`` (Dask Series, name ``"label"``,
   indexed by task); ``to_pandas=True`` computes them. ``priors_``, ``skills_``, ``errors_``,
   ``loss_history_`` and ``n_iter_`` are small and always pandas / plain Python.

Supported: :class:`~.MajorityVote`, :class:`~.DawidSkene`, :class:`~.OneCoinDawidSkene` and
:class:`~.MACE`, with the same parameters, stopping rules and results as in memory (posteriors
equal up to float rounding). Exact ties in the final argmax with a random tie-break are broken
with a generator seeded by ``(random_state, partition)``, so they may differ from the in-memory
fit (MajorityVote's default ``tie_break="first"`` is deterministic and equal). GLAD is not
supported: its M-step is a joint conjugate-gradient over one parameter per task and per worker,
which would need a full pass over the data for each of its ~25 line-search evaluations.

Dask is an optional extra (``pip install cynaps-data[dask]``); it is imported only here, and
this module only when a Dask frame is fitted.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import ValidationError
from ._base import BaseAggregator
from ._encode import REQUIRED_COLUMNS, incidence_matrix

__all__ = ["Cluster", "Part", "fit_dask", "is_dask_collection", "outputs", "part_rng"]


def is_dask_collection(data: Any) -> bool:
    """True for a Dask DataFrame/Series, tested without importing Dask."""
    return type(data).__module__.split(".")[0] in ("dask", "dask_expr")


@dataclass
class Part:
    """One partition's judgements, coded: ``t`` local task codes (``0..n_tasks-1``, first
    appearance in the partition), ``w`` global worker codes, ``y`` class codes (int32 arrays of
    equal length), ``task_names`` (Index, name ``task``), ``gold`` (int64 ``(n_tasks,)``, -1 =
    none, or None), ``a`` the ``n_tasks x (n_workers*K)`` CSR incidence matrix (only for models
    that use it) and ``at`` its CSC transpose (a view)."""

    index: int
    t: np.ndarray
    w: np.ndarray
    y: np.ndarray
    task_names: pd.Index
    n_workers: int
    k: int
    gold: np.ndarray | None = None
    a: sp.csr_matrix | None = None
    at: sp.csc_matrix | None = None

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    @property
    def ty(self) -> np.ndarray:
        return self.t.astype(np.int64) * self.k + self.y

    @property
    def wy(self) -> np.ndarray:
        return self.w.astype(np.int64) * self.k + self.y


# ---- pass 1: what is in the partitions ---------------------------------------------------


def _survey(df: pd.DataFrame) -> tuple[int, dict[str, int], np.ndarray, np.ndarray]:
    """(rows, nulls per column, workers in first-appearance order, distinct labels)."""
    nulls = {c: int(df[c].isna().sum()) for c in REQUIRED_COLUMNS}
    return len(df), nulls, pd.unique(df["worker"].dropna()), pd.unique(df["label"].dropna())


def _label_names(uniques: np.ndarray, labels: Sequence[Hashable] | None) -> pd.Index:
    if labels is not None:
        names = pd.Index(list(labels), name="label")
        if len(names) == 0:
            raise ValidationError("labels= must list at least one class", param="labels")
        if names.has_duplicates:
            dup = names[names.duplicated()].tolist()
            raise ValidationError(f"labels= has duplicate entries {dup}", param="labels")
        unknown = pd.Index(uniques).difference(names) if len(uniques) else []
        if len(unknown):
            raise ValidationError(
                f"answers use labels outside the declared label set {names.tolist()}: "
                f"{list(unknown)[:10]}",
                param="label",
            )
        return names
    try:
        _, names = pd.factorize(uniques, sort=True)
    except TypeError:  # unorderable labels: first appearance, as encode() does
        names = pd.Index(uniques)
    return pd.Index(names, name="label")


# ---- pass 2: coded, persisted partitions ----------------------------------------------------


@dataclass
class _Local:
    """A partition coded on its own (before the global worker and class codes are known):
    local codes into its own first-appearance uniques."""

    index: int
    t: np.ndarray
    task_names: pd.Index
    w: np.ndarray
    workers: Any
    y: np.ndarray
    labels: Any
    rows: int
    nulls: dict[str, int]


def _local_part(df: pd.DataFrame, index: int) -> _Local:
    nulls = {c: int(df[c].isna().sum()) for c in REQUIRED_COLUMNS}
    t, t_names = pd.factorize(df["task"], sort=False)
    w, workers = pd.factorize(df["worker"], sort=False)
    y, labels = pd.factorize(df["label"], sort=False)
    return _Local(
        index,
        np.asarray(t, dtype=np.int32),
        pd.Index(t_names, name="task"),
        np.asarray(w, dtype=np.int32),
        np.asarray(workers),
        np.asarray(y, dtype=np.int32),
        np.asarray(labels),
        len(df),
        nulls,
    )


def _local_survey(lp: _Local) -> tuple[int, dict[str, int], np.ndarray, np.ndarray]:
    """The same summary as :func:`_survey`, from a coded partition."""
    return lp.rows, lp.nulls, lp.workers, lp.labels


def _finish_part(
    lp: _Local,
    worker_names: pd.Index,
    label_names: pd.Index,
    gold: pd.Series | None,
    with_incidence: bool,
) -> Part:
    """Map a partition's local codes onto the global ones and build its :class:`Part`."""
    w32 = worker_names.get_indexer(lp.workers).astype(np.int32)[lp.w]
    y32 = label_names.get_indexer(lp.labels).astype(np.int32)[lp.y]
    n_w, k = len(worker_names), len(label_names)
    task_names = lp.task_names
    g = None
    if gold is not None:
        pos = gold.index.get_indexer(task_names)
        g = np.full(len(task_names), -1, dtype=np.int64)
        has = pos >= 0
        g[has] = gold.to_numpy()[pos[has]]
        if not has.any():
            g = None
    part = Part(lp.index, lp.t, w32, y32, task_names, n_w, k, g)
    if with_incidence:
        part.a = incidence_matrix(lp.t, w32.astype(np.int64), y32, len(task_names), n_w, k)
        part.at = part.a.T
    return part


def _build_part(
    df: pd.DataFrame,
    index: int,
    worker_names: pd.Index,
    label_names: pd.Index,
    gold: pd.Series | None,
    with_incidence: bool,
) -> Part:
    return _finish_part(_local_part(df, index), worker_names, label_names, gold, with_incidence)


def _part_summary(p: Part) -> tuple[int, int, np.ndarray]:
    """(answers, most answers on one task, answers per (worker, class) ``(W, K)``)."""
    per_task = np.bincount(p.t, minlength=p.n_tasks)
    n_wy = np.bincount(p.wy, minlength=p.n_workers * p.k).reshape(p.n_workers, p.k)
    return int(p.t.size), int(per_task.max()) if per_task.size else 0, n_wy.astype(np.float64)


@dataclass
class Cluster:
    """The persisted parts and what every model needs to know about them."""

    parts: list[Any]  # persisted Delayed[Part], in partition order
    worker_names: pd.Index
    label_names: pd.Index
    n_answers: int
    max_per_task: int
    n_wy: np.ndarray  # (W, K) answers per worker and class
    has_gold: bool
    random_state: Any

    @property
    def n_workers(self) -> int:
        return len(self.worker_names)

    @property
    def k(self) -> int:
        return len(self.label_names)

    def map(self, fn: Any, *model: Any) -> list[Any]:
        """``fn(part, *model)`` on every part, on the cluster; the results (small) in partition
        order. ``model`` is wrapped in one delayed object, so it travels once per worker."""
        import dask

        m = dask.delayed(model, pure=True, traverse=False)
        tasks = [dask.delayed(fn, pure=True)(p, m) for p in self.parts]
        return list(dask.compute(*tasks))

    def finish(self, fn: Any, *model: Any) -> tuple[Any, Any]:
        """Run ``fn(part, model) -> (probas DataFrame, labels Series)`` on every part, persisted;
        returns the Dask DataFrame of posteriors and the Dask Series of labels."""
        import dask
        import dask.dataframe as dd

        m = dask.delayed(model, pure=True, traverse=False)
        outs = [dask.delayed(fn, pure=True, nout=2)(p, m) for p in self.parts]
        outs = dask.persist(*outs)
        meta_p = pd.DataFrame(
            {c: pd.Series(dtype="float64") for c in range(self.k)},
        )
        meta_p.columns = self.label_names
        meta_p.index = pd.Index([], name="task", dtype=object)
        meta_l = pd.Series(
            self.label_names.take(np.empty(0, dtype=np.int64)),
            index=meta_p.index,
            name="label",
        )
        probas = dd.from_delayed([o[0] for o in outs], meta=meta_p, verify_meta=False)
        labels = dd.from_delayed([o[1] for o in outs], meta=meta_l, verify_meta=False)
        return probas, labels


def outputs(p: Part, q: np.ndarray, labels: np.ndarray, names: pd.Index) -> tuple:
    """A part's (probas DataFrame, labels Series), both indexed by its task names."""
    probas = pd.DataFrame(q, index=p.task_names, columns=names)
    return probas, pd.Series(names.take(labels), index=p.task_names, name="label")


def part_rng(random_state: Any, index: int) -> np.random.Generator:
    """The tie-breaking generator of partition ``index`` (seeded by ``(random_state, index)``
    when ``random_state`` is an int, else fresh entropy)."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return np.random.default_rng([int(random_state), index])
    return np.random.default_rng()


def _prepare(
    ddf: Any,
    labels: Sequence[Hashable] | None,
    gold: Any,
    min_workers: int,
    with_incidence: bool,
    partitioned_by_task: bool | None,
    random_state: Any,
) -> Cluster:
    import dask

    cols = list(ddf.columns)
    if ddf.index.name == "task" and "task" not in cols:
        cols.append("task")
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise ValidationError(
            f"missing required column(s) {missing}; the data needs columns "
            f"{list(REQUIRED_COLUMNS)} (got {cols})",
            param=missing[0],
        )
    if partitioned_by_task is None:
        partitioned_by_task = ddf.index.name == "task" and bool(ddf.known_divisions)
    if "task" not in ddf.columns:
        ddf = ddf.reset_index()
    ddf = ddf[list(REQUIRED_COLUMNS)]
    local: list[Any] = []
    if partitioned_by_task:  # read the input once: code each partition now, map codes later
        local = list(
            dask.persist(*[dask.delayed(_local_part)(d, i) for i, d in enumerate(ddf.to_delayed())])
        )
        surveys = dask.compute(*[dask.delayed(_local_survey)(lp) for lp in local])
    else:  # worker order is first appearance in the frame's order: survey before the shuffle
        surveys = dask.compute(*[dask.delayed(_survey)(d) for d in ddf.to_delayed()])
    n_rows = sum(s[0] for s in surveys)
    if n_rows == 0:
        raise ValidationError("empty input: the DataFrame has no rows", param="data")
    for c in REQUIRED_COLUMNS:
        n_null = sum(s[1][c] for s in surveys)
        if n_null:
            raise ValidationError(
                f"column {c!r} has {n_null} missing value(s) (NaN/None); drop or fill them "
                "before aggregating",
                param=c,
            )
    worker_names = pd.Index(
        pd.unique(np.concatenate([np.asarray(s[2], dtype=object) for s in surveys])),
        name="worker",
    )
    if len(worker_names) < min_workers:
        raise ValidationError(
            f"only {len(worker_names)} distinct worker(s) in the data; this method needs at "
            f"least {min_workers} to estimate agreement or worker quality",
            param="worker",
        )
    label_uniques = pd.unique(np.concatenate([np.asarray(s[3], dtype=object) for s in surveys]))
    label_names = _label_names(label_uniques, labels)
    # the surveys saw object arrays: give the indexes the frame's own dtypes back
    worker_names = worker_names.astype(ddf["worker"].dtype, copy=False)
    if labels is None:
        label_names = label_names.astype(ddf["label"].dtype, copy=False)
    gold_codes = _gold_codes(gold, label_names)
    wn = dask.delayed(worker_names, pure=True, traverse=False)
    ln = dask.delayed(label_names, pure=True, traverse=False)
    gd = dask.delayed(gold_codes, pure=True, traverse=False)
    if partitioned_by_task:
        parts = [dask.delayed(_finish_part)(lp, wn, ln, gd, with_incidence) for lp in local]
    else:
        parts = [
            dask.delayed(_build_part)(d, i, wn, ln, gd, with_incidence)
            for i, d in enumerate(ddf.shuffle(on="task").to_delayed())
        ]
    parts = list(dask.persist(*parts))
    del local  # the locally coded partitions are released once the parts exist
    sums = dask.compute(*[dask.delayed(_part_summary)(p) for p in parts])
    return Cluster(
        parts=parts,
        worker_names=worker_names,
        label_names=label_names,
        n_answers=sum(s[0] for s in sums),
        max_per_task=max(s[1] for s in sums),
        n_wy=np.sum([s[2] for s in sums], axis=0),
        has_gold=gold_codes is not None and len(gold_codes) > 0,
        random_state=random_state,
    )


def _gold_codes(gold: Any, label_names: pd.Index) -> pd.Series | None:
    """Gold as a Series task -> class code (int64); None if no gold."""
    if gold is None:
        return None
    if isinstance(gold, dict):
        gold = pd.Series(gold)
    if isinstance(gold, pd.DataFrame):
        if not {"task", "label"} <= set(gold.columns):
            raise ValidationError(
                "gold given as a DataFrame must have columns 'task' and 'label'", param="gold"
            )
        gold = gold.set_index("task")["label"]
    if is_dask_collection(gold):
        gold = gold.compute()
    if not isinstance(gold, pd.Series):
        raise ValidationError(
            f"gold must be a Series indexed by task, got {type(gold).__name__}", param="gold"
        )
    gold = gold.dropna()
    gold = gold[~gold.index.duplicated(keep="first")]
    codes = label_names.get_indexer(gold.to_numpy())
    if (codes < 0).any():
        bad = pd.unique(gold.to_numpy()[codes < 0])[:10].tolist()
        raise ValidationError(
            f"gold labels outside the label set {label_names.tolist()}: {bad}", param="gold"
        )
    return pd.Series(codes.astype(np.int64), index=gold.index)


# ---- the entry point --------------------------------------------------------------------------


def fit_dask(
    model: BaseAggregator,
    data: Any,
    gold: Any = None,
    *,
    to_pandas: bool = False,
    partitioned_by_task: bool | None = None,
) -> BaseAggregator:
    """Fit ``model`` on the Dask DataFrame ``data`` (columns ``task``, ``worker``, ``label``) on
    the current Dask scheduler (a ``distributed.Client`` if one is active); returns ``model``.

    ``to_pandas=True`` computes ``labels_``/``probas_`` into pandas. ``partitioned_by_task``:
    True skips the shuffle (every task's answers are already in one partition), None decides
    from the frame (indexed by ``task`` with known divisions)."""
    from . import _dask_em

    fitter = _dask_em.FITTERS.get(type(model).__name__)
    if fitter is None:
        raise ValidationError(
            f"{type(model).__name__} cannot fit a Dask DataFrame; use one of "
            f"{sorted(_dask_em.FITTERS)} or .compute() the frame first",
            param="data",
        )
    cl = _prepare(
        data,
        getattr(model, "labels", None),
        gold,
        model._min_workers,
        fitter.with_incidence,
        partitioned_by_task,
        getattr(model, "random_state", 0),
    )
    res = fitter.fit(model, cl)
    model.classes_ = cl.label_names
    model.probas_, model.labels_ = res.probas, res.labels
    if to_pandas:
        model.probas_, model.labels_ = res.probas.compute(), res.labels.compute()
    model.priors_ = pd.Series(res.priors, index=cl.label_names, name="prior")
    model.skills_ = pd.Series(res.skills, index=cl.worker_names, name="skill")
    if res.errors is not None:
        k = cl.k
        idx = pd.MultiIndex.from_product(
            [cl.worker_names, cl.label_names], names=["worker", "label"]
        )
        model.errors_ = pd.DataFrame(
            res.errors.reshape(cl.n_workers * k, k), index=idx, columns=cl.label_names
        )
    model.loss_history_ = list(res.loss_history)
    model.n_iter_ = int(res.n_iter)
    for name, value in res.extra.items():
        setattr(model, name, value)
    return model
