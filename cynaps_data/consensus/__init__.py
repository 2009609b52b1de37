"""Consensus and quality engine: label aggregation, agreement and per-task / per-annotator metadata.

Pure numpy/scipy underneath (integer-coded answers, sparse incidence matrices, never a dense
task x worker matrix); pandas only at the edges. Input is a long DataFrame with columns
``task``, ``worker``, ``label`` (one row per judgement; ids and labels any hashable).

Quick start::

    from cynaps_data.consensus import aggregate
    res = aggregate(df)               # method="auto": the robust default (see docs/consensus.md)
    res.labels                        # Series indexed by task, name "label"
    res.probas                        # DataFrame task x label, rows sum to 1

Aggregators (sklearn-style, ``fit(df, gold=None)`` / ``fit_predict`` / ``fit_predict_proba``):
:class:`MajorityVote`, :class:`DawidSkene`, :class:`OneCoinDawidSkene`, :class:`GLAD`,
:class:`MACE`, :class:`EBCC`, :class:`ConsensusEnsemble` (``"auto"``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import pandas as pd

from ..errors import ValidationError
from ._base import BaseAggregator
from .adaptive import expected_gain, next_judgements
from .agreement import (
    cohen_kappa,
    cohen_kappa_matrix,
    fleiss_kappa,
    krippendorff_alpha,
    krippendorff_alpha_sets,
    percent_agreement,
    set_agreement,
)
from .calibration import expected_calibration_error
from .dask import fit_dask
from .dawid_skene import DawidSkene, OneCoinDawidSkene
from .ebcc import EBCC
from .ensemble import ConsensusEnsemble
from .glad import GLAD
from .mace import MACE
from .majority_vote import MajorityVote
from .metadata import annotator_table, task_metadata
from .multilabel import BinaryRelevance, MultiLabelModel, aggregate_multilabel, share_consensus
from .pairwise import BradleyTerry, aggregate_pairwise
from .rating import (
    RaterModel,
    RatingMean,
    RatingMedian,
    aggregate_ratings,
    rating_alpha,
    rating_consensus,
)

__all__ = [
    "AggregateResult",
    "ConsensusEnsemble",
    "DawidSkene",
    "EBCC",
    "GLAD",
    "MACE",
    "METHODS",
    "MajorityVote",
    "OneCoinDawidSkene",
    "aggregate",
    "annotator_table",
    "cohen_kappa",
    "cohen_kappa_matrix",
    "expected_calibration_error",
    "expected_gain",
    "fit_dask",
    "fleiss_kappa",
    "get_aggregator",
    "krippendorff_alpha",
    "next_judgements",
    "percent_agreement",
    "task_metadata",
    # multi-label and rating aggregation (issue 13)
    "BinaryRelevance",
    "MultiLabelModel",
    "aggregate_multilabel",
    "share_consensus",
    "RaterModel",
    "RatingMean",
    "RatingMedian",
    "aggregate_ratings",
    "rating_alpha",
    "rating_consensus",
    "krippendorff_alpha_sets",
    "set_agreement",
    # pairwise comparisons (issue 16)
    "BradleyTerry",
    "aggregate_pairwise",
]

#: method name -> aggregator class (names are case-insensitive; "-" and "_" are equivalent)
METHODS: dict[str, type[BaseAggregator]] = {
    "auto": ConsensusEnsemble,
    "ensemble": ConsensusEnsemble,
    "mv": MajorityVote,
    "majority_vote": MajorityVote,
    "ds": DawidSkene,
    "dawid_skene": DawidSkene,
    "one_coin": OneCoinDawidSkene,
    "one_coin_dawid_skene": OneCoinDawidSkene,
    "ods": OneCoinDawidSkene,
    "glad": GLAD,
    "mace": MACE,
    "ebcc": EBCC,
}


def get_aggregator(method: str | BaseAggregator = "auto", **params: Any) -> BaseAggregator:
    """Return an unfitted aggregator for ``method`` (a name from :data:`METHODS`, a class name
    such as ``"DawidSkene"``, or an aggregator instance, returned as is)."""
    if isinstance(method, BaseAggregator):
        return method.set_params(**params) if params else method
    if not isinstance(method, str):
        raise ValidationError(
            f"method must be a string, got {type(method).__name__}", param="method"
        )
    key = method.strip().lower().replace("-", "_")
    cls = METHODS.get(key)
    if cls is None:
        by_class = {c.__name__.lower(): c for c in METHODS.values()}
        cls = by_class.get(key.replace("_", ""))
    if cls is None:
        raise ValidationError(
            f"unknown method {method!r}; choose one of {sorted(METHODS)}", param="method"
        )
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValidationError(f"bad parameters for {cls.__name__}: {exc}", param="method") from exc


class AggregateResult(NamedTuple):
    """``labels``: Series indexed by task (name "label"); ``probas``: DataFrame task x label."""

    labels: pd.Series
    probas: pd.DataFrame


def aggregate(
    df: pd.DataFrame,
    method: str | BaseAggregator = "auto",
    *,
    labels: Sequence[Hashable] | None = None,
    gold: Any = None,
    **params: Any,
) -> AggregateResult:
    """One-call consensus: ``labels, probas = aggregate(df, method="auto")``.

    ``df`` has columns ``task``, ``worker``, ``label``. ``labels=`` fixes the class set/order,
    ``gold`` (Series indexed by task) fixes known tasks, extra keyword arguments go to the
    aggregator (e.g. ``n_iter=50``).
    """
    if labels is not None:
        params["labels"] = labels
    model = get_aggregator(method, **params)
    model.fit(df, gold=gold)
    return AggregateResult(model.labels_, model.probas_)
