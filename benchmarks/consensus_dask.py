"""Dawid-Skene on Dask (``LocalCluster``, 2 worker processes with a memory limit) against the
in-memory fit, per judgement, in the same run (issue 19).

    python benchmarks/consensus_dask.py --judgements 10000000 --dask-judgements 100000000 --memory-limit 4GB

Synthetic crowd, 5 classes, 5 judgements per task, 2,000 workers with random confusion. The
in-memory fit runs on ``--judgements``; the Dask fit on ``--dask-judgements`` generated on the
workers (``dask.dataframe.from_map``, partitioned by task, so nothing is shuffled and the
client never holds the data). Both run ``1 + --iters`` EM iterations (``tol=-inf``). Prints, for
each, the whole fit (the Dask one includes generating the crowd on the workers and coding the
partitions) and the steady cost of one EM iteration (in memory: the fit with ``1 + --iters`` minus the
fit with 1 iteration, over ``iters``, after a warm-up fit, median of 3; Dask: the wall time of each iteration's map-reduce over
the persisted parts), per judgement, and their ratio (the issue's target: within 2x); the
workers' peak memory against their limit, and the labels' agreement with the truth.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

K = 5
PER_TASK = 5
N_WORKERS = 2_000
TASKS_PER_PART = 400_000


def crowd(part: int, n_tasks: int, seed: int = 0) -> pd.DataFrame:
    """Partition ``part``: ``n_tasks`` tasks (ids from ``part * TASKS_PER_PART``), their
    judgements; columns task (int64), worker (int64), label (int64), truth (int64)."""
    rng = np.random.default_rng([seed, part])
    skill = np.random.default_rng(seed).uniform(0.5, 0.95, N_WORKERS)
    truth = rng.integers(0, K, n_tasks)
    task = np.repeat(np.arange(n_tasks) + part * TASKS_PER_PART, PER_TASK)
    worker = rng.integers(0, N_WORKERS, task.size)
    t = np.repeat(truth, PER_TASK)
    ok = rng.random(task.size) < skill[worker]
    label = np.where(ok, t, rng.integers(0, K, task.size))
    return pd.DataFrame({"task": task, "worker": worker, "label": label, "truth": t})


def sizes(judgements: int) -> list[int]:
    tasks = judgements // PER_TASK
    full, rest = divmod(tasks, TASKS_PER_PART)
    return [TASKS_PER_PART] * full + ([rest] if rest else [])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--judgements", type=int, default=2_000_000, help="in-memory size")
    parser.add_argument("--dask-judgements", type=int, default=None, help="Dask size")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    dask_n = args.dask_judgements or args.judgements

    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from cynaps_data.consensus import DawidSkene, fit_dask
    from cynaps_data.consensus.dask import Cluster

    map_seconds: list[float] = []
    plain_map = Cluster.map

    def timed_map(self, fn, *model):  # one call per EM iteration (plus the start)
        t0 = time.perf_counter()
        out = plain_map(self, fn, *model)
        map_seconds.append(time.perf_counter() - t0)
        return out

    Cluster.map = timed_map

    load = os.getloadavg()[0]
    parts = sizes(args.judgements)
    mem_df = pd.concat([crowd(i, n) for i, n in enumerate(parts)], ignore_index=True)
    truth = mem_df.groupby("task")["truth"].first()
    frame = mem_df[["task", "worker", "label"]]
    DawidSkene(n_iter=1, tol=-np.inf).fit(frame)  # warm-up (imports, first-touch memory)
    diffs, whole = [], []
    for _ in range(3):  # the difference of two fits is noisy: the median of three
        start = time.perf_counter()
        DawidSkene(n_iter=1, tol=-np.inf).fit(frame)
        mem_one = time.perf_counter() - start
        start = time.perf_counter()
        mem = DawidSkene(n_iter=1 + args.iters, tol=-np.inf).fit(frame)
        whole.append(time.perf_counter() - start)
        diffs.append((whole[-1] - mem_one) / args.iters)
    mem_s, mem_iter = float(np.median(whole)), float(np.median(diffs))
    mem_acc = float((mem.labels_ == truth.loc[mem.labels_.index]).mean())
    del mem_df, mem

    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            memory_limit=args.memory_limit,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        import threading

        peak_rss = [0]
        done = threading.Event()

        def watch() -> None:  # the workers' process memory, sampled every 0.5 s
            while not done.wait(0.5):
                info = client.scheduler_info()["workers"].values()
                peak_rss[0] = max([peak_rss[0], *(w["metrics"].get("memory", 0) for w in info)])

        first_workers = set(client.scheduler_info()["workers"])
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        dparts = sizes(dask_n)
        ddf = dd.from_map(crowd, list(range(len(dparts))), dparts)
        start = time.perf_counter()
        model = fit_dask(
            DawidSkene(n_iter=1 + args.iters, tol=-np.inf),
            ddf[["task", "worker", "label"]],
            partitioned_by_task=True,
        )
        fit_s = time.perf_counter() - start
        import dask

        def hits(labels: pd.Series, part: int, n_tasks: int) -> tuple[int, int]:
            truth = crowd(part, n_tasks).groupby("task")["truth"].first()  # again, on a worker
            return int((labels == truth.loc[labels.index]).sum()), len(labels)

        counts = dask.compute(
            *[
                dask.delayed(hits)(lab, i, n)
                for i, (lab, n) in enumerate(zip(model.labels_.to_delayed(), dparts, strict=True))
            ]
        )
        agree = sum(c[0] for c in counts) / sum(c[1] for c in counts)
        done.set()
        watcher.join()
        peak = peak_rss[0]
        restarted = len(first_workers - set(client.scheduler_info()["workers"]))
        limit = cluster.workers[next(iter(cluster.workers))].memory_manager.memory_limit
    dask_iter = float(np.median(map_seconds[1:])) if len(map_seconds) > 1 else float("nan")
    per_mem, per_dask = mem_iter / args.judgements, dask_iter / dask_n
    whole_mem, whole_dask = mem_s / args.judgements, fit_s / dask_n
    print(
        f"== Dawid-Skene, {1 + args.iters} iterations, K={K} (load {load:.1f} -> "
        f"{os.getloadavg()[0]:.1f}) ==\n"
        f"  in memory   {args.judgements:>12,} judgements: fit {mem_s:8.1f} s"
        f" ({whole_mem * 1e9:.0f} ns/judgement), one iteration {mem_iter:.2f} s"
        f" ({per_mem * 1e9:.0f} ns/judgement) acc {mem_acc:.4f}\n"
        f"  Dask {args.workers}x{args.memory_limit} {dask_n:>12,} judgements: fit {fit_s:8.1f} s incl."
        f" generating the crowd ({whole_dask * 1e9:.0f} ns/judgement), one iteration"
        f" {dask_iter:.2f} s (median; {per_dask * 1e9:.0f} ns/judgement) acc {agree:.4f}\n"
        f"  per-judgement cost ratio Dask / in memory: one iteration {per_dask / per_mem:.2f}x"
        f" (target <= 2x), whole fit {whole_dask / whole_mem:.2f}x\n"
        f"  worker peak memory {peak / 2**30:.2f} GiB of {limit / 2**30:.2f} GiB (sampled every"
        f" 0.5 s), workers restarted: {restarted}"
    )


if __name__ == "__main__":
    main()
