"""Rating aggregation accuracy on Snow et al. 2008 (7 affect scales + word similarity): our
default (the ``rating`` type's default method, ``auto`` = RaterModel, called through the type as
``project.to_pandas(method="auto")`` does) beside the raters' mean and median, all computed in
this run.

Run from the repo root:

    python benchmarks/types_rating.py
    python benchmarks/types_rating.py --grid     # also the neighbouring settings of the model

Per scale: Pearson (and Spearman) correlation of each aggregate with the gold scores (the
SemEval-2007 expert average; word similarity's gold is on another scale, so only correlations
are meaningful). No gold is used in fitting and the model has one setting for all scales. The
model is deterministic (no random initialisation), so there is no spread over seeds; the
``--grid`` table shows how the figures move with the shrinkage priors instead. Also prints
Krippendorff's alpha (interval, ordinal) of ours beside the ``krippendorff`` package.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cynaps_data.consensus.rating import (  # noqa: E402
    RatingMean,
    RatingMedian,
    rating_alpha,
)
from cynaps_data.types import get_type  # noqa: E402

DATA = Path("/work/shared/data/rating/snow2008_affect_wordsim")


def load() -> dict[str, tuple[pd.DataFrame, pd.Series]]:
    r = pd.read_csv(DATA / "ratings.csv")
    g = pd.read_csv(DATA / "gold.csv")
    out = {}
    for dim, part in r.groupby("dimension", sort=True):
        df = part.rename(columns={"rating": "value"})[["task", "worker", "value"]]
        gold = g[g["dimension"] == dim].set_index("task")["gold"]
        gold.index = gold.index.astype(str)
        df = df.assign(task=df["task"].astype(str))
        out[str(dim)] = (df.reset_index(drop=True), gold)
    return out


def pearson(score: pd.Series, gold: pd.Series) -> float:
    return float(np.corrcoef(score.to_numpy(), gold.reindex(score.index).to_numpy())[0, 1])


def through_type(df: pd.DataFrame, model_params: dict) -> pd.Series:
    """The rating type's default client aggregation (``to_pandas(method="auto")``), the
    project's config being the data's integer scale (0..100, valence -100..100, 0..10)."""
    rating = get_type("rating")
    config = rating.validate_config({"min": int(df["value"].min()), "max": int(df["value"].max())})
    votes = df.rename(columns={"value": "label"}).assign(label=lambda d: d["label"].astype("int64"))
    method = rating.default_method
    return rating.aggregate(votes, method, config, **model_params)[f"{method}_score"]


def run(data: dict, model_params: dict) -> pd.DataFrame:
    rows = []
    for dim, (df, gold) in data.items():
        row = {"scale": dim}
        for name, model in (
            ("mean", RatingMean()),
            ("median", RatingMedian()),
            ("ours", None),
        ):
            s = through_type(df, model_params) if model is None else model.fit_predict(df)
            row[name] = pearson(s, gold)
            row[name + "_spearman"] = float(spearmanr(s, gold.reindex(s.index)).statistic)
        rows.append(row)
    return pd.DataFrame(rows).set_index("scale")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", action="store_true")
    args = ap.parse_args()
    data = load()
    t0 = time.perf_counter()
    res = run(data, {})
    dt = time.perf_counter() - t0
    print("Snow et al. 2008: Pearson with gold (Spearman in brackets), RaterModel defaults")
    print(f"{'scale':10s} {'mean':>16s} {'median':>16s} {'ours':>16s} {'ours-mean':>10s}")
    for dim, r in res.iterrows():
        print(
            f"{dim:10s} {r['mean']:.4f} ({r['mean_spearman']:.4f}) "
            f"{r['median']:.4f} ({r['median_spearman']:.4f}) "
            f"{r['ours']:.4f} ({r['ours_spearman']:.4f}) {r['ours'] - r['mean']:+10.4f}"
        )
    m = res.mean()
    diff = res["ours"] - res["mean"]
    print(
        f"{'MEAN':10s} {m['mean']:.4f} ({m['mean_spearman']:.4f}) "
        f"{m['median']:.4f} ({m['median_spearman']:.4f}) "
        f"{m['ours']:.4f} ({m['ours_spearman']:.4f}) {m['ours'] - m['mean']:+10.4f}"
    )
    print(
        f"ratio ours/mean on the mean over scales: {m['ours'] / m['mean']:.4f}; worst scale "
        f"{diff.idxmin()} {diff.min():+.4f} (targets: mean over scales > raters' mean, no scale "
        f"more than 0.01 below) -> {'met' if m['ours'] > m['mean'] and diff.min() >= -0.01 else 'MISSED'}"
    )
    print(f"(all three methods on all 8 scales: {dt:.2f} s)")

    try:
        import krippendorff
    except ImportError:  # pragma: no cover
        krippendorff = None
    if krippendorff is not None:
        worst = 0.0
        for _dim, (df, _gold) in data.items():
            mat = df.pivot_table(index="worker", columns="task", values="value", aggfunc="first")
            for level in ("interval", "ordinal"):
                ref = krippendorff.alpha(
                    mat.to_numpy(),
                    level_of_measurement=level,
                    value_domain=np.sort(df["value"].unique()) if level == "ordinal" else None,
                )
                worst = max(worst, abs(ref - rating_alpha(df, level)))
        print(
            f"Krippendorff alpha (interval, ordinal) on 8 scales: max |ours - krippendorff| "
            f"= {worst:.2e} (target <= 1e-9)"
        )

    if args.grid:
        print("\nNeighbouring settings (mean Pearson over scales, worst scale minus mean):")
        for sp_ in (10.0, 20.0, 40.0, 80.0, math.inf):
            for bp in (20.0, 100.0, math.inf):
                for rp in (None, 20.0, 100.0):
                    r = run(data, dict(scale_prior=sp_, bias_prior=bp, reliability_prior=rp))
                    d = r["ours"] - r["mean"]
                    print(
                        f"  scale_prior={sp_:<5} bias_prior={bp:<5} reliability_prior="
                        f"{rp!s:<5}: {r['ours'].mean():.4f} (mean {r['mean'].mean():.4f}), "
                        f"worst {d.min():+.4f} ({d.idxmin()})",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
