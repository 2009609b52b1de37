"""Export benchmark: ``project.to_pandas()`` on a local platform against Parquet and Label Studio.

One run:

1. a project of ``--tasks`` tasks (default 1,000,000) × 3 judgements, created through the import
   endpoint (tasks *with* judgements, in batches; never one HTTP call per judgement), then
   ``to_pandas()`` (Arrow IPC over HTTP from a cold platform → typed frame) timed next to
   ``pyarrow.parquet.read_table(path).to_pandas()`` of the same frame written to Parquet in this
   run (the baseline; target: ≤ 3× it);
2. a project of ``--small`` tasks (default 100,000) × 3 judgements: ``to_pandas()`` timed next
   to Label Studio 1.23's JSON export of 100,000 tasks, measured on this kind of machine at
   197.8 s (/work/shared/reference; target: ≥ 200× faster). The seed JSON export of the same
   project is timed too, for context.

Peak RSS of the process (platform thread included) is printed at the end.

    python benchmarks/export.py                      # the full run (a few minutes)
    python benchmarks/export.py --tasks 100000 --small 20000   # quick
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

import cynaps_data as cynaps
from cynaps_data.io import export as io_export
from cynaps_data.server.platform import LocalPlatform

LABELS = ["Electronics", "Clothing", "Home & Garden", "Sports", "Other"]
LABEL_STUDIO_100K_SECONDS = 197.8  # Label Studio 1.23 JSON export, 100,000 tasks (reference)
BATCH = 50_000


def items(start: int, stop: int, judgements: int) -> list[dict]:
    """Tasks like the seed's with ``judgements`` annotator answers each (mostly agreeing)."""
    out = []
    for i in range(start, stop):
        truth = LABELS[i % 5]
        votes = [
            {"worker": f"w{(i + k) % 50}", "label": truth if (i * 7 + k) % 10 else LABELS[(i + k + 1) % 5],
             "created_at": 1.7e9 + i, "duration": 3.0 + k}
            for k in range(judgements)
        ]
        out.append({
            "data": {"image_url": f"https://cdn.example.com/products/item{i}.jpg", "product_id": f"SKU{i}",
                     "price": round(i * 0.37 % 500, 2), "in_stock": i % 3 != 0},
            "external_id": f"SKU{i}",
            "judgements": votes,
        })
    return out


def build(client: cynaps.Client, n: int, judgements: int) -> tuple[cynaps.Project, float]:
    project = client.projects.create(
        name=f"export benchmark {n}", labels=LABELS,
        quality_settings={"min_annotators": judgements, "consensus_threshold": 0.66, "enable_expert_review": False},
    )
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        project.import_tasks(items(start, min(start + BATCH, n), judgements), batch_size=BATCH)
    return project, time.perf_counter() - started


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--judgements", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cynaps-export-bench-"))
    with LocalPlatform(tmp / "cynaps.db", workforce=False) as platform:
        client = cynaps.Client(api_key=platform.create_customer(), base_url=platform.base_url, timeout=600)

        project, setup = build(client, args.tasks, args.judgements)
        print(f"[setup] imported {args.tasks:,} tasks x {args.judgements} judgements in {setup:.1f} s")
        t0 = time.perf_counter()
        frame = project.to_pandas()
        ours = time.perf_counter() - t0
        assert len(frame) == args.tasks and int(frame["n_annotations"].sum()) == args.tasks * args.judgements
        path = tmp / "equivalent.parquet"
        io_export.write_parquet(frame, path)
        t0 = time.perf_counter()
        baseline_frame = pq.read_table(path).to_pandas()
        baseline = time.perf_counter() - t0
        assert len(baseline_frame) == args.tasks
        del baseline_frame
        t0 = time.perf_counter()
        again = project.to_pandas()
        warm = time.perf_counter() - t0
        del again, frame
        print(
            f"to_pandas(), {args.tasks:,} tasks x {args.judgements}: {ours:.2f} s  |  "
            f"baseline pyarrow.parquet.read_table().to_pandas() of the same frame: {baseline:.2f} s  |  "
            f"ratio {ours / baseline:.1f}x (target <= 3x)  |  second call {warm:.2f} s ({warm / baseline:.1f}x)"
        )

        small, setup = build(client, args.small, args.judgements)
        t0 = time.perf_counter()
        frame = small.to_pandas()
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        records = small.export("json")
        seed_json = time.perf_counter() - t0
        assert len(frame) == len(records) == args.small
        scale = args.small / 100_000
        ls = LABEL_STUDIO_100K_SECONDS * scale
        print(
            f"to_pandas(), {args.small:,} tasks x {args.judgements}: {ours:.2f} s  |  Label Studio 1.23 JSON export "
            f"(197.8 s per 100,000 tasks{', scaled' if scale != 1 else ''}): {ls:.1f} s  |  "
            f"{ls / ours:.0f}x faster (target >= 200x)  |  our seed JSON export: {seed_json:.2f} s"
        )
        print(f"peak RSS (client + platform in one process): {peak_rss_mb():.0f} MB")
        client.close()


if __name__ == "__main__":
    main()
