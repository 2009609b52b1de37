"""A partitioned Parquet dataset up to the platform and back, with the client's peak memory
(issue 19: "a 100M-row partitioned export/upload round trip with client peak RSS under 1 GB").

    python benchmarks/partitioned_roundtrip.py --rows 100000000
    python benchmarks/partitioned_roundtrip.py --rows 2000000 --database-url postgresql://...

Writes ``--rows`` rows (``id`` int64, ``text``, ``score`` float64, ``at`` timestamp; files of
``--rows-per-file``) into a dataset directory; a ``cynaps serve`` on a fresh SQLite file (or
PostgreSQL database) takes ``project.upload_parquet(directory, id_column="id")`` from a fresh
client process, and a second fresh client process writes ``project.to_parquet(directory)``.
Each child prints its wall time and its peak RSS (VmHWM: the whole process, imports included).
Baseline, same run: pyarrow copying the same dataset directory to another (``pyarrow.dataset``
read + ``write_dataset``, streamed), i.e. what moving these rows between Parquet files costs
with no platform in between. The export is checked: its row count, and the ids of its first
and last rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow.dataset as pa_ds

import cynaps_data as cynaps

try:
    from ._platform import ServerProcess, add_database_url
    from .ingest import LABELS, peak_rss_kib, write_parquet
except ImportError:  # run as a script
    from _platform import ServerProcess, add_database_url
    from ingest import LABELS, peak_rss_kib, write_parquet


def write_dataset(directory: Path, rows: int, per_file: int) -> None:
    directory.mkdir(parents=True)
    for i, start in enumerate(range(0, rows, per_file)):
        write_parquet(directory / f"part-{i:05d}.parquet", min(per_file, rows - start), start=start)


def child(args: argparse.Namespace) -> None:
    """Runs in a fresh process, so that its peak RSS is this one step's alone."""
    client = cynaps.Client(api_key=args.key, base_url=args.base_url, timeout=3600)
    project = client.projects.get(args.project)
    start = time.perf_counter()
    if args.child == "upload":
        result = project.upload_parquet(args.path, id_column="id", progress=False)
        done = {"created": result.created}
    else:
        project.to_parquet(args.path)
        done = {}
    seconds = time.perf_counter() - start
    print(orjson.dumps({**done, "seconds": seconds, "peak_kib": peak_rss_kib()}).decode())


def run_child(server: ServerProcess, project: str, step: str, path: Path) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            step,
            "--key",
            server.key,
            "--base-url",
            server.base_url,
            "--project",
            project,
            "--path",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"{step} child failed:\n{out.stderr[-4000:]}")
    return orjson.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rows-per-file", type=int, default=5_000_000)
    parser.add_argument("--tmp", default=None, help="where the datasets go (default: $TMPDIR)")
    parser.add_argument("--child", choices=["upload", "export"], default=None)
    for name in ("--key", "--base-url", "--project", "--path"):
        parser.add_argument(name)
    add_database_url(parser)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cynaps-roundtrip-", dir=args.tmp) as tmp:
        source, copy, exported = Path(tmp) / "in", Path(tmp) / "copy", Path(tmp) / "out"
        write_dataset(source, args.rows, args.rows_per_file)
        size = sum(f.stat().st_size for f in source.iterdir())
        start = time.perf_counter()
        pa_ds.write_dataset(pa_ds.dataset(source), copy, format="parquet")
        baseline = time.perf_counter() - start
        shutil.rmtree(copy)
        with ServerProcess(database_url=args.database_url) as server:
            client = cynaps.Client(api_key=server.key, base_url=server.base_url, timeout=600)
            project = client.projects.create(name="round trip", labels=LABELS)
            up = run_child(server, project.id, "upload", source)
            assert up["created"] == args.rows, up
            down = run_child(server, project.id, "export", exported)
        back = pa_ds.dataset(exported, format="parquet")
        n_back = back.count_rows()
        first = back.head(1, columns=["external_id"])["external_id"][0].as_py()
    assert n_back == args.rows and first == "0", (n_back, first)
    rows = args.rows
    print(
        f"== partitioned round trip, {rows:,} rows ({size / 2**20:,.0f} MiB of Parquet in"
        f" {-(-rows // args.rows_per_file)} files; load {load:.1f} -> {os.getloadavg()[0]:.1f}) =="
    )
    print(
        f"  upload_parquet(directory)  {up['seconds']:8.1f} s {rows / up['seconds']:>12,.0f} rows/s"
        f"   client peak RSS {up['peak_kib'] / 1024:,.0f} MiB (target < 1024 MiB)"
    )
    print(
        f"  to_parquet(directory)      {down['seconds']:8.1f} s {rows / down['seconds']:>12,.0f} rows/s"
        f"   client peak RSS {down['peak_kib'] / 1024:,.0f} MiB (target < 1024 MiB)"
    )
    print(
        f"  baseline: pyarrow dataset copy of the same files {baseline:.1f} s"
        f" ({rows / baseline:,.0f} rows/s); export / copy {down['seconds'] / baseline:.1f}x,"
        f" upload / copy {up['seconds'] / baseline:.1f}x"
    )
    print(f"  exported rows {n_back:,} (first id {first!r})")


if __name__ == "__main__":
    main()
