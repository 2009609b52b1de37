"""Free-text aggregation on CrowdSpeech (dev-clean, dev-other): WER and fit time beside crowd-kit.

Run from the repo root (crowd-kit installed beside cynaps_data):

    python benchmarks/types_text.py             # both splits, everything (~3 min)
    python benchmarks/types_text.py --quick     # the first 400 recordings of each split

Every text goes through the 'words' normalisation of the data's BASELINE.md first (lower case,
every character but letters, digits, whitespace and the apostrophe to a space, split on
whitespace; NaN = empty), for every method alike. Printed per split: WER (corpus: total edits /
reference words; mean per item: mean of per-recording WER) of a random single worker (exact
expectation), the medoid, crowd-kit's ``ROVER(tokenizer=str.split, detokenizer=' '.join)``
(input rows in file order) and our methods; fit seconds of crowd-kit's ROVER and of our default,
both single-threaded in this process, and their ratio. No method sees the gold.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cynaps_data.consensus.text import (  # noqa: E402
    TextMedoid,
    TextNormalizer,
    TextROVER,
    word_edit_distance,
    word_error_rate,
)

DATA = Path("/work/shared/data/freetext/crowdspeech")
SPLITS = ("dev-clean", "dev-other")
WORDS = TextNormalizer(lowercase=True, punctuation="space", keep="'")


def load(split: str, data_dir: Path = DATA) -> tuple[pd.DataFrame, pd.Series]:
    """Long frame ``task, worker, text`` (file order) and gold Series indexed by task."""
    df = pd.read_csv(data_dir / f"crowdspeech-{split}-crowd.tsv", sep="\t")
    df = df.rename(
        columns={
            "INPUT:audio": "task",
            "OUTPUT:transcription": "text",
            "ASSIGNMENT:worker_id": "worker",
        }
    )[["task", "worker", "text"]]
    gt = pd.read_csv(
        data_dir / f"crowdspeech-{split}-gt.txt",
        sep="\t",
        header=None,
        names=["task", "ref"],
        quoting=3,
    )
    return df, gt.set_index("task")["ref"]


def normalised(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["text"] = [" ".join(w) for w in WORDS.many(df["text"].tolist())]
    return out


def random_worker(df: pd.DataFrame, ref: pd.Series) -> tuple[float, float]:
    """Exact expectation of picking one answer per task uniformly."""
    rw = dict(zip(ref.index, WORDS.many(ref.tolist()), strict=True))
    hw = WORDS.many(df["text"].tolist())
    e = np.array(
        [word_edit_distance(rw[t], h) for t, h in zip(df["task"], hw, strict=True)], dtype=float
    )
    n = np.array([len(rw[t]) for t in df["task"]], dtype=float)
    per_task = pd.DataFrame({"task": df["task"].to_numpy(), "e": e, "n": n}).groupby("task")
    m = per_task.mean()
    return float(m["e"].sum() / m["n"].sum()), float((m["e"] / m["n"]).mean())


_CPU: dict[str, float] = {}


def timed(fn):
    """Wall seconds of ``fn()`` and its result; the CPU seconds of this process during the call
    go to ``_CPU["last"]`` (other jobs on a shared machine inflate wall time, much less CPU)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    _CPU["last"] = time.process_time() - c
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="first 400 recordings of each split")
    ap.add_argument("--splits", nargs="*", default=list(SPLITS))
    ap.add_argument("--no-crowdkit", action="store_true")
    ap.add_argument("--variants", action="store_true", help="also print the non-default variants")
    args = ap.parse_args()

    print(f"numpy {np.__version__}, pandas {pd.__version__}", end="")
    if not args.no_crowdkit:
        import crowdkit
        from crowdkit.aggregation import ROVER

        print(f", crowd-kit {crowdkit.__version__}", end="")
    print(f"; load average {os.getloadavg()[0]:.2f}")

    methods = {
        "medoid (TextMedoid())": lambda: TextMedoid(),
        "ROVER, uniform votes (TextROVER(weighted=False))": lambda: TextROVER(weighted=False),
        "ROVER, reliability-weighted (TextROVER(), default)": lambda: TextROVER(),
    }
    if args.variants:
        methods.update(
            {
                "medoid, reliability-weighted": lambda: TextMedoid(weighted=True),
                "ROVER gamma=1": lambda: TextROVER(gamma=1.0),
                "ROVER gamma=2": lambda: TextROVER(gamma=2.0),
                "ROVER gamma=4": lambda: TextROVER(gamma=4.0),
                "ROVER gamma=8": lambda: TextROVER(gamma=8.0),
                "ROVER gamma=12": lambda: TextROVER(gamma=12.0),
                "ROVER n_iter=1": lambda: TextROVER(n_iter=1),
                "ROVER kappa=0": lambda: TextROVER(kappa=0.0),
            }
        )
    default = "ROVER, reliability-weighted (TextROVER(), default)"

    for split in args.splits:
        df, ref = load(split)
        if args.quick:
            keep = pd.unique(df["task"])[:400]
            df = df[df["task"].isin(keep)].reset_index(drop=True)
            ref = ref[ref.index.isin(keep)]
        ref = ref[ref.index.isin(df["task"])]
        dfn = normalised(df)
        print(
            f"\n== {split}: {df['task'].nunique()} recordings, {len(df)} transcriptions, "
            f"{df['worker'].nunique()} workers, norm 'words' =="
        )
        rows = []
        c, m = random_worker(dfn, ref)
        rows.append(("random single worker (expectation)", c, m, None, None))
        ck_time = None
        if not args.no_crowdkit:
            ck_time, ck = timed(
                lambda d=dfn: ROVER(tokenizer=str.split, detokenizer=" ".join).fit_predict(d)
            )
            ck_cpu = _CPU["last"]
            c, m = word_error_rate(ck, ref, WORDS)
            rows.append(("crowd-kit ROVER (file order)", c, m, ck_time, ck_cpu))
        our_time = None
        for name, make in methods.items():
            t, out = timed(lambda make=make, d=dfn: make().fit_predict(d))
            c, m = word_error_rate(out, ref, WORDS)
            rows.append((name, c, m, t, _CPU["last"]))
            if name == default:
                our_time, our_cpu = t, _CPU["last"]
        width = max(len(r[0]) for r in rows)
        print(f"{'method':<{width}}  WER corpus  WER mean/item  fit wall s  fit CPU s")
        for name, c, m, t, cpu in rows:
            ts = "" if t is None else f"{t:10.2f}  {cpu:9.2f}"
            print(f"{name:<{width}}  {c:10.4f}  {m:13.4f}  {ts}")
        if ck_time is not None and our_time is not None:
            print(
                f"speed (wall): crowd-kit ROVER {ck_time:.2f} s / our default {our_time:.2f} s = "
                f"{ck_time / our_time:.1f}x  (target >= 5x)\n"
                f"speed (CPU):  crowd-kit ROVER {ck_cpu:.2f} s / our default {our_cpu:.2f} s = "
                f"{ck_cpu / our_cpu:.1f}x;  load average now {os.getloadavg()[0]:.2f}"
            )


if __name__ == "__main__":
    main()
