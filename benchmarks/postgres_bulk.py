"""PostgreSQL bulk paths against their baselines, measured in the same run (issue 19).

    python benchmarks/postgres_bulk.py --database-url postgresql://cynaps:cynaps@127.0.0.1:5432/cynaps_test --tasks 1000000

A fresh database on the given server and a ``cynaps serve`` process on it. Figures:

* upload: ``project.upload_dataframe`` of N tasks (3 data columns and an id) over HTTP, in
  tasks/s, beside a raw psycopg ``COPY`` of the same rows (the JSON texts the platform stores)
  into a copy of the ``tasks`` table with the same indexes (``LIKE tasks INCLUDING ALL``);
  targets >= 100,000 tasks/s and >= 0.5x the raw COPY;
* export: ``project.to_pandas()`` of those N tasks x 3 columns (the Arrow stream from
  PostgreSQL), beside ``cynaps_data.io.export.read_parquet`` of the same typed frame from a
  local Parquet file;
  target <= 3x;
* dataset export: ``project.to_parquet(directory)`` (streamed, partitioned) for the same rows.

The exports are timed in the steady state: after the upload the table is vacuumed
(:func:`settle`), as autovacuum does within a minute of a bulk load.

Each timing is the median of ``--repeat`` runs (upload: one run, it needs an empty project).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

import cynaps_data as cynaps
from cynaps_data.io import export as io_export

try:
    from .storage import serve
except ImportError:  # run as a script
    from storage import serve


def frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": [f"t{i}" for i in range(n)],
            "text": [f"item number {i}" for i in range(n)],
            "n": np.arange(n, dtype=np.int64),
            "score": rng.random(n),
        }
    )


def raw_copy(url: str, df: pd.DataFrame, project_id: str) -> float:
    """Seconds to COPY the same rows into a copy of ``tasks`` with the same indexes."""
    import psycopg

    data = [
        orjson.dumps({"text": t, "n": int(n), "score": float(s)}).decode()
        for t, n, s in zip(df["text"], df["n"], df["score"], strict=True)
    ]
    now = time.time()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE bench_copy (LIKE tasks INCLUDING ALL)")
        conn.commit()
        start = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY bench_copy (project_id, external_id, data, needed, updated_at, status,"
                " n_judgements, charged, released) FROM STDIN"
            ) as copy,
        ):
            for ext, d in zip(df["id"], data, strict=True):
                copy.write_row((project_id, ext, d, 1, now, "pending", 0, False, False))
        conn.commit()
        seconds = time.perf_counter() - start
        conn.execute("DROP TABLE bench_copy")
        conn.commit()
    return seconds


def settle(url: str) -> float:
    """``VACUUM (ANALYZE) tasks``: what autovacuum does to the freshly loaded table within a
    minute of the upload (hint bits, visibility map, statistics). Without it the exports race
    autovacuum's worker for the two cores and pay for setting the hint bits themselves (the
    first read after a bulk load writes every page). Seconds it took."""
    import psycopg

    start = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) tasks")
    return time.perf_counter() - start


def median_time(fn, repeat: int, label: str = "") -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    if label:
        print(f"  ({label}: {', '.join(f'{t:.2f}' for t in times)} s)", flush=True)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--database-url",
        "--postgres",
        dest="url",
        default=os.environ.get("CYNAPS_TEST_POSTGRES_URL"),
        help="a PostgreSQL server where the role may CREATE DATABASE",
    )
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.url:
        sys.exit(
            "pass --database-url postgresql://... (a server where the role may CREATE DATABASE)"
        )
    import psycopg

    df = frame(args.tasks)
    name = f"cynaps_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = args.url.rsplit("/", 1)[0] + "/" + name
    try:
        with tempfile.TemporaryDirectory(prefix="cynaps-pgbulk-") as tmp:
            proc, base, key = serve(url, Path(tmp))
            try:
                with cynaps.Client(api_key=key, base_url=base, timeout=600) as client:
                    project = client.projects.create(name="bulk", labels=["a", "b", "c"])
                    start = time.perf_counter()
                    project.upload_dataframe(df, id_column="id", progress=False)
                    up = time.perf_counter() - start
                    copy = raw_copy(url, df, project.id)
                    vacuum = settle(url)
                    export = median_time(lambda: project.to_pandas(), args.repeat, "to_pandas runs")
                    ref = project.to_pandas()
                    pq_path = Path(tmp) / "same.parquet"
                    io_export.write_parquet(ref, pq_path)
                    read = median_time(
                        lambda: io_export.read_parquet(pq_path), args.repeat, "read_parquet runs"
                    )
                    n = [0]

                    def dataset() -> None:
                        n[0] += 1
                        project.to_parquet(str(Path(tmp) / f"ds{n[0]}"))

                    ds = median_time(dataset, args.repeat)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    n = args.tasks
    print(f"== PostgreSQL bulk paths: {n:,} tasks x 3 columns (load {os.getloadavg()[0]:.1f}) ==")
    print(
        f"  upload   platform {n / up:>10,.0f} tasks/s | raw COPY {n / copy:>10,.0f} tasks/s"
        f" | ratio {copy / up:.2f}x (target >= 0.5x, >= 100,000 tasks/s)"
    )
    print(
        f"  export   to_pandas {export:>7.2f} s | read_parquet {read:>7.2f} s"
        f" | ratio {export / read:.2f}x (target <= 3x)"
    )
    print(f"  dataset  to_parquet(directory) {ds:>7.2f} s ({n / ds:,.0f} tasks/s)")
    print(f"  (exports timed after VACUUM (ANALYZE) tasks, {vacuum:.1f} s, as autovacuum would)")


if __name__ == "__main__":
    main()
