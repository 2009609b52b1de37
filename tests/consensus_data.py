"""Shared helpers for the consensus tests and benchmark: dataset loading and crowd-kit baselines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

CROWD_DIR = Path(
    os.environ.get("CYNAPS_CROWD_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "crowd"
)

DATASETS = [
    "adult_s5",
    "bluebirds",
    "dog",
    "face",
    "product",
    "relevance_s4",
    "rte",
    "sentiment_polarity",
    "temp",
    "trec2010",
    "web",
    "zencrowd_all",
    "zencrowd_in",
    "zencrowd_us",
]

METHODS = ["MV", "DS", "ODS", "GLAD", "MACE"]

# crowd-kit 1.4.2 accuracy on the gold tasks, published in shared/data/crowd/BASELINE.md
# (duplicates kept; GLAD timed out on trec2010 -> NaN).
CROWDKIT = {
    "adult_s5": (0.7628, 0.7658, 0.7087, 0.7598, 0.7598),
    "bluebirds": (0.7593, 0.8889, 0.5833, 0.7222, 0.7500),
    "dog": (0.8116, 0.8426, 0.8302, 0.8340, 0.8302),
    "face": (0.6336, 0.6404, 0.6113, 0.6301, 0.6353),
    "product": (0.8966, 0.9397, 0.9084, 0.9283, 0.9290),
    "relevance_s4": (0.5357, 0.6173, 0.2578, 0.5646, 0.4942),
    "rte": (0.8750, 0.9275, 0.9250, 0.9250, 0.9250),
    "sentiment_polarity": (0.9320, 0.9600, 0.9490, 0.9480, 0.9560),
    "temp": (0.9394, 0.9416, 0.9394, 0.9351, 0.9394),
    "trec2010": (0.6611, 0.7015, 0.5604, np.nan, 0.5855),
    "web": (0.6883, 0.8292, 0.7486, 0.8217, 0.8296),
    "zencrowd_all": (0.8255, 0.8025, 0.8623, 0.8304, 0.8466),
    "zencrowd_in": (0.7368, 0.7564, 0.7926, 0.7716, 0.7730),
    "zencrowd_us": (0.8676, 0.8294, 0.9039, 0.8804, 0.8299),
}
CROWDKIT_BEST_MEAN = float(np.mean([np.nanmax(v) for v in CROWDKIT.values()]))


def baseline(dataset: str, method: str) -> float:
    return CROWDKIT[dataset][METHODS.index(method)]


def load(name: str) -> tuple[pd.DataFrame, pd.Series]:
    """``labels.csv`` as a long frame (ids as str) and the gold Series indexed by task."""
    df = pd.read_csv(CROWD_DIR / name / "labels.csv", dtype={"task": str, "worker": str})
    gold = pd.read_csv(CROWD_DIR / name / "truth.csv", dtype={"task": str})
    return df, gold.set_index("task")["label"]


def accuracy(labels: pd.Series, gold: pd.Series) -> float:
    g = gold[gold.index.isin(labels.index)]
    return float((labels.loc[g.index].to_numpy() == g.to_numpy()).mean())
