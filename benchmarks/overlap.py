"""Adaptive overlap replay on the 14 real crowd datasets: judgements per task vs accuracy on gold.

Run from the repo root (the datasets are in ../shared/data/crowd, or set CYNAPS_CROWD_DIR):

    python benchmarks/overlap.py            # 3 seeds, all policies (~10 min per seed, quiet machine)
    python benchmarks/overlap.py --quick    # 1 seed, fewer policies (~4 min)
    python benchmarks/overlap.py --seeds 1 --first-seed 1 --save s1.csv   # one seed per process
    python benchmarks/overlap.py --from-csv s0.csv,s1.csv                 # report them together
    python benchmarks/overlap.py --figure docs/img/overlap_curve.png

Replay: for each seed, each task's real judgements are put in a random order and revealed one at
a time, only when a policy asks for one. Policies:

* ``fixed k`` (k = 1..5) and ``all``: the first k judgements of every task, aggregated by
  Dawid-Skene (``ds``); ``fixed 3 (auto)`` by the default;
* ``agree>=θ maxM``: dynamic overlap on raw agreement (after at least 2 judgements, stop when
  the top answer's share reaches θ; at most M = 5 or 10), labels by Dawid-Skene;
* ``ours@target``: 2 judgements per task, then rounds of
  :func:`cynaps_data.consensus.next_judgements` (its default model: Dawid-Skene with a 4:1
  Dirichlet prior, refit on everything revealed; one more judgement for every task whose
  posterior is below the target, at most 10 per task), final labels by Dawid-Skene (as the
  baseline); ``ours@target (auto)``: the same collection labelled by the default ``auto``;
* ``ours1@target``: from 1 judgement per task (a random 30% of the tasks at 2, so the skill
  model sees overlapping workers from the first round), rounds of at most 10% of the tasks: the
  flagged tasks of highest expected gain get one more, then the model is refit (as the platform
  hands out the most valuable task first); ``ours1-all@target`` (only with ``--only``): the same
  start, one more to every flagged task per round (the session-6 policy).

Cost = mean judgements per task over all tasks of a dataset (a task cannot get more than it has
in the data); accuracy on the gold tasks. Every row prints its ratio to ``fixed 3 (ds)``
measured in the same run. Targets (mean over the 14 sets, against fixed k=3 + Dawid-Skene):
the same accuracy with >= 30% fewer judgements, and >= 3 points more accuracy at the same cost.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import consensus_data  # noqa: E402

import cynaps_data.consensus as C  # noqa: E402

if not consensus_data.CROWD_DIR.is_dir() and Path("/work/shared/data/crowd").is_dir():
    consensus_data.CROWD_DIR = Path("/work/shared/data/crowd")

MAX_K = 5


class Replay:
    """One dataset under one seed: judgements in a random order within each task."""

    def __init__(self, df: pd.DataFrame, gold: pd.Series, seed: int) -> None:
        rng = np.random.default_rng(seed)
        df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
        df = df.iloc[np.argsort(df["task"].to_numpy(), kind="stable")].reset_index(drop=True)
        df["rank"] = df.groupby("task", sort=False).cumcount()
        self.df = df
        self.gold = gold
        self.tasks = pd.Index(df["task"].unique())
        self.avail = df.groupby("task", sort=False).size().reindex(self.tasks).to_numpy()
        self.seed = seed

    def revealed(self, n: np.ndarray) -> pd.DataFrame:
        lim = pd.Series(n, index=self.tasks)
        return self.df[self.df["rank"].to_numpy() < lim.reindex(self.df["task"]).to_numpy()]

    def score(self, sub: pd.DataFrame, method: str) -> float:
        model = C.get_aggregator(method, random_state=self.seed).fit(
            sub[["task", "worker", "label"]]
        )
        return consensus_data.accuracy(model.labels_, self.gold)

    def fixed(self, k: int | None, method: str) -> tuple[float, float]:
        n = self.avail if k is None else np.minimum(self.avail, k)
        return float(n.mean()), self.score(self.revealed(n), method)

    def agreement(
        self, theta: float, method: str = "ds", k_min: int = 2, max_k: int = MAX_K
    ) -> tuple[float, float]:
        first = self.df[self.df["rank"] < max_k]
        codes = pd.Series(pd.factorize(first["label"])[0], index=first.index)
        lab = (
            pd.DataFrame({"task": first["task"], "rank": first["rank"], "code": codes})
            .pivot(index="task", columns="rank", values="code")
            .reindex(self.tasks)
            .fillna(-1)
            .to_numpy(dtype=np.int64)
        )
        n_cls = int(lab.max()) + 1
        n = np.minimum(self.avail, max_k).copy()
        stopped = np.zeros(len(self.tasks), dtype=bool)
        for j in range(k_min, max_k + 1):
            top = np.max([(lab[:, :j] == c).sum(axis=1) for c in range(n_cls)], axis=0)
            ok = (~stopped) & (self.avail >= j) & (top / j >= theta)
            n[ok] = j
            stopped |= ok
        return float(n.mean()), self.score(self.revealed(n), method)

    def adaptive(
        self,
        target: float,
        finals: tuple[str, ...] = ("ds",),
        k_min: int = 2,
        model: Any = None,
        explore: float = 0.0,
        max_k: int = MAX_K,
        share: float | None = None,
    ) -> list[tuple[float, float]]:
        """Collect with :func:`next_judgements` rounds; (cost, accuracy) per final aggregator.
        ``share``: each round hands out at most this share of the tasks, to the flagged tasks
        of highest expected gain (the plan's order) that still have a judgement to reveal;
        ``None``: one more to every flagged task."""
        n = np.minimum(self.avail, k_min)
        if explore > 0:  # a random share of the tasks starts with one more judgement
            rng = np.random.default_rng(self.seed + 1000)
            more = rng.random(n.size) < explore
            n = np.minimum(self.avail, n + more)
        pos = pd.Series(np.arange(len(self.tasks)), index=self.tasks)
        per_round = len(self.tasks) if share is None else max(1, math.ceil(share * n.size))
        while True:  # every round reveals at least one judgement, and they are finite
            sub = self.revealed(n)[["task", "worker", "label"]]
            plan = C.next_judgements(
                sub,
                target_confidence=target,
                max_judgements=max_k,
                min_judgements=1,
                method=model,
            )
            ask = pos.reindex(plan.index[plan["need_more"].to_numpy()]).to_numpy()
            ask = ask[n[ask] < self.avail[ask]][:per_round]
            if ask.size == 0:
                break
            n[ask] += 1
        sub = self.revealed(n)
        return [(float(n.mean()), self.score(sub, f)) for f in finals]


#: the adaptive families: name -> (k_min, explore, share); "ours" starts every task at 2
#: judgements and gives one more to every flagged task per round; "ours1" starts at 1 (a random
#: 30% at 2, so the skill model sees overlap from the first round) and hands out rounds of at
#: most 10% of the tasks, most valuable first, refitting between rounds
FAMILIES = {"ours": (2, 0.0, None), "ours1": (1, 0.3, 0.1)}
#: run only when ``--only`` names them: "ours1-all", the ``ours1`` start with every flagged task
#: served each round (the session-6 policy, kept to compare)
EXTRA_FAMILIES = {"ours1-all": (1, 0.3, None)}


def run(seeds: list[int], quick: bool, only: str | None = None) -> pd.DataFrame:
    """One row per (policy, dataset, seed): ``cost``, ``acc``. ``only``: a regular expression;
    run just the policies whose name matches it (e.g. to add a target to saved rows)."""
    rows: list = []
    targets = {
        "ours": [0.8, 0.9] if quick else [0.7, 0.8, 0.9],
        "ours1": [0.9] if quick else [0.7, 0.75, 0.8, 0.85, 0.9, 0.95],
    }
    targets["ours1-all"] = targets["ours1"]
    thetas = [0.8] if quick else [0.6, 0.8, 1.0]
    for d in consensus_data.DATASETS:
        df, gold = consensus_data.load(d)
        t0 = time.perf_counter()
        for s in seeds:
            r = Replay(df, gold, s)
            if only is not None:
                for fam, (k_min, explore, share) in {**FAMILIES, **EXTRA_FAMILIES}.items():
                    for tg in targets[fam]:
                        if re.fullmatch(only, f"{fam}@{tg:g}"):
                            (c, a_ds), (_, a_auto) = r.adaptive(
                                tg,
                                ("ds", "auto"),
                                k_min=k_min,
                                explore=explore,
                                max_k=10,
                                share=share,
                            )
                            rows.append((f"{fam}@{tg:g}", d, s, c, a_ds))
                            rows.append((f"{fam}@{tg:g} (auto)", d, s, c, a_auto))
                continue
            for k in (1, 2, 3, 4, 5, None):
                name = "all" if k is None else f"fixed {k}"
                if k in (3, None) or not quick:
                    rows.append((f"{name} (ds)", d, s, *r.fixed(k, "ds")))
            rows.append(("fixed 3 (auto)", d, s, *r.fixed(3, "auto")))
            for th in thetas:
                rows.append((f"agree>={th:g} max5 (ds)", d, s, *r.agreement(th)))
            rows.append(("agree>=0.8 max10 (ds)", d, s, *r.agreement(0.8, max_k=10)))
            for fam, (k_min, explore, share) in FAMILIES.items():
                for tg in targets[fam]:
                    (c, a_ds), (_, a_auto) = r.adaptive(
                        tg, ("ds", "auto"), k_min=k_min, explore=explore, max_k=10, share=share
                    )
                    rows.append((f"{fam}@{tg:g}", d, s, c, a_ds))
                    rows.append((f"{fam}@{tg:g} (auto)", d, s, c, a_auto))
        print(f"  {d:<20} {time.perf_counter() - t0:6.1f} s", flush=True)
    return pd.DataFrame(rows, columns=["policy", "dataset", "seed", "cost", "acc"])


def _curve_targets(summ: pd.DataFrame, pattern: str, base_cost: float, base_acc: float) -> None:
    """Interpolate one family's (cost, accuracy) points linearly: the cost at fixed 3's accuracy
    and the accuracy at fixed 3's cost."""
    ours = summ[summ.index.str.fullmatch(pattern)].sort_values(("cost", "mean"))
    if ours.empty:
        return
    oc, oa = ours[("cost", "mean")].to_numpy(), ours[("acc", "mean")].to_numpy()
    label = ", ".join(ours.index)
    print(f"\n  {label}:")
    if oa.max() >= base_acc:
        i = int(np.argmax(oa >= base_acc))
        c_eq = oc[0] if i == 0 else np.interp(base_acc, oa[i - 1 : i + 1], oc[i - 1 : i + 1])
        print(
            f"    same accuracy as fixed 3 (ds) at {c_eq:.3f} judgements/task:"
            f" {100 * (1 - c_eq / base_cost):.1f}% fewer (target >= 30%)"
            + (" (at or below its cheapest point: an upper bound on the cost)" if i == 0 else "")
        )
    else:
        print("    same accuracy: no target reached fixed-3 accuracy")
    if oc.min() <= base_cost <= oc.max():
        a_eq = float(np.interp(base_cost, oc, oa))
        print(
            f"    at fixed 3's cost ({base_cost:.3f}/task): accuracy {a_eq:.4f},"
            f" {100 * (a_eq - base_acc):+.2f} points (target >= +3)"
        )
    else:
        print(
            f"    fixed 3's cost {base_cost:.3f} is outside its range {oc.min():.3f}-{oc.max():.3f}"
        )


def report(res: pd.DataFrame) -> pd.DataFrame:
    per_seed = res.groupby(["policy", "seed"])[["cost", "acc"]].mean()  # mean over 14 sets
    summ = per_seed.groupby("policy").agg(["mean", "std"])
    base_cost = summ.loc["fixed 3 (ds)", ("cost", "mean")]
    base_acc = summ.loc["fixed 3 (ds)", ("acc", "mean")]
    summ = summ.sort_values(("cost", "mean"))
    print(
        "\n== Mean over the 14 sets (± std over seeds); ratios to fixed 3 (ds) of the same run =="
    )
    print(
        f"  {'policy':<20} {'judgements/task':>18} {'accuracy':>16} {'cost ratio':>11} {'Δacc':>8}"
    )
    for pol, r in summ.iterrows():
        c, cs = r[("cost", "mean")], r[("cost", "std")]
        a, as_ = r[("acc", "mean")], r[("acc", "std")]
        print(
            f"  {pol:<20} {c:10.3f} ± {cs:5.3f} {a:9.4f} ± {as_:5.4f}"
            f" {c / base_cost:10.2f}x {100 * (a - base_acc):+7.2f}"
        )
    print("\n== Each policy family interpolated linearly between its targets (mean cost) ==")
    for fam in {**FAMILIES, **EXTRA_FAMILIES}:
        _curve_targets(summ, fam + r"@[\d.]+", base_cost, base_acc)
        _curve_targets(summ, fam + r"@[\d.]+ \(auto\)", base_cost, base_acc)
    print("\n== Per dataset (mean over seeds): accuracy / judgements per task ==")
    piv = res.groupby(["dataset", "policy"])[["acc", "cost"]].mean().unstack("policy")
    keep = [p for p in summ.index if p in ("fixed 3 (ds)", "all (ds)") or p.endswith("(auto)")]
    print("  " + f"{'dataset':<20}" + "".join(f"{p:>20}" for p in keep))
    for d, r in piv.iterrows():
        cells = "".join(f"{r[('acc', p)]:>12.4f}/{r[('cost', p)]:<7.2f}" for p in keep)
        print(f"  {d:<20}{cells}")
    return summ


def figure(summ: pd.DataFrame, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = {
        "fixed k = 1..5 (Dawid-Skene)": summ.index.str.match(r"fixed \d \(ds\)"),
        "agreement ≥ θ, max 5 (DS labels)": summ.index.str.match(r"agree.* max5"),
        "agreement ≥ θ, max 10 (DS labels)": summ.index.str.match(r"agree.* max10"),
        "ours: next_judgements from 2, DS labels": summ.index.str.match(r"ours@[\d.]+$"),
        "ours: from 2, auto labels": summ.index.str.match(r"ours@[\d.]+ \(auto\)"),
        "ours1: from 1 (30% at 2), rounds of 10%, DS labels": summ.index.str.match(
            r"ours1@[\d.]+$"
        ),
        "ours1: from 1 (30% at 2), rounds of 10%, auto labels": summ.index.str.match(
            r"ours1@[\d.]+ \(auto\)"
        ),
    }
    for (name, m), mk in zip(groups.items(), "osD^v<>", strict=True):
        sub = summ[m].sort_values(("cost", "mean"))
        if len(sub):
            ax.errorbar(
                sub[("cost", "mean")],
                sub[("acc", "mean")],
                yerr=sub[("acc", "std")],
                marker=mk,
                label=name,
                capsize=2,
            )
            for pol, r in sub.iterrows():
                tag = pol.split("@")[-1].split()[0] if pol.startswith("ours") else ""
                if pol.startswith("agree"):
                    tag = pol.split()[0].replace("agree>=", "")
                if tag:
                    ax.annotate(tag, (r[("cost", "mean")], r[("acc", "mean")]), fontsize=7)
    if "all (ds)" in summ.index:  # far to the right: named in the title, not drawn
        ax.set_title(
            f"every judgement (all, DS): {summ.loc['all (ds)', ('cost', 'mean')]:.2f}/task,"
            f" accuracy {summ.loc['all (ds)', ('acc', 'mean')]:.4f}",
            fontsize=9,
        )
    ax.set_xlim(0.8, 5.0)
    ax.set_xlabel("mean judgements per task (14 real crowd datasets)")
    ax.set_ylabel("mean accuracy on gold")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nfigure written to {path}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="1 seed, fewer policies")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, quick 1)")
    ap.add_argument(
        "--only", default=None, help="run only the adaptive policies matching this regex"
    )
    ap.add_argument("--first-seed", type=int, default=0, help="seeds start here (default 0)")
    ap.add_argument("--figure", default=None, help="write the cost/accuracy curve PNG here")
    ap.add_argument("--save", default=None, help="write the raw rows (CSV) here")
    ap.add_argument(
        "--from-csv", default=None, help="report (and draw) saved rows (a,b,...), no replay"
    )
    args = ap.parse_args()
    n_seeds = args.seeds or (1 if args.quick else 3)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, pandas {pd.__version__}")
    t0 = time.perf_counter()
    seeds = list(range(args.first_seed, args.first_seed + n_seeds))
    if args.from_csv:  # several files (e.g. one per seed, run in parallel): comma-separated
        res = pd.concat([pd.read_csv(f) for f in args.from_csv.split(",")], ignore_index=True)
    else:
        res = run(seeds, args.quick, args.only)
    if args.save:
        res.to_csv(args.save, index=False)
    if args.only:
        print(res.groupby("policy")[["cost", "acc"]].mean())
        return
    summ = report(res)
    if args.figure:
        figure(summ, args.figure)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
