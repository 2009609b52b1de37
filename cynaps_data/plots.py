"""Plots of typed exports, in one place (matplotlib, imported when a plot is drawn).

Every function takes the frames :meth:`Project.to_pandas` / :meth:`Project.annotator_stats`
return, draws on ``ax`` (a new figure when ``None``) and returns the ``Axes``.

* :func:`agreement_histogram` — distribution of per-task ``agreement`` (coloured by ``status``);
* :func:`label_distribution` — count per label of one or more label columns, side by side;
* :func:`annotator_quality` — each annotator's quality against their volume;
* :func:`confusion_matrix` — the platform ``label`` against a re-aggregation or gold;
* :func:`reliability_diagram` — accuracy against confidence of posteriors on gold tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _axes(ax: Axes | None, figsize: tuple[float, float] = (6, 4)) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _labels(frame: pd.DataFrame, column: str) -> list:
    dtype = frame[column].dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return list(dtype.categories)
    return list(
        (frame.attrs.get("cynaps") or {}).get("labels") or pd.unique(frame[column].dropna())
    )


def agreement_histogram(
    frame: pd.DataFrame, column: str = "agreement", *, bins: int = 10, ax: Axes | None = None
) -> Axes:
    """Histogram of per-task agreement (0..1), stacked by task ``status`` when present."""
    ax = _axes(ax)
    edges = np.linspace(0, 1, bins + 1)
    values = frame[column].astype("float64")
    if "status" in frame:
        groups = [
            (str(s), values[frame["status"].astype(str) == str(s)].dropna())
            for s in pd.unique(frame["status"].astype(str))
        ]
        ax.hist([g for _, g in groups], bins=edges, stacked=True, label=[s for s, _ in groups])
        ax.legend(title="status")
    else:
        ax.hist(values.dropna(), bins=edges)
    ax.set_xlabel(f"{column} (top answer's share of votes)")
    ax.set_ylabel("tasks")
    ax.set_title(f"Agreement over {len(frame)} tasks")
    return ax


def label_distribution(
    frame: pd.DataFrame,
    columns: str | Sequence[str] = "label",
    *,
    normalize: bool = False,
    ax: Axes | None = None,
) -> Axes:
    """Bar chart of how often each label occurs, one group of bars per label column."""
    ax = _axes(ax)
    cols = [columns] if isinstance(columns, str) else list(columns)
    labels = _labels(frame, cols[0])
    width = 0.8 / len(cols)
    x = np.arange(len(labels))
    for i, col in enumerate(cols):
        counts = (
            frame[col]
            .astype(object)
            .value_counts(normalize=normalize)
            .reindex(labels, fill_value=0)
        )
        ax.bar(x + i * width - 0.4 + width / 2, counts.to_numpy(), width, label=col)
    ax.set_xticks(x, [str(v) for v in labels], rotation=30, ha="right")
    ax.set_ylabel("share of tasks" if normalize else "tasks")
    ax.set_title("Label distribution")
    if len(cols) > 1:
        ax.legend()
    return ax


def annotator_quality(
    stats: pd.DataFrame,
    quality: str | None = None,
    volume: str = "n_judgements",
    *,
    ax: Axes | None = None,
    annotate: bool = True,
) -> Axes:
    """Scatter of each annotator's quality against volume (``annotator_stats()`` rows).

    ``quality`` defaults to ``gold_accuracy`` when any annotator has gold answers, else
    ``agreement_with_consensus``.
    """
    ax = _axes(ax)
    if quality is None:
        has_gold = "gold_accuracy" in stats and stats["gold_accuracy"].notna().any()
        quality = "gold_accuracy" if has_gold else "agreement_with_consensus"
    ax.scatter(stats[volume], stats[quality])
    if annotate:
        for name, row in stats.iterrows():
            ax.annotate(str(name)[-8:], (row[volume], row[quality]), fontsize=7, alpha=0.7)
    ax.set_xlabel(volume)
    ax.set_ylabel(quality)
    ax.set_ylim(0, 1.05)
    ax.set_title("Annotator quality vs volume")
    return ax


def confusion_matrix(
    frame: pd.DataFrame,
    other: str = "gold",
    reference: str = "label",
    *,
    normalize: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Heat map of ``reference`` (rows: the platform's label) against ``other`` (columns: a
    re-aggregation such as ``dawid_skene_label``, or ``gold``), over tasks where both exist.
    ``normalize`` shows row shares; the cell text is the count."""
    ax = _axes(ax, (5, 4.5))
    labels = _labels(frame, reference)
    both = frame[[reference, other]].dropna()
    table = pd.crosstab(
        pd.Categorical(both[reference].astype(object), categories=labels),
        pd.Categorical(both[other].astype(object), categories=labels),
        dropna=False,
    ).to_numpy()
    shown = table / np.maximum(table.sum(axis=1, keepdims=True), 1) if normalize else table
    image = ax.imshow(shown, cmap="Blues", vmin=0)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                str(table[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shown[i, j] > shown.max() / 2 else "black",
            )
    ticks = [str(v) for v in labels]
    ax.set_xticks(range(len(labels)), ticks, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), ticks)
    ax.set_xlabel(other)
    ax.set_ylabel(reference)
    agree = np.trace(table) / max(table.sum(), 1)
    ax.set_title(f"{reference} vs {other}: {agree:.1%} agree ({table.sum()} tasks)")
    ax.figure.colorbar(image, ax=ax, fraction=0.046)
    return ax


def reliability_diagram(
    probas: pd.DataFrame | dict[str, pd.DataFrame],
    gold: pd.Series,
    *,
    n_bins: int = 15,
    ax: Axes | None = None,
) -> Axes:
    """Reliability diagram: per confidence bin, the accuracy on gold tasks against the mean top
    posterior (the diagonal is perfect calibration); the legend gives each curve's ECE.

    ``probas``: DataFrame task x label (e.g. ``aggregate(df).probas``), or a dict name ->
    DataFrame to compare several; ``gold``: Series indexed by task. Bins with no task are skipped.
    """
    from .consensus.calibration import expected_calibration_error, reliability_table

    ax = _axes(ax, (5, 5))
    curves = probas if isinstance(probas, dict) else {"posterior": probas}
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    for name, frame in curves.items():
        tab = reliability_table(frame, gold, n_bins)
        used = tab[tab["count"] > 0]
        ece = expected_calibration_error(frame, gold, n_bins)
        ax.plot(used["confidence"], used["accuracy"], marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("confidence (top posterior)")
    ax.set_ylabel("accuracy on gold")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"Reliability ({n_bins} bins)")
    return ax
