"""Validation and integer coding of long-format crowd answers.

Data contract
-------------
Every public entry point of :mod:`cynaps_data.consensus` takes a *long* DataFrame with one row
per judgement and (at least) the columns

* ``task``   -- any hashable task id (str, int, ...), not null;
* ``worker`` -- any hashable annotator id, not null;
* ``label``  -- any hashable class label, not null.

Extra columns are ignored. Repeated ``(task, worker)`` rows are kept (each counts as one vote).
Internally the three columns are factorized to dense integer codes:

* task codes ``0..n_tasks-1`` in order of first appearance,
* worker codes ``0..n_workers-1`` in order of first appearance,
* class codes ``0..n_classes-1`` in the declared ``labels=`` order if given, otherwise in sorted
  order of the observed labels (falling back to first appearance when labels are not orderable).

Nothing here ever materialises a task x worker matrix: the models work on the three code arrays
(length ``n_answers``) and on sparse task x (worker, label) incidence matrices.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import ValidationError

__all__ = ["Encoded", "encode", "encode_gold", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("task", "worker", "label")


@dataclass
class Encoded:
    """Integer-coded answers. ``task``/``worker``/``label`` are int64 arrays of equal length."""

    task: np.ndarray
    worker: np.ndarray
    label: np.ndarray
    task_names: pd.Index
    worker_names: pd.Index
    label_names: pd.Index
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_answers(self) -> int:
        return int(self.task.shape[0])

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    @property
    def n_workers(self) -> int:
        return len(self.worker_names)

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    @property
    def codes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, int]:
        """``(task, worker, label, n_tasks, n_workers, n_classes)``: the leading positional
        arguments of every array-level model function (``dawid_skene_arrays`` etc.)."""
        return self.task, self.worker, self.label, self.n_tasks, self.n_workers, self.n_classes

    def incidence(self) -> sp.csr_matrix:
        """Sparse ``n_tasks x (n_workers * n_classes)`` count matrix ``A[t, w*K + y]``."""
        if "A" not in self._cache:
            self._cache["A"] = incidence_matrix(
                self.task, self.worker, self.label, self.n_tasks, self.n_workers, self.n_classes
            )
        return self._cache["A"]

    def incidence_t(self) -> sp.csc_matrix:
        """Transpose of :meth:`incidence`: a CSC view, no copy. ``A.T @ X`` then streams the
        rows of ``X`` in task order and scatters into the small (worker, label) output, ~5x
        faster than a CSR transpose, which gathers rows of ``X`` at random."""
        return self.incidence().T


def incidence_matrix(
    task: np.ndarray, worker: np.ndarray, label: np.ndarray, n_tasks: int, n_workers: int, k: int
) -> sp.csr_matrix:
    """Sparse count matrix with one column per (worker, answered label) pair; duplicates sum."""
    cols = worker.astype(np.int64) * k + label
    data = np.ones(task.shape[0], dtype=np.float64)
    a = sp.csr_matrix((data, (task, cols)), shape=(n_tasks, n_workers * k))
    a.sum_duplicates()
    return a


def incidence_pair(
    task: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_tasks: int,
    n_workers: int,
    k: int,
    given: tuple[sp.csr_matrix, sp.spmatrix] | None = None,
) -> tuple[sp.csr_matrix, sp.spmatrix]:
    """``(A, A.T)`` for the array-level models: ``given`` as is (e.g. an :class:`Encoded`'s cached
    ``(incidence(), incidence_t())``), else built here, ``A.T`` a CSC view (fast ``A.T @ X``,
    see :meth:`Encoded.incidence_t`)."""
    if given is not None:
        a, at = given
        return a, at
    a = incidence_matrix(task, worker, label, n_tasks, n_workers, k)
    return a, a.T


def check_long_frame(
    df: Any,
    columns: Sequence[str] = REQUIRED_COLUMNS,
    not_null: Sequence[str] | None = None,
    what: str = "the data needs",
) -> pd.DataFrame:
    """The checks every aggregator's input passes: a pandas DataFrame with ``columns``, at least
    one row, and no NaN/None in the ``not_null`` columns (default: all of ``columns``); each
    failure is a :class:`ValidationError` naming the column (and the first row's index).
    ``what`` starts the missing-columns message ("ratings need", ...)."""
    if not isinstance(df, pd.DataFrame):
        raise ValidationError(
            f"expected a pandas DataFrame with columns {list(columns)}, got {type(df).__name__}",
            param="data",
        )
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValidationError(
            f"missing required column(s) {missing}; {what} columns {list(columns)} "
            f"(got {list(df.columns)})",
            param=missing[0],
        )
    if len(df) == 0:
        raise ValidationError("empty input: the DataFrame has no rows", param="data")
    for c in columns if not_null is None else not_null:
        n_null = int(df[c].isna().sum())
        if n_null:
            first = df.index[df[c].isna().to_numpy()][0]
            raise ValidationError(
                f"column {c!r} has {n_null} missing value(s) (NaN/None), first at index {first!r}; "
                "drop or fill them before aggregating",
                param=c,
            )
    return df


def _label_index(
    values: pd.Series, labels: Sequence[Hashable] | None
) -> tuple[np.ndarray, pd.Index]:
    if labels is not None:
        if isinstance(labels, (str, bytes)):
            raise ValidationError(
                f"labels= must be a list of classes, got the string {labels!r}", param="labels"
            )
        if isinstance(labels, (set, frozenset)):  # no order: sort, so runs are reproducible
            try:
                labels = sorted(labels)
            except TypeError as exc:
                raise ValidationError(
                    "labels= is an unordered set of unorderable values; pass a list in the "
                    "order you want (ties go to the first)",
                    param="labels",
                ) from exc
        names = pd.Index(list(labels))
        if names.hasnans:
            raise ValidationError("labels= contains a missing value (NaN/None)", param="labels")
        if len(names) == 0:
            raise ValidationError("labels= must list at least one class", param="labels")
        if names.has_duplicates:
            dup = names[names.duplicated()].tolist()
            raise ValidationError(f"labels= has duplicate entries {dup}", param="labels")
        codes = names.get_indexer(values)
        bad = codes < 0
        if bad.any():
            unknown = pd.unique(values[bad])[:10].tolist()
            raise ValidationError(
                f"{int(bad.sum())} answer(s) use labels outside the declared label set "
                f"{names.tolist()}: {unknown}",
                param="label",
            )
        return codes.astype(np.int64), names
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # labels of mixed, unorderable types: keep first appearance
        codes, uniques = pd.factorize(values, sort=False)
    if values.dtype == object:  # 1 and "1" (frames from CSV and from code): not two classes
        text = pd.Index([str(v) for v in uniques])
        if text.has_duplicates:
            first = text[text.duplicated()][0]
            same = [v for v in uniques if str(v) == first][:2]
            raise ValidationError(
                f"column 'label' holds {same[0]!r} ({type(same[0]).__name__}) and {same[1]!r} "
                f"({type(same[1]).__name__}), which would be two different classes; cast the "
                "column to one type",
                param="label",
            )
    return np.asarray(codes, dtype=np.int64), pd.Index(uniques)


def encode(
    df: pd.DataFrame,
    labels: Sequence[Hashable] | None = None,
    *,
    min_workers: int = 2,
) -> Encoded:
    """Validate ``df`` and factorize it to integer codes (see module docstring).

    Raises :class:`~cynaps_data.errors.ValidationError` for a non-DataFrame, missing columns,
    empty input, null ids/labels, labels outside ``labels=`` and fewer than ``min_workers``
    distinct workers.
    """
    df = check_long_frame(df)
    t_codes, t_names = pd.factorize(df["task"], sort=False)
    w_codes, w_names = pd.factorize(df["worker"], sort=False)
    y_codes, y_names = _label_index(df["label"], labels)
    if len(w_names) < min_workers:
        raise ValidationError(
            f"only {len(w_names)} distinct worker(s) in the data; this method needs at least "
            f"{min_workers} to estimate agreement or worker quality",
            param="worker",
        )
    t_idx = pd.Index(t_names, name="task")
    w_idx = pd.Index(w_names, name="worker")
    y_idx = pd.Index(y_names, name="label")
    return Encoded(
        task=np.asarray(t_codes, dtype=np.int64),
        worker=np.asarray(w_codes, dtype=np.int64),
        label=np.asarray(y_codes, dtype=np.int64),
        task_names=t_idx,
        worker_names=w_idx,
        label_names=y_idx,
    )


def check_id_types(unmatched: pd.Index, task_names: pd.Index, param: str = "gold") -> None:
    """Task ids (of ``gold``, ``tasks=``) absent from the answers are fine, unless one is a task
    id of another type (``"7"`` for ``7``): a type mismatch, which would silently drop gold or
    list an answered task as unanswered. Raises ``ValidationError`` naming ``param``."""
    text = pd.Index(task_names.astype(str))
    hit = text.get_indexer(unmatched.astype(str))
    if (hit >= 0).any():
        i = int(np.flatnonzero(hit >= 0)[0])
        gid, tid = unmatched[i], task_names[hit[i]]
        gid, tid = (v.item() if isinstance(v, np.generic) else v for v in (gid, tid))
        raise ValidationError(
            f"{param} names task {gid!r} ({type(gid).__name__}) but the answers call it "
            f"{tid!r} ({type(tid).__name__}); convert {param} to the type of the 'task' column",
            param=param,
        )


def encode_gold(gold: Any, enc: Encoded) -> np.ndarray:
    """Map gold labels onto task codes: returns an int64 array of length ``n_tasks`` holding the
    class code of the gold label, or ``-1`` where the task has no gold.

    ``gold`` is a Series indexed by task (or a DataFrame with ``task`` and ``label`` columns, or a
    dict task -> label). Gold for tasks absent from the answers is ignored; a gold label outside
    the class set raises :class:`ValidationError`.
    """
    if gold is None:
        return np.full(enc.n_tasks, -1, dtype=np.int64)
    if isinstance(gold, dict):
        gold = pd.Series(gold)
    if isinstance(gold, pd.DataFrame):
        if not {"task", "label"} <= set(gold.columns):
            raise ValidationError(
                "gold given as a DataFrame must have columns 'task' and 'label'", param="gold"
            )
        gold = gold.set_index("task")["label"]
    if not isinstance(gold, pd.Series):
        raise ValidationError(
            f"gold must be a Series indexed by task, got {type(gold).__name__}", param="gold"
        )
    gold = gold.dropna()
    if gold.index.has_duplicates:
        n_labels = gold.groupby(level=0, sort=False).nunique()
        if (n_labels > 1).any():
            task = n_labels.index[(n_labels > 1).to_numpy()][0]
            raise ValidationError(
                f"gold gives task {task!r} different labels "
                f"{pd.unique(gold.loc[[task]].to_numpy()).tolist()}",
                param="gold",
            )
        gold = gold[~gold.index.duplicated(keep="first")]
    pos = enc.task_names.get_indexer(gold.index)
    keep = pos >= 0
    if not keep.all() and gold.index.inferred_type != enc.task_names.inferred_type:
        check_id_types(gold.index[~keep], enc.task_names)
    g_codes = enc.label_names.get_indexer(gold.to_numpy()[keep])
    if (g_codes < 0).any():
        bad = pd.unique(gold.to_numpy()[keep][g_codes < 0])[:10].tolist()
        raise ValidationError(
            f"gold labels outside the label set {enc.label_names.tolist()}: {bad}", param="gold"
        )
    out = np.full(enc.n_tasks, -1, dtype=np.int64)
    out[pos[keep]] = g_codes
    return out
