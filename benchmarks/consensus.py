"""Consensus engine benchmark: speed vs crowd-kit (same run) and accuracy on the real crowd sets.

Run from the repo root (crowd-kit installed beside cynaps_data):

    python benchmarks/consensus.py            # everything (~3-4 min, crowd-kit DS takes ~1 min)
    python benchmarks/consensus.py --no-crowdkit --skip-accuracy   # ours only, fast
    python benchmarks/consensus.py --calibration --seeds 3   # accuracy + ECE of auto per set
    python benchmarks/consensus.py --calibration --seeds 1 --reliability-figure docs/img/reliability_auto.png

Speed input: synthetic crowd, 300,000 tasks x 3 answers, 5 classes, 1,000 workers with
accuracies uniform in [0.5, 0.95] (wrong answers uniform over the other classes): 900k labels.
Every figure is printed next to its baseline measured in the same run, with the ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import cynaps_data.consensus as C  # noqa: E402
from cynaps_data.consensus.majority_vote import majority_vote_arrays  # noqa: E402


def synthetic(n_tasks: int, per_task: int = 3, k: int = 5, n_workers: int = 1000, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_tasks)
    acc = rng.uniform(0.5, 0.95, n_workers)
    task = np.repeat(np.arange(n_tasks), per_task)
    worker = rng.integers(0, n_workers, task.size)
    ok = rng.random(task.size) < acc[worker]
    wrong = (truth[task] + rng.integers(1, k, task.size)) % k
    label = np.where(ok, truth[task], wrong)
    return pd.DataFrame({"task": task, "worker": worker, "label": label}), truth


_CPU: dict[str, float] = {}  # CPU seconds (user+sys of this process) of the last timed() call


def timed(fn, repeat: int = 1):
    """Best wall time over ``repeat`` runs; the run's CPU time goes to ``_CPU["last"]`` (a
    load-independent proxy: other processes on the machine inflate wall time, not CPU time)."""
    best, out = np.inf, None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t)
        _CPU["last"] = time.process_time() - c
    return best, out


def row(name: str, ours: float, base: float | None, base_name: str, target: str = "") -> None:
    if base is None:
        print(f"  {name:<34} {ours:9.3f} s   | {base_name:<40} {target}")
    else:
        print(
            f"  {name:<34} {ours:9.3f} s   | {base_name:<32} {base:9.3f} s"
            f"  ratio {base / ours:7.1f}x faster {target}"
        )


def speed(with_crowdkit: bool) -> None:
    df, truth = synthetic(300_000)
    print(
        f"\n== Speed: {len(df):,} labels, {df.task.nunique():,} tasks, 1,000 workers, 5 classes =="
    )
    t, w, y = (df[c].to_numpy() for c in ("task", "worker", "label"))
    n_t, n_w, k = 300_000, 1000, 5

    def bare():
        return np.bincount(t * k + y, minlength=n_t * k).reshape(n_t, k).argmax(axis=1)

    tb, _ = timed(bare, 5)
    ta, _ = timed(lambda: majority_vote_arrays(t, w, y, n_t, n_w, k), 5)
    print(
        f"  {'MajorityVote (int codes)':<34} {ta * 1e3:9.1f} ms  | bare numpy bincount vote "
        f"{tb * 1e3:9.1f} ms  ratio {ta / tb:5.2f}x slower (target <= 3x)"
    )
    tm, mv = timed(lambda: C.MajorityVote().fit(df), 3)
    print(f"  {'MajorityVote (DataFrame, encode)':<34} {tm * 1e3:9.1f} ms")

    tds, ds = timed(lambda: C.DawidSkene(n_iter=100, tol=-np.inf).fit(df))
    cds = _CPU["last"]
    print(
        f"  DawidSkene(n_iter=100, tol=-inf) accuracy vs synthetic truth "
        f"{(ds.labels_.to_numpy() == truth[ds.labels_.index.to_numpy()]).mean():.4f}"
    )
    tgl, gl = timed(lambda: C.GLAD().fit(df))
    cgl = _CPU["last"]
    tma, ma = timed(lambda: C.MACE().fit(df))
    cma = _CPU["last"]
    if with_crowdkit:
        from crowdkit.aggregation import DawidSkene as CKDS
        from crowdkit.aggregation import MajorityVote as CKMV

        tck_mv, _ = timed(lambda: CKMV().fit_predict(df))
        row("MajorityVote (DataFrame)", tm, tck_mv, "crowd-kit MajorityVote")
        tck, ck_labels = timed(lambda: CKDS(n_iter=100, tol=-np.inf).fit_predict(df))
        cck = _CPU["last"]
        row("DawidSkene n_iter=100 tol=-inf", tds, tck, "crowd-kit DawidSkene", "(target >= 20x)")
        print(
            f"  {'  CPU time (user+sys)':<34} {cds:9.3f} s   | crowd-kit DawidSkene "
            f"{cck:21.3f} s  ratio {cck / cds:7.1f}x less CPU"
        )
        same = (ds.labels_.loc[ck_labels.index].to_numpy() == ck_labels.to_numpy()).mean()
        print(
            f"  {'  same label as crowd-kit DS':<34} {same * 100:9.3f} % of tasks (target >= 99.9%)"
        )
    else:
        row(
            "DawidSkene n_iter=100 tol=-inf", tds, None, "crowd-kit skipped (47 s in BASELINE runs)"
        )
    row("GLAD (defaults)", tgl, None, f"target < 10 s; CPU {cgl:.2f} s; n_iter_={gl.n_iter_}")
    row("MACE (defaults)", tma, None, f"target < 10 s; CPU {cma:.2f} s; n_iter_={ma.n_iter_}")
    tau, au = timed(lambda: C.ConsensusEnsemble().fit(df))
    row("auto (DS + MACE pool, 5 classes)", tau, None, f"no target; CPU {_CPU['last']:.2f} s")
    df2, truth2 = synthetic(300_000, k=2)
    tau2, au2 = timed(lambda: C.ConsensusEnsemble().fit(df2))
    row("auto (5 x EBCC, same crowd, 2 cl.)", tau2, None, f"no target; CPU {_CPU['last']:.2f} s")
    for name, m, tr in (("GLAD", gl, truth), ("MACE", ma, truth), ("auto 5 classes", au, truth)):
        hit = (m.labels_.to_numpy() == tr[m.labels_.index.to_numpy()]).mean()
        print(f"  {name} accuracy vs synthetic truth {hit:.4f}")
    hit = (au2.labels_.to_numpy() == truth2[au2.labels_.index.to_numpy()]).mean()
    print(f"  auto 2 classes accuracy vs synthetic truth {hit:.4f}")
    print(f"  load average (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("  (crowd-kit GLAD took 178 s and MACE 45 s on the 93k-label adult_s5 set, BASELINE.md)")


_MEM_CHILD = """
import sys, resource, numpy as np
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from consensus import synthetic
import cynaps_data.consensus as C
df, _ = synthetic({n_tasks})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
m = C.{model}.fit(df)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base / 1024, peak / 1024)
"""


def memory() -> None:
    n_tasks = 10_000_000 // 3 + 1
    print(
        f"\n== Peak memory (RSS, whole process incl. the input DataFrame), {n_tasks * 3:,} labels =="
    )
    for model in ("MajorityVote()", "DawidSkene(n_iter=20)"):
        code = _MEM_CHILD.format(
            root=str(ROOT), bench=str(ROOT / "benchmarks"), n_tasks=n_tasks, model=model
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:])
            continue
        base, peak = (float(x) for x in out.stdout.split())
        print(
            f"  {model:<24} peak {peak / 1024:6.2f} GB (input alone {base / 1024:5.2f} GB; target < 2 GB)"
        )


def accuracy_table(mace_restarts: int | None = None) -> None:
    from consensus_data import CROWDKIT, CROWDKIT_BEST_MEAN, DATASETS, METHODS, accuracy, load

    models = {
        "MV": C.MajorityVote,
        "DS": C.DawidSkene,
        "ODS": C.OneCoinDawidSkene,
        "GLAD": C.GLAD,
        "MACE": C.MACE,
        "auto": C.ConsensusEnsemble,
    }
    print("\n== Accuracy on gold tasks (ours / crowd-kit 1.4.2 from BASELINE.md) ==")
    hdr = " ".join(f"{m:>15}" for m in models)
    print(f"  {'dataset':<19} {hdr}")
    acc: dict[str, list[float]] = {m: [] for m in models}
    ece: dict[str, list[float]] = {m: [] for m in models}
    for d in DATASETS:
        df, gold = load(d)
        cells = []
        for m, cls in models.items():
            model = cls().fit(df)
            a = accuracy(model.labels_, gold)
            acc[m].append(a)
            ece[m].append(C.expected_calibration_error(model.probas_, gold))
            if m in METHODS:
                ref = CROWDKIT[d][METHODS.index(m)]
                cells.append(f"{a:.4f}/{ref:.4f}" if not np.isnan(ref) else f"{a:.4f}/  -   ")
            else:
                cells.append(f"{a:.4f}        ")
        print(f"  {d:<19} " + " ".join(f"{c:>15}" for c in cells))
    means = []
    for m in models:
        if m in METHODS:
            ref = np.nanmean([CROWDKIT[d][METHODS.index(m)] for d in DATASETS])
            means.append(f"{np.mean(acc[m]):.4f}/{ref:.4f}")
        else:
            means.append(f"{np.mean(acc[m]):.4f}/{CROWDKIT_BEST_MEAN:.4f}*")
    print(f"  {'MEAN':<19} " + " ".join(f"{c:>15}" for c in means))
    print(f"  {'ECE (mean)':<19} " + " ".join(f"{np.mean(ece[m]):>15.4f}" for m in models))
    print(
        "  * auto is compared with the best crowd-kit method per dataset chosen after seeing gold"
    )


def calibration_table(seeds: list[int], calibration: str = "resample") -> pd.DataFrame:
    """Per dataset and seed: accuracy of ``auto`` and the ECE (15 equal-width bins on the top
    posterior, gold tasks) of its raw pool and of its calibrated posterior. Prints the per-dataset
    table (mean over seeds), the mean over the 14 sets per seed and its spread over seeds."""
    from consensus_data import DATASETS, accuracy, load

    rows = []
    for d in DATASETS:
        df, gold = load(d)
        for s in seeds:
            m = C.ConsensusEnsemble(random_state=s, calibration=calibration).fit(df)
            rows.append(
                (
                    d,
                    s,
                    accuracy(m.labels_, gold),
                    C.expected_calibration_error(m.uncalibrated_probas_, gold, 15),
                    C.expected_calibration_error(m.probas_, gold, 15),
                )
            )
    res = pd.DataFrame(rows, columns=["dataset", "seed", "acc", "ece_raw", "ece"])
    print(
        f"\n== Calibration of auto (calibration={calibration!r}; ECE, 15 bins, gold tasks;"
        f" seeds {seeds}) =="
    )
    print(
        f"  {'dataset':<19} {'accuracy':>9} {'ECE raw':>8} {'ECE':>7} {'ECE min-max over seeds':>24}"
    )
    for d, g in res.groupby("dataset", sort=False):
        print(
            f"  {d:<19} {g.acc.mean():9.4f} {g.ece_raw.mean():8.3f} {g.ece.mean():7.3f}"
            f" {g.ece.min():>16.3f}-{g.ece.max():.3f}"
        )
    per_seed = res.groupby("seed")[["acc", "ece_raw", "ece"]].mean()
    for s, r in per_seed.iterrows():
        print(f"  {'MEAN seed ' + str(s):<19} {r.acc:9.4f} {r.ece_raw:8.4f} {r.ece:7.4f}")
    sd = per_seed.std(ddof=0) if len(per_seed) > 1 else per_seed.mean() * 0
    print(
        f"  {'MEAN over seeds':<19} {per_seed.acc.mean():9.4f} {per_seed.ece_raw.mean():8.4f}"
        f" {per_seed.ece.mean():7.4f}  (std over seeds: acc {sd.acc:.4f}, ECE {sd.ece:.4f})"
    )
    print("  targets: mean ECE <= 0.06 with mean accuracy >= 0.830")
    print(f"  load average (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return res


def agreement_excess(df: pd.DataFrame, q: pd.DataFrame) -> tuple[float, float]:
    r"""Observed and model-predicted agreement of two answers to the same task, over every pair
    of answers of every task: observed :math:`\sum_t \sum_y n_{ty}(n_{ty}-1)/2` over the pairs;
    predicted :math:`\sum_c q_{tc} \sum_y P_i(y \mid c) P_j(y \mid c)` with each answer's
    leave-this-task-out confusion (Laplace 1) built from the posterior ``q`` (task x label),
    as :func:`cynaps_data.consensus.calibration.resampled_confidence` builds it. No gold."""
    t = q.index.get_indexer(df["task"])
    y = q.columns.get_indexer(df["label"])
    w, names = pd.factorize(df["worker"])
    qa = q.to_numpy()
    n_t, k = qa.shape
    qt = qa[t]
    counts = np.zeros((len(names), k, k))  # [w, y, c]
    np.add.at(counts, (w, y), qt)
    p = counts[w] + 1.0  # [i, y', c]
    p[np.arange(t.size), y] -= qt
    p /= p.sum(axis=1, keepdims=True)
    s = np.zeros((n_t, k, k))
    np.add.at(s, t, p)
    sq = np.zeros((n_t, k))
    np.add.at(sq, t, (p * p).sum(axis=1))
    pred = float((qa * ((s * s).sum(axis=1) - sq)).sum() / 2)
    n_ty = np.zeros((n_t, k))
    np.add.at(n_ty, (t, y), 1.0)
    n = n_ty.sum(axis=1)
    pairs = float((n * (n - 1) / 2).sum())
    obs = float((n_ty * (n_ty - 1) / 2).sum())
    return obs / pairs, pred / pairs


def agreement_excess_table(seed: int = 0) -> pd.DataFrame:
    """Per dataset: the crowd's excess agreement over what the default's independent-answer
    model predicts (gold-free), beside how over-confident the default is on gold before and
    after calibration (mean top posterior minus accuracy), and their Spearman correlation."""
    from consensus_data import DATASETS, accuracy, load

    rows = []
    for d in DATASETS:
        df, gold = load(d)
        m = C.ConsensusEnsemble(random_state=seed).fit(df)
        obs, pred = agreement_excess(df, m.uncalibrated_probas_)
        g = gold.index.intersection(m.probas_.index)
        acc = accuracy(m.labels_, gold)
        over_raw = m.uncalibrated_probas_.loc[g].max(axis=1).mean() - acc
        over = m.probas_.loc[g].max(axis=1).mean() - acc
        rows.append((d, obs, pred, obs - pred, over_raw, over))
    res = pd.DataFrame(
        rows, columns=["dataset", "observed", "predicted", "excess", "overconf_raw", "overconf"]
    ).set_index("dataset")
    print(
        "\n== Agreement of two answers to a task: observed vs the model's prediction (no gold) =="
    )
    print(res.sort_values("excess").round(3).to_string())
    rho = res[["excess", "overconf_raw", "overconf"]].corr(method="spearman")
    print(
        f"  Spearman(excess, over-confidence): raw {rho.loc['excess', 'overconf_raw']:.2f}, "
        f"calibrated {rho.loc['excess', 'overconf']:.2f}"
    )
    return res


def reliability_figure(
    path: str, datasets: tuple[str, ...] = ("rte", "zencrowd_in", "face", "web")
):
    """Reliability diagrams of auto, raw pool vs calibrated, one panel per dataset (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from consensus_data import load

    from cynaps_data import plots

    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets), 3.8))
    for ax, d in zip(axes, datasets, strict=True):
        df, gold = load(d)
        m = C.ConsensusEnsemble().fit(df)
        curves = {"auto, raw": m.uncalibrated_probas_, "auto, calibrated": m.probas_}
        plots.reliability_diagram(curves, gold, ax=ax)
        ax.set_title(d)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"figure written to {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--no-crowdkit", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument(
        "--calibration",
        action="store_true",
        help="only the per-dataset accuracy/ECE table of auto, over --seeds seeds",
    )
    ap.add_argument("--seeds", type=int, default=3, help="seeds for --calibration (default 3)")
    ap.add_argument(
        "--agreement-excess",
        action="store_true",
        help="only the gold-free excess-agreement table beside each set's over-confidence",
    )
    ap.add_argument(
        "--reliability-figure", default=None, help="with --calibration: draw the diagrams here"
    )
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, pandas {pd.__version__}")
    if args.agreement_excess:
        agreement_excess_table()
        return
    if args.calibration:
        calibration_table(list(range(args.seeds)))
        if args.reliability_figure:
            reliability_figure(args.reliability_figure)
        return
    speed(not args.no_crowdkit)
    if not args.skip_memory:
        memory()
    if not args.skip_accuracy:
        accuracy_table()
    print(
        f"\nmax RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
