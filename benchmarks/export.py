"""Export benchmark: ``project.to_pandas()`` on a local platform against Parquet and Label Studio.

The platform runs in its own process (``cynaps serve``, as ``benchmarks/upload.py``). One run:

1. a project of ``--tasks`` tasks (default 1,000,000) × 3 judgements, created through the import
   endpoint (tasks *with* judgements, in batches; never one HTTP call per judgement), then
   ``to_pandas()`` (Arrow IPC streamed over HTTP → typed frame) timed next to
   ``pyarrow.parquet.read_table(path).to_pandas()`` of the same frame written to Parquet in this
   run (the baseline; target: ≤ 3× it). The first call after the import is "cold", then
   ``--repeat`` more calls ("warm"). Each call also prints the CPU seconds of the client and of
   the platform process (load-independent, unlike wall time on a shared machine) and the load
   average;
2. a project of ``--small`` tasks (default 100,000) × 3 judgements: ``to_pandas()`` timed next
   to Label Studio 1.23's JSON export of 100,000 tasks, measured on this kind of machine at
   197.8 s (/work/shared/reference; target: ≥ 200× faster). The seed JSON export of the same
   project is timed too, for context.

Peak RSS of the client and of the platform process is printed at the end.

    python benchmarks/export.py                      # the full run (a few minutes)
    python benchmarks/export.py --tasks 100000 --small 20000   # quick
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

import cynaps_data as cynaps
from cynaps_data.io import export as io_export

try:
    from ._platform import ServerProcess, add_database_url
except ImportError:  # run as a script
    from _platform import ServerProcess, add_database_url

LABELS = ["Electronics", "Clothing", "Home & Garden", "Sports", "Other"]
LABEL_STUDIO_100K_SECONDS = 197.8  # Label Studio 1.23 JSON export, 100,000 tasks (reference)
BATCH = 50_000


def items(start: int, stop: int, judgements: int) -> list[dict]:
    """Tasks like the seed's with ``judgements`` annotator answers each (mostly agreeing)."""
    out = []
    for i in range(start, stop):
        truth = LABELS[i % 5]
        votes = [
            {
                "worker": f"w{(i + k) % 50}",
                "label": truth if (i * 7 + k) % 10 else LABELS[(i + k + 1) % 5],
                "created_at": 1.7e9 + i,
                "duration": 3.0 + k,
            }
            for k in range(judgements)
        ]
        out.append(
            {
                "data": {
                    "image_url": f"https://cdn.example.com/products/item{i}.jpg",
                    "product_id": f"SKU{i}",
                    "price": round(i * 0.37 % 500, 2),
                    "in_stock": i % 3 != 0,
                },
                "external_id": f"SKU{i}",
                "judgements": votes,
            }
        )
    return out


def build(client: cynaps.Client, n: int, judgements: int) -> tuple[cynaps.Project, float]:
    project = client.projects.create(
        name=f"export benchmark {n}",
        labels=LABELS,
        quality_settings={
            "min_annotators": judgements,
            "consensus_threshold": 0.66,
            "enable_expert_review": False,
        },
    )
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        project.import_tasks(items(start, min(start + BATCH, n), judgements), batch_size=BATCH)
    return project, time.perf_counter() - started


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(call: Callable[[], Any], server_pid: int) -> tuple[Any, float, str]:
    """``call()``, its wall seconds, and its CPU seconds (client, platform) and load average."""
    server0, client0 = server_cpu(server_pid), time.process_time()
    started = time.perf_counter()
    result = call()
    wall = time.perf_counter() - started
    client, server = time.process_time() - client0, server_cpu(server_pid) - server0
    return (
        result,
        wall,
        f"cpu client {client:.2f} s + platform {server:.2f} s, load {os.getloadavg()[0]:.1f}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--judgements", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2, help="warm calls after the cold one")
    add_database_url(parser)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cynaps-export-bench-"))
    with ServerProcess(workforce=False, database_url=args.database_url) as server:
        pid = server.proc.pid
        client = cynaps.Client(api_key=server.key, base_url=server.base_url, timeout=600)

        project, setup = build(client, args.tasks, args.judgements)
        print(
            f"[setup] imported {args.tasks:,} tasks x {args.judgements} judgements in {setup:.1f} s"
        )
        frame, ours, cpu = timed(project.to_pandas, pid)
        assert (
            len(frame) == args.tasks
            and int(frame["n_annotations"].sum()) == args.tasks * args.judgements
        )
        path = tmp / "equivalent.parquet"
        io_export.write_parquet(frame, path)
        del frame
        baseline_frame, baseline, baseline_cpu = timed(lambda: pq.read_table(path).to_pandas(), pid)
        assert len(baseline_frame) == args.tasks
        del baseline_frame
        print(
            f"to_pandas(), {args.tasks:,} tasks x {args.judgements}: {ours:.2f} s ({cpu})  |  "
            f"baseline pyarrow.parquet.read_table().to_pandas() of the same frame: {baseline:.2f} s "
            f"({baseline_cpu})  |  ratio {ours / baseline:.2f}x (target <= 3x)"
        )
        for i in range(args.repeat):
            again, warm, cpu = timed(project.to_pandas, pid)
            del again
            print(f"  warm call {i + 1}: {warm:.2f} s ({cpu})  |  ratio {warm / baseline:.2f}x")

        small, setup = build(client, args.small, args.judgements)
        frame, ours, cpu = timed(small.to_pandas, pid)
        t0 = time.perf_counter()
        records = small.export("json")
        seed_json = time.perf_counter() - t0
        assert len(frame) == len(records) == args.small
        scale = args.small / 100_000
        ls = LABEL_STUDIO_100K_SECONDS * scale
        print(
            f"to_pandas(), {args.small:,} tasks x {args.judgements}: {ours:.2f} s ({cpu})  |  Label Studio 1.23 JSON "
            f"export (197.8 s per 100,000 tasks{', scaled' if scale != 1 else ''}): {ls:.1f} s  |  "
            f"{ls / ours:.0f}x faster (target >= 200x)  |  our seed JSON export: {seed_json:.2f} s"
        )
        print(
            f"peak RSS: client {peak_rss_mb():.0f} MB, platform process {server_peak_rss_mb(pid):.0f} MB"
        )
        client.close()


if __name__ == "__main__":
    main()
