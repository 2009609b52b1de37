"""Per-task metadata and per-annotator quality tables, for exports and the platform.

:func:`task_metadata` returns one row per task (index ``task``) with

=====================  ====================================================================
``label``              consensus label (majority vote, or the given ``method``)
``agreement``          top vote share: max over classes of the share of answers (float 0..1)
``n_annotations``      number of answers on the task (int)
``vote_distribution``  dict label -> share of answers (only labels that received votes), keyed
                       by the label's text (``str(label)``: 0 -> "0", so the table can be
                       written to parquet, feather or ``datasets``)
``entropy``            Shannon entropy of the vote shares, in bits (0 = unanimous)
``confidence``         posterior probability of ``label`` under the method (MV: its share)
=====================  ====================================================================

:func:`annotator_table` returns one row per worker (index ``worker``) with ``n_judgements``,
``agreement_with_consensus`` (share of the worker's answers equal to the task's consensus),
``gold_accuracy`` (accuracy on gold tasks, NaN without gold), ``n_gold`` and ``skill`` (the
worker's expected accuracy under a gold-aware Dawid-Skene fit, NaN with a single worker).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ValidationError
from ._base import BaseAggregator
from ._encode import encode, encode_gold
from .dawid_skene import dawid_skene_arrays
from .majority_vote import majority_vote_arrays

__all__ = ["task_metadata", "annotator_table"]


def task_metadata(
    df: pd.DataFrame,
    labels: Sequence[Hashable] | None = None,
    method: str | BaseAggregator | None = None,
    gold: Any = None,
    random_state: Any = 0,
) -> pd.DataFrame:
    """Per-task consensus metadata (see module docstring). ``method=None`` uses majority vote
    with seeded random tie-breaking; otherwise any name accepted by
    :func:`cynaps_data.consensus.aggregate` (e.g. ``"auto"``, ``"ds"``) or a fitted-or-not
    aggregator instance."""
    enc = encode(df, labels, min_workers=1)
    k = enc.n_classes
    counts = (
        np.bincount(enc.task * k + enc.label, minlength=enc.n_tasks * k)
        .reshape(enc.n_tasks, k)
        .astype(np.float64)
    )
    n = counts.sum(axis=1)
    shares = counts / n[:, None]
    g = encode_gold(gold, enc)
    if method is None:
        res = majority_vote_arrays(
            *enc.codes, random_state=random_state, gold=g, compute_skills=False
        )
        lab_codes, post = res.labels, res.probas
    else:
        from . import get_aggregator  # local import: the package imports this module

        model = get_aggregator(method)
        model.fit(df, gold=gold)
        probas = model.probas_.reindex(
            index=enc.task_names, columns=enc.label_names, fill_value=0.0
        )
        post = probas.to_numpy(dtype=np.float64)
        lab_codes = enc.label_names.get_indexer(model.labels_.reindex(enc.task_names))
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(shares > 0, shares * np.log2(np.where(shares > 0, shares, 1.0)), 0.0).sum(
            axis=1
        )
    names = enc.label_names
    # str keys: Arrow (parquet, feather, datasets) only writes dicts keyed by strings
    keys = [v if isinstance(v, str) else str(v) for v in names]
    if len(set(keys)) < len(keys):
        seen: dict[str, Hashable] = {}
        for key, v in zip(keys, names, strict=True):
            if key in seen:
                raise ValidationError(
                    f"labels {seen[key]!r} and {v!r} are different values with the same text "
                    f"{key!r}; cast the label column to one type before aggregating",
                    param="label",
                )
            seen[key] = v
    rows, cols = np.nonzero(counts)
    dist: list[dict[str, float]] = [{} for _ in range(enc.n_tasks)]
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        dist[r][keys[c]] = float(shares[r, c])
    out = pd.DataFrame(
        {
            "label": names.take(lab_codes),
            "agreement": shares.max(axis=1),
            "n_annotations": n.astype(np.int64),
            "vote_distribution": dist,
            "entropy": ent + 0.0,
            "confidence": post[np.arange(enc.n_tasks), lab_codes],
        },
        index=enc.task_names,
    )
    return out


def annotator_table(
    df: pd.DataFrame,
    gold: Any = None,
    consensus: pd.Series | None = None,
    labels: Sequence[Hashable] | None = None,
    random_state: Any = 0,
) -> pd.DataFrame:
    """Per-annotator quality table (see module docstring).

    ``gold``: Series indexed by task with true labels (optional). ``consensus``: Series indexed
    by task with consensus labels (optional; default: majority vote, gold tasks set to gold).
    """
    enc = encode(df, labels, min_workers=1)
    g = encode_gold(gold, enc)
    n_w = enc.n_workers
    if consensus is None:
        cons = majority_vote_arrays(
            *enc.codes, random_state=random_state, gold=g, compute_skills=False
        ).labels
    else:
        if not isinstance(consensus, pd.Series):
            raise ValidationError("consensus must be a Series indexed by task", param="consensus")
        c = consensus.reindex(enc.task_names)
        cons = enc.label_names.get_indexer(c.to_numpy())  # -1 where missing / unknown
    n_j = np.bincount(enc.worker, minlength=n_w)
    has_c = cons[enc.task] >= 0
    agree = np.bincount(
        enc.worker,
        weights=(has_c & (cons[enc.task] == enc.label)).astype(np.float64),
        minlength=n_w,
    )
    n_c = np.bincount(enc.worker, weights=has_c.astype(np.float64), minlength=n_w)
    gt = g[enc.task]
    on_gold = gt >= 0
    n_gold = np.bincount(enc.worker, weights=on_gold.astype(np.float64), minlength=n_w)
    gold_ok = np.bincount(
        enc.worker, weights=(on_gold & (gt == enc.label)).astype(np.float64), minlength=n_w
    )
    if n_w >= 2:
        skill = dawid_skene_arrays(
            *enc.codes,
            gold=g,
            random_state=random_state,
            incidence=(enc.incidence(), enc.incidence_t()),
        ).skills
    else:
        skill = np.full(n_w, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = pd.DataFrame(
            {
                "n_judgements": n_j.astype(np.int64),
                "agreement_with_consensus": np.where(n_c > 0, agree / n_c, np.nan),
                "gold_accuracy": np.where(n_gold > 0, gold_ok / n_gold, np.nan),
                "n_gold": n_gold.astype(np.int64),
                "skill": skill,
            },
            index=enc.worker_names,
        )
    return out
