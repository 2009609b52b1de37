"""Webhook delivery throughput and latency (issue 17).

A local receiver (an asyncio HTTP/1.1 keep-alive server in its own process, a few thousand
posts/s on one core) answers 200 to every message. The platform runs in this process
(``LocalPlatform``: uvicorn thread + delivery worker, SQLite, default delivery settings except
``webhook_allow_loopback``). Events are committed through
``outbox.emit`` in write transactions of ``--per-txn`` events, as state changes do:

1. burst: ``--n`` events committed as fast as possible; deliveries/s = n / (last receipt − first
   commit), and commit-to-receipt latencies (they include the queue a burst builds);
2. paced: the same number committed at ``--rate`` events/s; p50/p99 commit-to-receipt.

Baseline, same run: the same bodies POSTed straight to the same receiver by ``--concurrency``
threads with ``requests`` (what the receiver and the loopback can take with no platform).
Nothing lost and no duplicate are checked (a duplicate would only come from a retry).

    python benchmarks/webhooks.py            # --n 10000 --rate 600 --per-txn 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

RECEIVER = r"""
import asyncio, sys, time
lines = []
def flush():
    if lines:
        sys.stdout.write("".join(lines))
        sys.stdout.flush()
        lines.clear()
    loop.call_later(0.02, flush)
class Receiver(asyncio.Protocol):
    # HTTP/1.1 keep-alive, just enough of it: a head, a content-length body, a 200 answer
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""
    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            fields = dict(h.split(":", 1) for h in head[1:])
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            n = int(fields.get("content-length", "0"))
            if len(self.buf) < end + 4 + n:
                return
            body, self.buf = self.buf[end + 4 : end + 4 + n], self.buf[end + 4 + n :]
            t = time.time()
            start = body.find(b'"seq":') + 6
            seq = int(body[start : body.find(b"}", start)])
            lines.append(f"{fields.get('webhook-id', '-')} {seq} {t}\n")
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
loop = asyncio.new_event_loop()
server = loop.run_until_complete(loop.create_server(Receiver, "127.0.0.1", 0, backlog=1024))
print(server.sockets[0].getsockname()[1], flush=True)
loop.call_later(0.02, flush)
loop.run_forever()
"""


class ReceiverProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", RECEIVER], stdout=subprocess.PIPE, text=True
        )
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.lines: list[tuple[str, int, float]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            msg_id, seq, t = line.split()
            self.lines.append((msg_id, int(seq), float(t)))

    def wait(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines) < n and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def baseline(url: str, n: int, concurrency: int) -> float:
    import requests

    local = threading.local()

    def post(seq: int) -> None:
        session = getattr(local, "s", None)
        if session is None:
            session = local.s = requests.Session()
            session.trust_env = False
        body = json.dumps({"type": "bench", "data": {"seq": seq}})
        session.post(url, data=body, headers={"webhook-id": f"base_{seq}"}, timeout=30)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, range(n)))
    return n / (time.perf_counter() - started)


def run_phase(platform, account, receiver, start_seq, n, per_txn, rate) -> dict:
    import resource

    from cynaps_data.server.services import outbox

    commits: dict[int, float] = {}
    before = len(receiver.lines)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.time()
    for first in range(start_seq, start_seq + n, per_txn):
        if rate:
            due = started + (first - start_seq) / rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
        with platform.db.write() as conn:
            for seq in range(first, min(first + per_txn, start_seq + n)):
                outbox.emit(conn, account, "project.state_changed", {"seq": seq})
        t = time.time()
        for seq in range(first, min(first + per_txn, start_seq + n)):
            commits[seq] = t
    committed = time.time()
    receiver.wait(before + n, timeout=300)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    got = receiver.lines[before:]
    seqs = [s for _, s, _ in got]
    ids = [m for m, _, _ in got]
    latency = np.array([t - commits[s] for _, s, t in got if s in commits])
    last = max(t for _, _, t in got) if got else float("nan")
    return {
        "received": len(got),
        "cpu_ms_per_event": 1000 * cpu / n,
        "lost": n - len(set(seqs) & set(commits)),
        "duplicates": len(ids) - len(set(ids)),
        "commit_seconds": committed - started,
        "deliveries_per_s": len(set(seqs)) / (last - min(commits.values())),
        "p50": float(np.percentile(latency, 50)) if latency.size else float("nan"),
        "p99": float(np.percentile(latency, 99)) if latency.size else float("nan"),
        "max": float(latency.max()) if latency.size else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=600.0, help="paced phase, events/s")
    parser.add_argument("--per-txn", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    from cynaps_data.server.platform import LocalPlatform
    from cynaps_data.server.services import webhooks
    from cynaps_data.server.settings import Settings

    receiver = ReceiverProcess()
    try:
        direct = baseline(receiver.url, args.n, args.concurrency)
        receiver.lines.clear()
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                database_url=f"sqlite:///{Path(tmp) / 'bench.db'}",
                webhook_allow_loopback=True,
                webhook_concurrency=args.concurrency,
                workforce=None,
            )
            with LocalPlatform(settings=settings, workforce=False) as platform:
                from cynaps_data.server.services.accounts import authenticate

                key = platform.create_customer()
                account = authenticate(platform.db, f"Bearer {key}").account_id
                webhooks.create(platform.db, settings, account, {"url": receiver.url})
                burst = run_phase(platform, account, receiver, 0, args.n, args.per_txn, None)
                paced = run_phase(
                    platform, account, receiver, args.n, args.n, args.per_txn, args.rate
                )
    finally:
        receiver.stop()

    print(f"events per phase: {args.n:,}  per transaction: {args.per_txn}  ")
    print(f"baseline: requests -> receiver, {args.concurrency} threads: {direct:,.0f} posts/s")
    for name, r in (("burst", burst), (f"paced {args.rate:g}/s", paced)):
        print(
            f"{name:<12}: {r['deliveries_per_s']:,.0f} deliveries/s "
            f"(ratio {r['deliveries_per_s'] / direct:.2f} of baseline)  "
            f"commit-to-receipt p50 {r['p50']:.3f} s  p99 {r['p99']:.3f} s  max {r['max']:.3f} s  "
            f"committed in {r['commit_seconds']:.2f} s  lost {r['lost']}  duplicates {r['duplicates']}  "
            f"platform CPU {r['cpu_ms_per_event']:.2f} ms/event (commit + relay + send + record)"
        )
    ok = (
        burst["deliveries_per_s"] >= 500
        and paced["p99"] < 2
        and burst["lost"] == paced["lost"] == 0
        and burst["duplicates"] == paced["duplicates"] == 0
    )
    print(
        "targets (>= 500 deliveries/s, p99 < 2 s paced, nothing lost, no duplicate):",
        "met" if ok else "MISSED",
    )


if __name__ == "__main__":
    main()
