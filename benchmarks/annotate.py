"""Annotator throughput: N concurrent annotators submitting judgements for S seconds.

The platform runs as ``cynaps serve`` in its own process (real uvicorn on 127.0.0.1, a SQLite
file, or a fresh PostgreSQL database with ``--database-url``; no sandbox workforce).
Annotators are team members created through the API; each one loops
``POST /v1/annotator/tasks/{id}/judgements?next=true`` (submit and get the next task in one
round trip, as the workbench page does) on its own keep-alive HTTP/1.1 connection, waiting
for each answer before sending the next request. The client is a small asyncio (uvloop)
protocol with pre-formatted requests, so that it leaves most of the 2 cores to the server.

Printed, each measured in this run:
- submit-and-next: judgements/s and p50/p99/max latency (targets: >= 1,000/s, p99 < 100 ms);
- baseline 1, two round trips (``GET /next`` then ``POST …/judgements``), same annotators;
- baseline 2, the HTTP floor: ``GET /healthz`` requests/s with the same client setup;
and the ratios between them, with the server's and the client's CPU time per item (the
load-independent figures: the wall-clock ones depend on what else the machine runs).

    python benchmarks/annotate.py [--annotators 50] [--seconds 60] [--processes 1] [--workers 1]
                                  [--adaptive]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _platform import ServerProcess, add_database_url  # noqa: E402

LABELS = ["a", "b", "c"]


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: send a request, await the whole response.

    Deliberately small (the measurement tool should leave the CPU to the server): requests are
    pre-formatted bytes, the response is split at its header end and read to its
    ``Content-Length`` (the platform always sends one).
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        length = (
            int(
                head[at + 17 : head.find(b"\r", at + 17) if head.find(b"\r", at + 17) > 0 else None]
            )
            if at >= 0
            else 0
        )
        if len(self.buffer) >= end + 4 + length:
            status = int(head[9:12])
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed"))

    async def call(self, request: bytes) -> tuple[int, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)  # type: ignore[union-attr]
        return await self.waiter


def _request(method: str, path: str, key: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _annotator(
    host: str, port: int, key: str, mode: str, deadline: float
) -> tuple[int, list[float], int]:
    """One annotator on its own connection, looping until the deadline: ``(done, latencies, errors)``."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(_Connection, host, port)
    latencies: list[float] = []
    done = errors = 0
    bodies = {label: orjson.dumps({"label": label}) for label in LABELS}
    next_request = _request("GET", "/v1/annotator/next", key)
    health = _request("GET", "/healthz", key)
    clock = time.perf_counter
    task = None
    while clock() < deadline:
        if mode == "healthz":
            started = clock()
            status, _ = await conn.call(health)
            latencies.append(clock() - started)
            done += status == 200
            continue
        if task is None:
            status, body = await conn.call(next_request)
            if status != 200:
                errors += status != 204
                await asyncio.sleep(0.01)
                continue
            task = orjson.loads(body)
        body = bodies[LABELS[task["task_id"] % len(LABELS)]]
        started = clock()
        if mode == "submit_next":
            status, raw = await conn.call(
                _request(
                    "POST", f"/v1/annotator/tasks/{task['task_id']}/judgements?next=true", key, body
                )
            )
            latencies.append(clock() - started)
            task = orjson.loads(raw).get("next") if status == 201 else None
        else:  # two round trips: submit, then ask for the next task
            status, raw = await conn.call(
                _request("POST", f"/v1/annotator/tasks/{task['task_id']}/judgements", key, body)
            )
            task = None
            next_status, next_body = await conn.call(next_request)
            latencies.append(clock() - started)
            if next_status == 200:
                task = orjson.loads(next_body)
        if status == 201:
            done += 1
        else:
            errors += 1
    conn.transport.close()  # type: ignore[union-attr]
    return done, latencies, errors


def _worker(base: str, keys: list[str], mode: str, seconds: float, out: mp.Queue) -> None:
    """One client process: an asyncio task per annotator key, each looping until the deadline
    (on uvloop when installed: ``pip install -e '.[bench]'``)."""
    try:
        import uvloop

        run_loop = uvloop.run
    except ImportError:
        run_loop = asyncio.run
    host, port = base.removeprefix("http://").split(":")

    async def run() -> list[tuple[int, list[float], int]]:
        deadline = time.perf_counter() + seconds
        return await asyncio.gather(*(_annotator(host, int(port), k, mode, deadline) for k in keys))

    out.put(run_loop(run()))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants (``--workers``; Linux ``/proc``)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    family, total = {pid}, 0
    changed = True
    while changed:
        changed = False
        for child, (parent, _) in stats.items():
            if parent in family and child not in family:
                family.add(child)
                changed = True
    total = sum(stats[p][1] for p in family if p in stats)
    return total / os.sysconf("SC_CLK_TCK")


def phase(
    base: str, keys: list[str], mode: str, seconds: float, processes: int, server_pid: int
) -> dict:
    """Run one load phase; returns counts, latency percentiles (ms) and server CPU per item."""
    cpu_before = cpu_seconds(server_pid)
    clients_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    chunks = [keys[i::processes] for i in range(processes)]
    procs = [
        ctx.Process(target=_worker, args=(base, chunk, mode, seconds, out))
        for chunk in chunks
        if chunk
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [r for _ in procs for r in out.get(timeout=seconds + 300)]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    server_cpu = cpu_seconds(server_pid) - cpu_before
    clients = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (
        clients.ru_utime + clients.ru_stime - clients_before.ru_utime - clients_before.ru_stime
    )
    done = sum(r[0] for r in results)
    errors = sum(r[2] for r in results)
    latencies = sorted(x for r in results for x in r[1])
    pct = (
        (lambda q: 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))])
        if latencies
        else (lambda q: float("nan"))
    )
    return {
        "mode": mode,
        "done": done,
        "errors": errors,
        "rate": done / seconds,
        "elapsed": elapsed,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "max": 1000 * latencies[-1] if latencies else float("nan"),
        "mean": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
        "cpu_ms": 1000 * server_cpu / done if done else float("nan"),
        "cpu_share": server_cpu / elapsed,
        "client_cpu_ms": 1000 * client_cpu / done if done else float("nan"),
    }


def setup(
    server: ServerProcess, tasks: int, annotators: int, min_annotators: int, adaptive: bool = False
) -> tuple[str, list[str]]:
    http_ = requests.Session()
    http_.headers["Authorization"] = f"Bearer {server.key}"

    def ok(method: str, path: str, **kw) -> dict:
        response = http_.request(method, server.base_url + path, timeout=600, **kw)
        response.raise_for_status()
        return response.json()

    pid = ok(
        "POST",
        "/v1/projects",
        json={
            "name": "Annotate benchmark",
            "annotation_type": "classification",
            "labels": LABELS,
            "quality_settings": {
                "min_annotators": min_annotators,
                "consensus_threshold": 0.66,
                "enable_expert_review": True,
                # adaptive overlap (issue 18): the skill model on every judgement
                **({"mode": "adaptive", "max_annotators": min_annotators + 2} if adaptive else {}),
            },
        },
    )["id"]
    for start in range(0, tasks, 50_000):
        batch = [
            {"data": {"text": f"benchmark item {i}"}}
            for i in range(start, min(tasks, start + 50_000))
        ]
        ok("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": batch})
    ok("POST", f"/v1/projects/{pid}/deposit/quote")
    ok("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "card"})
    ok("POST", f"/v1/projects/{pid}/start")
    keys = [
        ok("POST", "/v1/annotators", json={"name": f"Bench {i}", "role": "annotator"})["api_key"]
        for i in range(annotators)
    ]
    return pid, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (cynaps serve --workers)"
    )
    parser.add_argument("--tasks", type=int, default=60_000)
    parser.add_argument("--min-annotators", type=int, default=3)
    parser.add_argument("--adaptive", action="store_true", help='quality mode "adaptive"')
    add_database_url(parser)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with ServerProcess(workers=args.workers, database_url=args.database_url) as server:
        t0 = time.perf_counter()
        pid, keys = setup(server, args.tasks, args.annotators, args.min_annotators, args.adaptive)
        print(
            f"setup: {args.tasks} tasks, {len(keys)} annotators, min_annotators={args.min_annotators} "
            f"{'(adaptive) ' if args.adaptive else ''}"
            f"({time.perf_counter() - t0:.1f} s)"
        )
        floor = phase(
            server.base_url, keys, "healthz", args.baseline_seconds, args.processes, server.proc.pid
        )
        two = phase(
            server.base_url,
            keys,
            "two_trips",
            args.baseline_seconds,
            args.processes,
            server.proc.pid,
        )
        main_ = phase(
            server.base_url, keys, "submit_next", args.seconds, args.processes, server.proc.pid
        )
        status = requests.get(
            f"{server.base_url}/v1/projects/{pid}/status",
            headers={"Authorization": f"Bearer {server.key}"},
            timeout=60,
        ).json()

    print(
        f"\n== {args.annotators} annotators, {args.processes} client process(es), "
        f"{'PostgreSQL' if args.database_url else 'SQLite'}, "
        f"cynaps serve in its own process(es), --workers {args.workers} =="
    )
    fmt = (
        "  {:<36} {:>7.0f} /s  p50 {:>7.1f} ms  p99 {:>7.1f} ms  max {:>7.1f} ms  "
        "server CPU {:>5.2f} ms/item ({:.0%} of a core)  client CPU {:>5.2f} ms/item  errors {}"
    )
    for name, r in (
        (f"submit-and-next ({args.seconds:.0f} s)", main_),
        (f"baseline: next + submit ({args.baseline_seconds:.0f} s)", two),
        (f"baseline: GET /healthz ({args.baseline_seconds:.0f} s)", floor),
    ):
        print(
            fmt.format(
                name,
                r["rate"],
                r["p50"],
                r["p99"],
                r["max"],
                r["cpu_ms"],
                r["cpu_share"],
                r["client_cpu_ms"],
                r["errors"],
            )
        )
    print(
        f"  machine load average (1 min): {load_before:.1f} before, {os.getloadavg()[0]:.1f} at the end, "
        f"on {os.cpu_count()} cores (others' jobs inflate the wall-clock figures, not CPU ms/item)"
    )
    print(
        f"  ratio submit-and-next / two round trips: {main_['rate'] / two['rate']:.2f}x judgements/s"
    )
    print(
        f"  ratio submit-and-next / HTTP floor:      {main_['rate'] / floor['rate']:.2f} of /healthz requests/s"
    )
    print(
        f"  project after the run: {status['judgements']} judgements, {status['completed']} tasks final, "
        f"{status['disputed']} disputed, {status['pending']} pending"
    )
    met = main_["rate"] >= 1000 and main_["p99"] < 100
    print(f"  target >= 1,000 judgements/s and p99 < 100 ms: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
