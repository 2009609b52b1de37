"""Annotator throughput: N concurrent annotators submitting judgements for S seconds (SQLite).

The platform runs as ``cynaps serve`` in its own process (real uvicorn on 127.0.0.1, SQLite
file, no sandbox workforce). Annotators are team members created through the API; each one
loops ``POST /v1/annotator/tasks/{id}/judgements?next=true`` (submit and get the next task in
one round trip, as the workbench page does) on a keep-alive ``http.client`` connection. Clients
run in a few processes so that they are not all behind one GIL.

Printed, each measured in this run:
- submit-and-next: judgements/s and p50/p99/max latency (targets: >= 1,000/s, p99 < 100 ms);
- baseline 1, two round trips (``GET /next`` then ``POST …/judgements``), same annotators;
- baseline 2, the HTTP floor: ``GET /healthz`` requests/s with the same client setup;
and the ratios between them.

    python benchmarks/annotate.py [--annotators 50] [--seconds 60] [--processes 2]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _platform import ServerProcess  # noqa: E402

LABELS = ["a", "b", "c"]


def _worker(base: str, keys: list[str], mode: str, seconds: float, out: mp.Queue) -> None:
    """One client process: a thread per key, each looping until the deadline."""
    host, port = base.removeprefix("http://").split(":")
    deadline = time.perf_counter() + seconds
    results: list[tuple[int, list[float], int]] = []
    lock = threading.Lock()

    def run(key: str) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        latencies: list[float] = []
        done = errors = 0

        def call(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
            conn.request(method, path, body=body, headers=auth)
            response = conn.getresponse()
            return response.status, response.read()

        task = None
        while time.perf_counter() < deadline:
            if mode == "healthz":
                started = time.perf_counter()
                status, _ = call("GET", "/healthz")
                latencies.append(time.perf_counter() - started)
                done += status == 200
                continue
            if task is None:
                status, body = call("GET", "/v1/annotator/next")
                if status != 200:
                    errors += status != 204
                    time.sleep(0.01)
                    continue
                task = orjson.loads(body)
            label = LABELS[task["task_id"] % len(LABELS)]
            body = orjson.dumps({"label": label})
            started = time.perf_counter()
            if mode == "submit_next":
                status, raw = call("POST", f"/v1/annotator/tasks/{task['task_id']}/judgements?next=true", body)
                latencies.append(time.perf_counter() - started)
                task = orjson.loads(raw).get("next") if status == 201 else None
            else:  # two round trips: submit, then ask for the next task
                status, raw = call("POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", body)
                task = None
                next_status, next_body = call("GET", "/v1/annotator/next")
                latencies.append(time.perf_counter() - started)
                if next_status == 200:
                    task = orjson.loads(next_body)
            if status == 201:
                done += 1
            else:
                errors += 1
        conn.close()
        with lock:
            results.append((done, latencies, errors))

    threads = [threading.Thread(target=run, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(results)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(base: str, keys: list[str], mode: str, seconds: float, processes: int, server_pid: int) -> dict:
    """Run one load phase; returns counts, latency percentiles (ms) and server CPU per item."""
    cpu_before = cpu_seconds(server_pid)
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    chunks = [keys[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=_worker, args=(base, chunk, mode, seconds, out)) for chunk in chunks if chunk]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [r for _ in procs for r in out.get(timeout=seconds + 300)]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    server_cpu = cpu_seconds(server_pid) - cpu_before
    done = sum(r[0] for r in results)
    errors = sum(r[2] for r in results)
    latencies = sorted(x for r in results for x in r[1])
    pct = (lambda q: 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]) if latencies else (lambda q: float("nan"))
    return {"mode": mode, "done": done, "errors": errors, "rate": done / seconds, "elapsed": elapsed,
            "p50": pct(0.50), "p99": pct(0.99), "max": 1000 * latencies[-1] if latencies else float("nan"),
            "mean": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
            "cpu_ms": 1000 * server_cpu / done if done else float("nan"), "cpu_share": server_cpu / elapsed}


def setup(server: ServerProcess, tasks: int, annotators: int, min_annotators: int) -> tuple[str, list[str]]:
    http_ = requests.Session()
    http_.headers["Authorization"] = f"Bearer {server.key}"

    def ok(method: str, path: str, **kw) -> dict:
        response = http_.request(method, server.base_url + path, timeout=600, **kw)
        response.raise_for_status()
        return response.json()

    pid = ok("POST", "/v1/projects", json={
        "name": "Annotate benchmark", "annotation_type": "classification", "labels": LABELS,
        "quality_settings": {"min_annotators": min_annotators, "consensus_threshold": 0.66, "enable_expert_review": True}})["id"]
    for start in range(0, tasks, 50_000):
        batch = [{"data": {"text": f"benchmark item {i}"}} for i in range(start, min(tasks, start + 50_000))]
        ok("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": batch})
    ok("POST", f"/v1/projects/{pid}/deposit/quote")
    ok("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "card"})
    ok("POST", f"/v1/projects/{pid}/start")
    keys = [ok("POST", "/v1/annotators", json={"name": f"Bench {i}", "role": "annotator"})["api_key"] for i in range(annotators)]
    return pid, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--tasks", type=int, default=40_000)
    parser.add_argument("--min-annotators", type=int, default=3)
    args = parser.parse_args()

    with ServerProcess() as server:
        t0 = time.perf_counter()
        pid, keys = setup(server, args.tasks, args.annotators, args.min_annotators)
        print(f"setup: {args.tasks} tasks, {len(keys)} annotators, min_annotators={args.min_annotators} "
              f"({time.perf_counter() - t0:.1f} s)")
        floor = phase(server.base_url, keys, "healthz", args.baseline_seconds, args.processes, server.proc.pid)
        two = phase(server.base_url, keys, "two_trips", args.baseline_seconds, args.processes, server.proc.pid)
        main_ = phase(server.base_url, keys, "submit_next", args.seconds, args.processes, server.proc.pid)
        status = requests.get(f"{server.base_url}/v1/projects/{pid}/status",
                              headers={"Authorization": f"Bearer {server.key}"}, timeout=60).json()

    print(f"\n== {args.annotators} annotators, {args.processes} client processes, SQLite, cynaps serve in its own process ==")
    fmt = ("  {:<36} {:>7.0f} /s  p50 {:>7.1f} ms  p99 {:>7.1f} ms  max {:>7.1f} ms  "
           "server CPU {:>5.2f} ms/item ({:.0%} of a core)  errors {}")
    for name, r in ((f"submit-and-next ({args.seconds:.0f} s)", main_),
                    (f"baseline: next + submit ({args.baseline_seconds:.0f} s)", two),
                    (f"baseline: GET /healthz ({args.baseline_seconds:.0f} s)", floor)):
        print(fmt.format(name, r["rate"], r["p50"], r["p99"], r["max"], r["cpu_ms"], r["cpu_share"], r["errors"]))
    print(f"  machine load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  ratio submit-and-next / two round trips: {main_['rate'] / two['rate']:.2f}x judgements/s")
    print(f"  ratio submit-and-next / HTTP floor:      {main_['rate'] / floor['rate']:.2f} of /healthz requests/s")
    print(f"  project after the run: {status['judgements']} judgements, {status['completed']} tasks final, "
          f"{status['disputed']} disputed, {status['pending']} pending")
    met = main_["rate"] >= 1000 and main_["p99"] < 100
    print(f"  target >= 1,000 judgements/s and p99 < 100 ms: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
