"""The webhook delivery worker: a thread of every platform process (``cynaps serve``,
``Client.local()``, each ``--workers`` process).

Loop: relay the outbox into messages, claim due deliveries, send them concurrently (a pool of
``webhook_concurrency`` threads, each with its own SSRF-checked :class:`..net.Sender`), record
the outcomes. Pipelined: while one claimed batch is being sent and recorded, the loop relays and
claims the next (at most :data:`MAX_BATCHES_IN_FLIGHT`); a batch's deliveries are leased, so no
other pass claims them meanwhile. Idle, it looks again every ``webhook_poll_seconds``. Also flushes the API keys'
``last_used_at`` (kept in memory by authentication) every few seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait

from ..webhooks import sign
from . import net
from .db import Database
from .services import api_keys
from .services import webhook_delivery as delivery
from .services.webhooks import box
from .settings import Settings

log = logging.getLogger("cynaps_data.server.webhooks")
USER_AGENT = "Cynaps-Webhooks/1"
CLAIM_BATCH = 256
#: claimed batches being sent or recorded at once (the loop claims the next while one is out)
MAX_BATCHES_IN_FLIGHT = 2
FLUSH_SECONDS = 5.0


class WebhookWorker:
    """Start with :meth:`start`, stop with :meth:`stop` (waits for the loop to finish)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._recorder: ThreadPoolExecutor | None = None
        self._in_flight: deque[Future] = deque()
        self._senders: list[net.Sender] = []
        self._secrets: dict[tuple[str, str], str] = {}

    def start(self) -> WebhookWorker:
        self._pool = ThreadPoolExecutor(
            max(1, self.settings.webhook_concurrency), thread_name_prefix="cynaps-webhook-send"
        )
        self._recorder = ThreadPoolExecutor(1, thread_name_prefix="cynaps-webhook-record")
        self._thread = threading.Thread(target=self._run, name="cynaps-webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.webhook_timeout_seconds + 5)
            self._thread = None
        self.drain()
        if self._recorder is not None:
            self._recorder.shutdown(wait=True)
            self._recorder = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for sender in self._senders:
            sender.close()

    def _run(self) -> None:
        flushed = time.monotonic()
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # keep delivering; the next pass retries
                log.exception("webhook worker pass failed")
                busy = False
            if time.monotonic() - flushed > FLUSH_SECONDS:
                flushed = time.monotonic()
                try:
                    api_keys.flush_last_used(self.db)
                except Exception:
                    log.exception("flushing API key last_used_at failed")
            if not busy:
                self._stop.wait(self.settings.webhook_poll_seconds)

    def run_once(self) -> bool:
        """One pass: relay, claim a batch and start sending it (its outcomes are recorded when
        it is done; :meth:`drain` waits for that). ``True`` if there was anything to do."""
        while self._in_flight and (
            self._in_flight[0].done() or len(self._in_flight) >= MAX_BATCHES_IN_FLIGHT
        ):
            self._in_flight.popleft().result()
        lease = self.settings.webhook_lease_seconds
        relayed, jobs = delivery.relay(self.db, lease, CLAIM_BATCH)
        if len(jobs) < CLAIM_BATCH:
            jobs += delivery.claim(self.db, CLAIM_BATCH - len(jobs), lease)
        if jobs:
            assert self._pool is not None and self._recorder is not None
            # one task per sending thread (round robin), not one per job: fewer futures
            n = max(1, min(self.settings.webhook_concurrency, len(jobs)))
            sends = [self._pool.submit(self._attempt_all, jobs[i::n]) for i in range(n)]
            self._in_flight.append(self._recorder.submit(self._record, sends))
        return bool(relayed or jobs)

    def drain(self) -> None:
        """Wait until every batch started is sent and recorded."""
        while self._in_flight:
            try:
                self._in_flight.popleft().result()
            except Exception:
                log.exception("recording webhook attempts failed")

    def _record(self, sends: list[Future]) -> None:
        """Record a batch's outcomes once all of its sends are done. If recording fails, the
        deliveries stay leased and are sent again after the lease (at-least-once)."""
        wait(sends)
        outcomes = [o for f in sends for o in f.result()]
        delivery.record(self.db, outcomes, self.settings.webhook_retry_scale)

    def _sender(self) -> net.Sender:
        sender = getattr(self._local, "sender", None)
        if sender is None:
            s = self.settings
            sender = net.Sender(
                s.webhook_timeout_seconds, s.webhook_max_response_bytes, s.webhook_allow_loopback
            )
            self._local.sender = sender
            self._senders.append(sender)
        return sender

    def _secret(self, endpoint_id: str, sealed: str) -> str:
        key = (endpoint_id, sealed)
        secret = self._secrets.get(key)
        if secret is None:
            if len(self._secrets) > 10_000:
                self._secrets.clear()
            secret = self._secrets[key] = box(self.settings).open(sealed, endpoint_id)
        return secret

    def _attempt_all(self, jobs: list[delivery.Job]) -> list[delivery.Outcome]:
        return [self._attempt(job) for job in jobs]

    def _attempt(self, job: delivery.Job) -> delivery.Outcome:
        started = time.monotonic()
        now = time.time()
        body = job.body.encode()
        stamp = int(now)
        signatures = [
            sign(job.message_id, stamp, body, self._secret(job.endpoint_id, job.secret_enc))
        ]
        if job.old_secret_enc is not None:
            old = self._secret(job.endpoint_id, job.old_secret_enc)
            signatures.append(sign(job.message_id, stamp, body, old))
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": job.message_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": " ".join(signatures),
        }
        status = error = response = retry_after = None
        try:
            s = self.settings
            target = net.check_url(
                job.url, https_only=not s.sandbox, allow_loopback=s.webhook_allow_loopback
            )
            answer = self._sender().post(target, body, headers)
        except net.Refused as exc:
            error = f"refused: {exc}"
        except TimeoutError as exc:
            error = f"timeout: {exc}" if str(exc) else "timeout"
        except Exception as exc:  # connection refused, TLS, protocol errors: retried
            error = f"{type(exc).__name__}: {exc}"
        else:
            status = answer.status
            response = answer.head[:256].decode("utf-8", "replace")
            if answer.truncated:
                response = response[:240] + " …(truncated)"
            retry_after = delivery.parse_retry_after(answer.retry_after, now)
            if 300 <= status < 400:
                error = "redirects are not followed"
        return delivery.Outcome(
            job,
            status,
            error[:300] if error else None,
            (time.monotonic() - started) * 1000,
            response,
            retry_after,
            now,
        )
