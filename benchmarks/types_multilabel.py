"""Multi-label aggregation accuracy: our default (MultiLabelModel) beside crowd-kit's
BinaryRelevance(MajorityVote), both computed in this run.

Run from the repo root (crowd-kit installed, e.g. with the test extra):

    python benchmarks/types_multilabel.py                # 20 split-half seeds, 5 synthetic seeds
    python benchmarks/types_multilabel.py --seeds 50 --synthetic-seeds 10

1. Real data, no full gold (CrowdTruth medical relation extraction, 15 workers a sentence,
   ``/work/shared/data/multilabel/crowdtruth_medical_relex``): split-half agreement. Per seed,
   each item's workers are split at random into halves of floor(n/2) and ceil(n/2); each
   method aggregates each half (all items at once) and the two halves' answers are compared
   (mean Jaccard over items, two empty sets count 1; exact match). Mean and sd over seeds.
   Also the mean number of labels per item (full pool and halves), so that an aggregator that
   answers "nothing" cannot win.
2. Synthetic crowds with known truth: label sets drawn from a few item clusters (correlated
   labels), annotators with their own miss rate and their own rate of extra labels. Several
   shapes and seeds; exact match and mean Jaccard against the truth.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cynaps_data.consensus.multilabel import (  # noqa: E402
    MultiLabelModel,
    encode_label_sets,
    share_consensus,
)

DATA = Path("/work/shared/data/multilabel/crowdtruth_medical_relex/judgments.csv")


def jaccard_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Jaccard of two bool matrices; two empty rows give 1."""
    inter = (a & b).sum(axis=1)
    union = (a | b).sum(axis=1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def synthetic_crowd(
    n_items: int = 1000,
    n_labels: int = 8,
    per_item: int = 5,
    n_workers: int = 60,
    n_clusters: int = 4,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A synthetic multi-label crowd with known truth.

    Truth: item cluster ``g ~ Cat(pi)``; label ``l`` present with probability ``theta[g, l]``
    (each cluster has 1-3 typical labels at 0.85 and the rest at 0.03): correlated labels.
    Workers: each misses a true label with its own rate (uniform 0.1-0.6) and adds each absent
    label with its own rate (uniform 0.0-0.15); ``per_item`` distinct workers per item.
    Returns ``(answers, truth)``: answers ``task, worker, labels`` (lists of label names);
    truth DataFrame task x label of bool."""
    rng = np.random.default_rng(seed)
    names = [f"L{j}" for j in range(n_labels)]
    theta = np.full((n_clusters, n_labels), 0.03)
    for g in range(n_clusters):
        theta[g, rng.choice(n_labels, rng.integers(1, 4), replace=False)] = 0.85
    pi = rng.dirichlet(np.full(n_clusters, 3.0))
    g = rng.choice(n_clusters, n_items, p=pi)
    truth = rng.random((n_items, n_labels)) < theta[g]
    miss = rng.uniform(0.1, 0.6, n_workers)
    add = rng.uniform(0.0, 0.15, n_workers)
    task = np.repeat(np.arange(n_items), per_item)
    worker = np.concatenate(
        [rng.choice(n_workers, per_item, replace=False) for _ in range(n_items)]
    )
    z = truth[task]
    u = rng.random(z.shape)
    y = np.where(z, u >= miss[worker][:, None], u < add[worker][:, None])
    arr = np.asarray(names, dtype=object)
    answers = pd.DataFrame(
        {"task": task, "worker": worker, "labels": [arr[row].tolist() for row in y]}
    )
    return answers, pd.DataFrame(truth, columns=names)


def crowdkit_br_mv(df: pd.DataFrame, label_names: pd.Index, tasks: pd.Index) -> np.ndarray:
    """crowd-kit BinaryRelevance(MajorityVote) as a bool task x label matrix (tasks' order)."""
    from crowdkit.aggregation import BinaryRelevance as CKBR
    from crowdkit.aggregation import MajorityVote as CKMV

    ck = CKBR(CKMV()).fit_predict(df.rename(columns={"labels": "label"}))
    ck = ck.reindex(tasks)
    out = np.zeros((len(tasks), len(label_names)), dtype=bool)
    pos = {n: j for j, n in enumerate(label_names)}
    for i, labs in enumerate(ck.to_numpy()):
        if isinstance(labs, (list, tuple, set, np.ndarray)):
            for lab in labs:
                out[i, pos[lab]] = True
    return out


def ours(df: pd.DataFrame, label_names: pd.Index, **params) -> tuple[np.ndarray, pd.Index]:
    m = MultiLabelModel(labels=list(label_names), **params).fit(df)
    return m.multi_hot_.to_numpy(), m.multi_hot_.index


def share_rule(df: pd.DataFrame, label_names: pd.Index, tasks: pd.Index) -> np.ndarray:
    """Per-label vote share > 0.5 (BASELINE.md's "share > 0.5"; = our BinaryRelevance("mv"))."""
    res = share_consensus(df, labels=list(label_names), threshold=0.5, strict=True)
    return res.shares.reindex(tasks).to_numpy() > 0.5


def load_relex() -> pd.DataFrame:
    j = pd.read_csv(DATA).drop_duplicates(["task", "worker"], keep="first")
    return pd.DataFrame(
        {"task": j["task"], "worker": j["worker"], "labels": j["labels"].str.split("|")}
    )


def split_half(df: pd.DataFrame, seed: int) -> np.ndarray:
    """Bool mask: half A (floor(n/2) random workers of each item)."""
    rng = np.random.default_rng(seed)
    t = pd.factorize(df["task"])[0]
    u = rng.random(len(t))
    order = np.lexsort((u, t))
    n = np.bincount(t)
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    rank = np.empty(len(t), dtype=np.int64)
    rank[order] = np.arange(len(t)) - start[t[order]]
    return rank < (n // 2)[t]


def real_data(seeds: int, params: dict) -> None:
    df = load_relex()
    enc = encode_label_sets(df)
    names, tasks = enc.label_names, enc.task_names
    print(
        f"CrowdTruth RelEx: {len(tasks)} items, {enc.n_workers} workers, {len(df)} answers, "
        f"{len(names)} labels"
    )
    t0 = time.perf_counter()
    ck_full = crowdkit_br_mv(df, names, tasks)
    t_ck = time.perf_counter() - t0
    t0 = time.perf_counter()
    our_full, idx = ours(df, names, **params)
    t_our = time.perf_counter() - t0
    assert idx.equals(tasks)
    print(
        f"  full pool, labels per item: ours {our_full.sum(1).mean():.3f} ({t_our:.1f} s)   "
        f"crowd-kit BR(MV) {ck_full.sum(1).mean():.3f} ({t_ck:.1f} s)   "
        f"share empty: ours {(our_full.sum(1) == 0).mean():.3f}, BR(MV) "
        f"{(ck_full.sum(1) == 0).mean():.3f}"
    )
    rows = []
    for s in range(seeds):
        h = split_half(df, s)
        res = {}
        for name, fn in (
            ("ours", lambda d: ours(d, names, **params)[0]),
            ("brmv", lambda d: crowdkit_br_mv(d, names, tasks)),
            ("share", lambda d: share_rule(d, names, tasks)),
        ):
            a, b = fn(df[h]), fn(df[~h])
            res[name] = (
                jaccard_rows(a, b).mean(),
                (a == b).all(axis=1).mean(),
                0.5 * (a.sum(1).mean() + b.sum(1).mean()),
            )
        rows.append([*res["ours"], *res["brmv"], *res["share"]])
        print(
            f"  seed {s:2d}: split-half Jaccard ours {res['ours'][0]:.4f}  BR(MV) "
            f"{res['brmv'][0]:.4f}  share>0.5 {res['share'][0]:.4f}   labels/item in halves ours {res['ours'][2]:.3f} "
            f"BR(MV) {res['brmv'][2]:.3f}",
            flush=True,
        )
    r = np.asarray(rows)
    m, sd = r.mean(axis=0), r.std(axis=0, ddof=1) if seeds > 1 else np.zeros(r.shape[1])
    print(f"  split-half over {seeds} seeds (mean, sd):")
    print(
        f"    mean Jaccard  ours {m[0]:.4f} (sd {sd[0]:.4f}) | crowd-kit BR(MV) {m[3]:.4f} "
        f"(sd {sd[3]:.4f})  ratio {m[0] / m[3]:.3f}  (target: ours > BR(MV))"
    )
    print(
        f"    exact match   ours {m[1]:.4f} (sd {sd[1]:.4f}) | crowd-kit BR(MV) {m[4]:.4f} "
        f"(sd {sd[4]:.4f})  ratio {m[1] / m[4]:.3f}"
    )
    print(
        f"    share > 0.5 (= our BinaryRelevance('mv')): Jaccard {m[6]:.4f} (sd {sd[6]:.4f}), "
        f"exact {m[7]:.4f}, labels/item {m[8]:.3f}; ratio ours/it {m[0] / m[6]:.3f}"
    )
    print(
        f"    labels/item   ours {m[2]:.3f} | crowd-kit BR(MV) {m[5]:.3f}; full pool ours "
        f"{our_full.sum(1).mean():.3f} vs {ck_full.sum(1).mean():.3f} (target: ours >= BR(MV))"
    )


SHAPES = (
    dict(n_items=1000, n_labels=8, per_item=5, n_workers=60),
    dict(n_items=2000, n_labels=14, per_item=7, n_workers=200),
    dict(n_items=500, n_labels=6, per_item=3, n_workers=30),
)


def synthetic(seeds: int, params: dict) -> None:
    print("Synthetic crowds (truth known): exact match / mean Jaccard vs truth")
    allr = []
    for shape in SHAPES:
        rows = []
        for s in range(seeds):
            df, truth = synthetic_crowd(seed=s, **shape)
            names = pd.Index(truth.columns)
            tasks = pd.Index(np.arange(len(truth)), name="task")
            a, idx = ours(df, names, **params)
            a = pd.DataFrame(a, index=idx).reindex(tasks).to_numpy()
            b = crowdkit_br_mv(df, names, tasks)
            z = truth.to_numpy()
            rows.append(
                [
                    (a == z).all(1).mean(),
                    jaccard_rows(a, z).mean(),
                    (b == z).all(1).mean(),
                    jaccard_rows(b, z).mean(),
                ]
            )
        r = np.asarray(rows)
        allr.append(r)
        m, sd = r.mean(0), r.std(0, ddof=1) if seeds > 1 else np.zeros(4)
        print(
            f"  {shape}: exact ours {m[0]:.4f} (sd {sd[0]:.4f}) | BR(MV) {m[2]:.4f} "
            f"(sd {sd[2]:.4f}) ratio {m[0] / m[2]:.3f};  Jaccard ours {m[1]:.4f} | BR(MV) "
            f"{m[3]:.4f} ratio {m[1] / m[3]:.3f};  ours better exact/Jaccard on "
            f"{int((r[:, 0] > r[:, 2]).sum())}/{int((r[:, 1] > r[:, 3]).sum())} of {seeds} seeds"
        )
    r = np.concatenate(allr)
    print(
        f"  all: exact ours {r[:, 0].mean():.4f} vs BR(MV) {r[:, 2].mean():.4f}; Jaccard ours "
        f"{r[:, 1].mean():.4f} vs BR(MV) {r[:, 3].mean():.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--synthetic-seeds", type=int, default=5)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--clusters", type=int, default=None, help="override n_clusters")
    ap.add_argument("--sens", type=str, default=None, help="override sensitivity_prior a,b")
    ap.add_argument("--fpr", type=str, default=None, help="override fpr_prior a,b")
    args = ap.parse_args()
    params: dict = {}
    if args.clusters is not None:
        params["n_clusters"] = args.clusters
    if args.sens:
        params["sensitivity_prior"] = tuple(float(x) for x in args.sens.split(","))
    if args.fpr:
        params["fpr_prior"] = tuple(float(x) for x in args.fpr.split(","))
    print(f"MultiLabelModel{params or ' (defaults)'} vs crowd-kit BinaryRelevance(MajorityVote)")
    if not args.skip_real:
        real_data(args.seeds, params)
    if not args.skip_synthetic:
        synthetic(args.synthetic_seeds, params)


if __name__ == "__main__":
    main()
