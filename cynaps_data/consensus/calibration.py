r"""Calibration of posterior probabilities.

Expected calibration error (Guo et al., 2017) with ``n_bins`` equal-width confidence bins:
:math:`\mathrm{ECE} = \sum_b \frac{|B_b|}{n} \, |\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|`,
where the confidence of a task is its top posterior probability and its accuracy is whether the
arg-max class equals the gold label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ValidationError

__all__ = ["expected_calibration_error", "reliability_table"]


def reliability_table(probas: pd.DataFrame, gold: pd.Series, n_bins: int = 10) -> pd.DataFrame:
    """Per-bin ``count``, mean ``confidence`` and ``accuracy`` on the tasks that have gold.

    ``probas``: DataFrame task x label (rows sum to 1). ``gold``: Series indexed by task.
    """
    if not isinstance(probas, pd.DataFrame):
        raise ValidationError("probas must be a DataFrame task x label", param="probas")
    if not isinstance(gold, pd.Series):
        raise ValidationError("gold must be a Series indexed by task", param="gold")
    if n_bins < 1:
        raise ValidationError("n_bins must be >= 1", param="n_bins")
    g = gold.dropna()
    g = g[g.index.isin(probas.index)]
    if g.empty:
        raise ValidationError("no gold task is present in probas", param="gold")
    p = probas.loc[g.index].to_numpy(dtype=np.float64)
    conf = p.max(axis=1)
    pred = probas.columns.to_numpy()[p.argmax(axis=1)]
    correct = (pred == g.to_numpy()).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    cnt = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / cnt
        mean_acc = np.bincount(bins, weights=correct, minlength=n_bins) / cnt
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "lower": edges[:-1],
            "upper": edges[1:],
            "count": cnt,
            "confidence": mean_conf,
            "accuracy": mean_acc,
        }
    )


def expected_calibration_error(probas: pd.DataFrame, gold: pd.Series, n_bins: int = 10) -> float:
    """ECE of ``probas`` on the gold tasks (0 = perfectly calibrated)."""
    tab = reliability_table(probas, gold, n_bins)
    used = tab["count"] > 0
    w = tab.loc[used, "count"] / tab["count"].sum()
    return float((w * (tab.loc[used, "accuracy"] - tab.loc[used, "confidence"]).abs()).sum())
