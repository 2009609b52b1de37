"""Typed ingest: a DataFrame through ``upload_dataframe`` vs raw ``sqlite3.executemany``, and a
large Parquet file through ``upload_parquet`` with the client's peak RSS.

    python benchmarks/ingest.py [--rows 1000000] [--parquet-rows 10000000]

Part 1: a 1,000,000-row DataFrame (int id, text, float, timestamp) → ``upload_dataframe`` to a
platform in its own process (``cynaps serve``), end to end (checks, encoding, HTTP, insert). The
baseline, measured in the same run, inserts the same rows (the same JSON data text and ids) into
a table with the platform's schema and unique index via ``sqlite3.executemany`` in one
transaction; only the executemany is timed. Targets: >= 100,000 rows/s and >= 1/4 of raw.
Part 2: a Parquet file of ``--parquet-rows`` rows → ``upload_parquet`` in a fresh client
process; prints its peak RSS (target < 1 GB). Label Studio 1.23 measured here: 3,100-6,600
tasks/s.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

import cynaps_data as cynaps
from cynaps_data.io import schema as wire
from cynaps_data.server.tables import metadata

try:
    from ._platform import ServerProcess, add_database_url
except ImportError:  # run as a script
    from _platform import ServerProcess, add_database_url

LABELS = ["positive", "negative"]


def frame(n: int, start: int = 0) -> pd.DataFrame:
    """``id`` int64, ``text`` str, ``score`` float64, ``at`` datetime64[ns] — one row per task."""
    ids = np.arange(start, start + n, dtype=np.int64)
    rng = np.random.default_rng(start)
    return pd.DataFrame(
        {
            "id": ids,
            "text": [
                f"review {i}: the product arrived on time and works as described" for i in ids
            ],
            "score": rng.random(n),
            "at": pd.Timestamp("2024-01-01") + pd.to_timedelta(ids, unit="s"),
        }
    )


def raw_sqlite(df: pd.DataFrame) -> float:
    """Seconds for executemany of the same rows (same data JSON, same ids) into the platform's
    schema with its unique (project_id, external_id) index, in one transaction."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    cols = {c: wire.encode_array(table[c]).to_pylist() for c in ("text", "score", "at")}
    rows = [
        (
            "proj_raw",
            str(i),
            orjson.dumps({"text": t, "score": s, "at": a}).decode(),
            None,
            None,
            3,
            0.0,
        )
        for i, t, s, a in zip(
            df["id"].tolist(), cols["text"], cols["score"], cols["at"], strict=True
        )
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.db"
        engine = sa.create_engine(f"sqlite:///{path}")
        metadata.create_all(engine)
        engine.dispose()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO tasks (project_id, external_id, data, gold, predictions, needed, updated_at,"
            " status, n_judgements, charged, released) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, 0, 0)"
            " ON CONFLICT (project_id, external_id) DO NOTHING",
            rows,
        )
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
        return elapsed


def write_parquet(path: Path, n: int, chunk: int = 1_000_000, start: int = 0) -> None:
    """``n`` rows of :func:`frame` (ids from ``start``) into one Parquet file, a chunk at a time."""
    writer = None
    for offset in range(0, n, chunk):
        rows = min(chunk, n - offset)
        table = pa.Table.from_pandas(frame(rows, start + offset), preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=250_000)
    if writer is not None:
        writer.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc), a load-independent proxy."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib() -> int:
    """Peak RSS of this process in KiB: VmHWM on Linux (there ru_maxrss can carry the parent's
    peak across fork+exec), else ``resource.getrusage``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def parquet_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process so that its peak RSS is the upload's alone."""
    client = cynaps.Client(api_key=args.key, base_url=args.base_url, timeout=600)
    project = client.projects.get(args.project)
    before = peak_rss_kib()
    result = project.upload_parquet(
        args.parquet, id_column="id", batch_size=args.batch_size, progress=False
    )
    peak = peak_rss_kib()
    print(
        orjson.dumps(
            {
                "created": result.created,
                "seconds": result.seconds,
                "peak_kib": peak,
                "start_kib": before,
            }
        ).decode()
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--parquet-rows", type=int, default=10_000_000)
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--project", help=argparse.SUPPRESS)
    parser.add_argument("--parquet", help=argparse.SUPPRESS)
    add_database_url(parser)
    args = parser.parse_args()
    if args.child:
        parquet_child(args)
        return

    df = frame(args.rows)
    raw = raw_sqlite(df)
    with ServerProcess(database_url=args.database_url) as server:
        client = cynaps.Client(api_key=server.key, base_url=server.base_url, timeout=600)
        project = client.projects.create(name="ingest bench", labels=LABELS)
        load_before = os.getloadavg()[0]
        server_cpu = cpu_seconds(server.proc.pid)
        client_cpu = time.process_time()
        started = time.perf_counter()
        result = project.upload_dataframe(
            df, id_column="id", batch_size=args.batch_size, progress=False
        )
        ours = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        server_cpu = cpu_seconds(server.proc.pid) - server_cpu
        load_after = os.getloadavg()[0]
        assert result.created == args.rows, result
        again = project.upload_dataframe(
            df.head(100_000), id_column="id", batch_size=args.batch_size, progress=False
        )
        assert again.created == 0 and again.duplicates == 100_000
    raw_rate, our_rate = args.rows / raw, args.rows / ours
    print(
        f"rows: {args.rows:,}  batch size: {args.batch_size:,}  columns: id int64, text, score float64, at datetime64"
    )
    print(f"raw sqlite3.executemany  : {raw:7.2f} s  {raw_rate:12,.0f} rows/s")
    print(f"upload_dataframe (e2e)   : {ours:7.2f} s  {our_rate:12,.0f} rows/s")
    print(
        f"ratio (ours / raw)       : {our_rate / raw_rate:.2f}  (targets: >= 0.25 and >= 100,000 rows/s)"
    )
    per_m = 1_000_000 / args.rows
    print(
        f"CPU per 1M rows          : server {server_cpu * per_m:.2f} s, client {client_cpu * per_m:.2f} s"
        f" (client incl. whole-frame checks and encoding; server process incl. HTTP)"
    )
    print(
        f"load average (1 min)     : {load_before:.2f} before, {load_after:.2f} after the upload"
        f" ({os.cpu_count()} cores)"
    )
    del df

    if args.parquet_rows <= 0:
        return
    with tempfile.TemporaryDirectory(prefix="cynaps-ingest-") as tmp:
        path = Path(tmp) / "big.parquet"
        write_parquet(path, args.parquet_rows)
        size = path.stat().st_size
        with ServerProcess(database_url=args.database_url) as server:
            client = cynaps.Client(api_key=server.key, base_url=server.base_url, timeout=600)
            project = client.projects.create(name="parquet bench", labels=LABELS)
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--key",
                    server.key,
                    "--base-url",
                    server.base_url,
                    "--project",
                    project.id,
                    "--parquet",
                    str(path),
                    "--batch-size",
                    str(args.batch_size),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
        out = orjson.loads(child.stdout.strip().splitlines()[-1])
        assert out["created"] == args.parquet_rows, out
        print(
            f"upload_parquet {args.parquet_rows:,} rows ({size / 2**20:,.0f} MiB file): {out['seconds']:.1f} s, "
            f"{args.parquet_rows / out['seconds']:,.0f} rows/s; client peak RSS {out['peak_kib'] / 1024:,.0f} MiB "
            f"(after imports {out['start_kib'] / 1024:,.0f} MiB; target < 1024 MiB)"
        )


if __name__ == "__main__":
    main()
