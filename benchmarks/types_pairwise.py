"""Pairwise aggregation (issue 16) on CrowDEA (7 sets of crowd pairwise preferences over ideas
and designs) and on synthetic comparisons: our default (``auto`` = AnnotatorBradleyTerry) and
our BradleyTerry beside crowd-kit's BradleyTerry and NoisyBradleyTerry, all fitted in this run.

Run from the repo root:

    python benchmarks/types_pairwise.py
    python benchmarks/types_pairwise.py --noisy-rows 5000   # NoisyBT timed on a subset only
    python benchmarks/types_pairwise.py --skip-real          # synthetic part only

CrowDEA input is ``left=winner, right=loser, label=winner`` (presentation order is not recorded;
the layout BASELINE.md used). Per set: Spearman of each method's scores with the per-object
mean of the 100 reference viewpoints, nDCG@5/10 averaged over the starred viewpoints (gain =
raw reference score, as the CrowDEA code), the published BT nDCG beside, fit seconds and the
speed ratio NoisyBT / ours. Synthetic: random sparse comparison graphs, annotators with a
position bias and a share of careless ones, several seeds; Spearman with the true scores
(mean and spread over seeds). Load (``uptime``) is printed beside the timings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cynaps_data.consensus.pairwise import (  # noqa: E402
    AnnotatorBradleyTerry,
    BradleyTerry,
    get_pairwise_model,
)

DATA = Path("/work/shared/data/pairwise/crowdea_ideas_designs")
SETS = {
    "bike": "idea",
    "cheat": "idea",
    "meeting": "idea",
    "night": "idea",
    "visitor": "idea",
    "ai_character": "design",
    "olympic": "design",
}
#: published BT nDCG@5, @10 (BASELINE.md, from yukinobaba/crowdea jupyter/Q2_accuracy.ipynb)
PUBLISHED = {
    "bike": (0.7715, 0.7984),
    "cheat": (0.7680, 0.7952),
    "meeting": (0.8169, 0.8240),
    "night": (0.7905, 0.8089),
    "visitor": (0.8184, 0.8322),
    "ai_character": (0.9024, 0.9115),
    "olympic": (0.9258, 0.9370),
}


def uptime() -> str:
    try:
        import subprocess

        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:  # pragma: no cover
        return str(os.getloadavg())


def load_crowdea() -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    df = pd.read_csv(DATA / "comparisons.csv")
    out = {}
    for name, cat in SETS.items():
        g = df[df["dataset"] == name]
        frame = pd.DataFrame(
            {
                "worker": g["worker"].astype(str).to_numpy(),
                "left": g["winner"].to_numpy(),
                "right": g["loser"].to_numpy(),
                "label": g["winner"].to_numpy(),
            }
        )
        truth = pd.read_csv(DATA / "orig" / cat / name / "truth.tsv", sep="\t")
        out[name] = (frame, truth.set_index("idea_index"))
    return out


def ndcg(scores: np.ndarray, refs: np.ndarray, k: int) -> float:
    top = np.argsort(scores)[::-1][:k]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    return float((refs[top] * disc).sum() / (np.sort(refs)[::-1][:k] * disc).sum())


def evaluate(scores: pd.Series, truth: pd.DataFrame) -> tuple[float, float, float]:
    s = scores.reindex(truth.index).to_numpy(dtype=float)
    rho = float(spearmanr(s, truth.mean(axis=1).to_numpy()).statistic)
    starred = [c for c in truth.columns if c.startswith("*")]
    n5 = float(np.mean([ndcg(s, truth[c].to_numpy(float), 5) for c in starred]))
    n10 = float(np.mean([ndcg(s, truth[c].to_numpy(float), 10) for c in starred]))
    return rho, n5, n10


def timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def real(args: argparse.Namespace) -> int:
    from crowdkit.aggregation import BradleyTerry as CkBT
    from crowdkit.aggregation import NoisyBradleyTerry as CkNoisy

    print(f"== CrowDEA, 7 sets, left=winner layout ({uptime()}) ==")
    print(noisy_gradient_check())
    head = (
        f"{'set':13s} {'method':22s} {'Spearman':>8s} {'nDCG@5':>7s} {'nDCG@10':>7s} "
        f"{'pub@5':>6s} {'pub@10':>6s} {'fit s':>8s}"
    )
    print(head)
    misses = []
    for name, (frame, truth) in load_crowdea().items():
        rows = {}
        model = get_pairwise_model("auto")
        fitted, t_ours = timed(lambda m=model, f=frame: m.fit(f))
        rows[f"ours auto ({type(model).__name__[:9]})"] = (evaluate(fitted.scores_, truth), t_ours)
        bt, t_bt = timed(lambda f=frame: BradleyTerry().fit(f))
        rows["ours BradleyTerry"] = (evaluate(bt.scores_, truth), t_bt)
        ck, t_ck = timed(lambda f=frame: CkBT(n_iter=100).fit_predict(f))
        rows["crowd-kit BT"] = (evaluate(ck, truth), t_ck)
        sub = (
            frame
            if args.noisy_rows is None
            else frame.sample(min(args.noisy_rows, len(frame)), random_state=0)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckn, t_ckn = timed(lambda f=sub: CkNoisy(n_iter=100).fit_predict(f))
        label = "crowd-kit NoisyBT" + ("" if args.noisy_rows is None else " (subset)")
        rows[label] = (evaluate(ckn, truth), t_ckn)
        if args.noisy_seeds > 1:  # the same model from other random starts (random_state)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                more = [
                    evaluate(CkNoisy(n_iter=100, random_state=r).fit_predict(sub), truth)[0]
                    for r in range(1, args.noisy_seeds)
                ]
            spread = np.array([rows[label][0][0], *more])
            print(
                f"{name:13s} crowd-kit NoisyBT over random_state 0..{args.noisy_seeds - 1}: "
                f"Spearman min {spread.min():.4f} median {np.median(spread):.4f} "
                f"max {spread.max():.4f} ({', '.join(f'{v:.4f}' for v in spread)})"
            )
        if args.noisy_corrected:
            fixed_cls = corrected_noisy_bt()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fixed = [
                    evaluate(fixed_cls(n_iter=100, random_state=r).fit_predict(sub), truth)[0]
                    for r in range(max(args.noisy_seeds, 1))
                ]
            print(
                f"{name:13s} NoisyBT, gradient corrected, random_state 0..{len(fixed) - 1}: "
                f"Spearman {', '.join(f'{v:.4f}' for v in fixed)}"
            )
        pub = PUBLISHED[name]
        for meth, ((rho, n5, n10), sec) in rows.items():
            p5, p10 = (
                (f"{pub[0]:.4f}", f"{pub[1]:.4f}") if meth.startswith("ours auto") else ("", "")
            )
            print(
                f"{name:13s} {meth:22s} {rho:8.4f} {n5:7.4f} {n10:7.4f} {p5:>6s} {p10:>6s} {sec:8.2f}"
            )
        ours = rows[next(iter(rows))][0]
        best_ck = max(rows["crowd-kit BT"][0][0], rows[label][0][0])
        # NoisyBT at equal iterations: time ours on the same rows with n_iter=100, tol=0
        eq_model = AnnotatorBradleyTerry(n_iter=100, tol=0.0)
        _, t_eq = timed(lambda f=sub, m=eq_model: m.fit(f))
        print(
            f"{name:13s} Spearman ours - best crowd-kit = {ours[0] - best_ck:+.4f}; "
            f"nDCG@5/10 ours - published = {ours[1] - pub[0]:+.4f}/{ours[2] - pub[1]:+.4f}; "
            f"NoisyBT(100 it) {t_ckn:.2f}s / ours(100 it, same rows) {t_eq:.2f}s = "
            f"{t_ckn / t_eq:.1f}x; / ours as used {t_ckn / t_ours:.1f}x"
            + (" [NoisyBT rows are a subset]" if args.noisy_rows is not None else "")
        )
        if ours[0] < best_ck:
            misses.append(name)
        if args.diagnose:
            print(f"{name:13s} BT Spearman by skill third: {skill_terciles(frame, truth)}")
    print(f"sets where ours < best crowd-kit Spearman: {misses or 'none'} ({uptime()})")
    return 0


def skill_terciles(frame: pd.DataFrame, truth: pd.DataFrame) -> str:
    """Plain Bradley–Terry on the comparisons of each third of the workers, split by the
    default's fitted skill: which workers' answers agree with the reference viewpoints."""
    skills = AnnotatorBradleyTerry().fit(frame).skills_
    cuts = skills.quantile([1 / 3, 2 / 3]).to_numpy()
    parts = {
        "low": skills <= cuts[0],
        "mid": (skills > cuts[0]) & (skills <= cuts[1]),
        "high": skills > cuts[1],
    }
    out = []
    for label, sel in parts.items():
        sub = frame[frame["worker"].isin(set(skills.index[sel.to_numpy()]))]
        scores = BradleyTerry().fit_predict(sub).reindex(truth.index).fillna(0.0)
        out.append(
            f"{label} {int(sel.sum())} workers {len(sub)} rows {evaluate(scores, truth)[0]:.3f}"
        )
    return "; ".join(out)


def corrected_noisy_bt():  # type: ignore[no-untyped-def]
    """crowd-kit's NoisyBradleyTerry with its analytic gradient corrected (same objective, same
    L-BFGS-B, same random start): what the model gives when fitted as written."""
    from crowdkit.aggregation import NoisyBradleyTerry as CkNoisy
    from scipy.special import expit

    class CorrectedNoisyBT(CkNoisy):
        @staticmethod
        def _compute_gradient(x, np_data, np_workers, labels, workers, regularization_ratio):  # type: ignore[no-untyped-def]
            li, ri, lab = np_data[:, 0], np_data[:, 1], np_data[:, 2]
            y = np.where(li == lab, 1.0, -1.0)
            qi = 1 + labels + np_workers
            gi = qi + workers
            sg, sd, sq = expit(x[gi]), expit(y * (x[li] - x[ri])), expit(y * x[qi])
            p = sg * sd + (1 - sg) * sq
            out = np.zeros_like(x)
            ds = sg * sd * (1 - sd) * y / p
            np.add.at(out, li, -ds)
            np.add.at(out, ri, ds)
            np.add.at(out, qi, -(1 - sg) * sq * (1 - sq) * y / p)
            np.add.at(out, gi, -sg * (1 - sg) * (sd - sq) / p)
            s, x0 = x[1 : labels + 1], x[0]
            out[1 : labels + 1] += regularization_ratio * (expit(x0 - s) - expit(s - x0))
            out[0] += regularization_ratio * np.sum(expit(s - x0) - expit(x0 - s))
            return out

    return CorrectedNoisyBT


def noisy_gradient_check() -> str:
    """How far crowd-kit NoisyBradleyTerry's analytic gradient is from a finite-difference
    gradient of its own objective on a small random problem, per parameter block. Its fits
    (L-BFGS-B, 100 iterations from a random start) are only as good as this gradient."""
    from crowdkit.aggregation import NoisyBradleyTerry as CkNoisy
    from crowdkit.aggregation.utils import factorize
    from scipy.optimize import approx_fprime

    rng = np.random.default_rng(0)
    items = np.array(list("abcdef"))
    pairs = [rng.choice(items, 2, replace=False) for _ in range(60)]
    rows = [(f"w{k % 4}", a, b, a if rng.random() < 0.6 else b) for k, (a, b) in enumerate(pairs)]
    df = pd.DataFrame(rows, columns=["worker", "left", "right", "label"])
    labels, coded = factorize(df[["left", "right", "label"]].values)
    workers, coded_w = factorize(df["worker"].values)
    fargs = (coded + 1, coded_w, labels.size, workers.size, 1e-5)
    x = rng.normal(size=1 + labels.size + 2 * workers.size) * 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analytic = CkNoisy._compute_gradient(x, *fargs)
        numeric = approx_fprime(x, lambda z: CkNoisy._compute_log_likelihood(z, *fargs), 1e-7)
        corrected = corrected_noisy_bt()._compute_gradient(x, *fargs)
    err = np.abs(analytic - numeric)
    n, w = labels.size, workers.size
    blocks = {
        "item scores": err[1 : n + 1],
        "biases": err[n + 1 : n + 1 + w],
        "skills": err[n + 1 + w :],
    }
    return (
        "crowd-kit NoisyBT analytic vs finite-difference gradient, max abs error: "
        + ", ".join(
            f"{k} {v.max():.3g} (|grad| up to {np.abs(numeric).max():.3g})"
            for k, v in blocks.items()
        )
        + f"; corrected gradient (--noisy-corrected): {np.abs(corrected - numeric).max():.3g}"
    )


def synthetic_frame(
    seed: int, n_items: int, n_workers: int, per_item: float, careless: float, bias_sd: float
) -> tuple[pd.DataFrame, pd.Series]:
    """Sparse random graph (``per_item`` comparisons per item on average), annotator skills 1
    or 0 (a ``careless`` share answers by position/noise only) and position biases N(0.5,
    bias_sd) in log-odds; true scores N(0, 1)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n_items)
    m = int(per_item * n_items / 2)
    left = rng.integers(0, n_items, m)
    right = (left + rng.integers(1, n_items, m)) % n_items
    w = rng.integers(0, n_workers, m)
    skill = np.where(rng.random(n_workers) < careless, 0.0, rng.uniform(0.5, 2.0, n_workers))
    bias = rng.normal(0.5, bias_sd, n_workers)
    p = 1.0 / (1.0 + np.exp(-(skill[w] * (s[left] - s[right]) + bias[w])))
    won = rng.random(m) < p
    frame = pd.DataFrame({"worker": w.astype(str), "left": left, "right": right})
    frame["label"] = np.where(won, left, right)
    return frame, pd.Series(s)


def synthetic(args: argparse.Namespace) -> int:
    from crowdkit.aggregation import BradleyTerry as CkBT
    from crowdkit.aggregation import NoisyBradleyTerry as CkNoisy

    from cynaps_data.consensus._pairwise_core import check_connected, encode_pairs

    print(f"\n== synthetic: sparse graphs, position-biased and careless annotators ({uptime()}) ==")
    settings = [
        ("200 items, 10 cmp/item, 30% careless, bias sd 1", 200, 40, 10, 0.3, 1.0),
        ("200 items, 20 cmp/item, 30% careless, bias sd 1", 200, 40, 20, 0.3, 1.0),
        ("100 items, 30 cmp/item, 50% careless, bias sd 2", 100, 30, 30, 0.5, 2.0),
    ]
    for label, n, nw, per, careless, bsd in settings:
        res: dict[str, list[float]] = {
            "ours auto": [],
            "ours BT": [],
            "ck BT": [],
            "ck NoisyBT": [],
        }
        done = 0
        for seed in range(args.seeds):
            frame, truth = synthetic_frame(seed, n, nw, per, careless, bsd)
            try:
                check_connected(encode_pairs(frame))
            except ValueError:
                continue
            done += 1
            fits = {
                "ours auto": get_pairwise_model("auto").fit_predict(frame),
                "ours BT": BradleyTerry().fit_predict(frame),
                "ck BT": CkBT(n_iter=100).fit_predict(frame),
            }
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits["ck NoisyBT"] = CkNoisy(n_iter=100).fit_predict(frame)
            for k, sc in fits.items():
                res[k].append(float(spearmanr(sc.reindex(truth.index), truth).statistic))
        print(f"{label} ({done} seeds):")
        for k, v in res.items():
            a = np.array(v)
            print(f"   {k:11s} Spearman mean {a.mean():.4f} sd {a.std():.4f} min {a.min():.4f}")
        wins = np.mean(np.array(res["ours auto"]) > np.maximum(res["ck BT"], res["ck NoisyBT"]))
        print(f"   ours auto beats both crowd-kit models on {wins:.0%} of seeds")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noisy-rows", type=int, default=None, help="NoisyBT on a row subset")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--noisy-seeds",
        type=int,
        default=1,
        help="also fit crowd-kit NoisyBT from random_state 1..N-1 and print the spread",
    )
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument(
        "--noisy-corrected",
        action="store_true",
        help="also fit crowd-kit NoisyBT with its gradient corrected (same objective)",
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="per set, plain BT on each third of the workers by the default's skill",
    )
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_synthetic:
        synthetic(args)
    if not args.skip_real:
        real(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
