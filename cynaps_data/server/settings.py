"""Platform settings (built explicitly by callers; nothing is read at import)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..wire import MAX_BATCH_TASKS, MAX_BODY_BYTES


@dataclass
class WorkforceSettings:
    """The sandbox workforce: simulated people who use the annotator API over HTTP."""

    annotators: int = 5
    experts: int = 1
    seconds_per_judgement: float = 0.3
    accuracy: tuple[float, float] = (0.75, 0.95)  # each annotator's accuracy drawn from this range
    expert_accuracy: float = 0.98
    seed: int = 0


@dataclass
class RateLimit:
    """Token bucket per API key: ``burst`` requests at once, refilled at ``per_second``."""

    per_second: float = 200.0
    burst: int = 400


#: default ``annotator_lanes`` on PostgreSQL (measured in benchmarks/annotate.py)
PG_ANNOTATOR_LANES = 8


@dataclass
class Settings:
    database_url: str
    sandbox: bool = True
    starting_credits_cents: int = 1_000_000  # 10,000.00 Credits for a new sandbox customer
    max_batch_tasks: int = MAX_BATCH_TASKS
    max_body_bytes: int = MAX_BODY_BYTES
    #: each part of a request body must arrive within this many seconds (408 otherwise)
    body_timeout_seconds: float = 15.0
    assignment_ttl_seconds: float = 600.0
    #: annotator requests (next, submit, review) in flight at once per platform process;
    #: ``None``: 1 on SQLite (one writer at a time; a single lane spares the lock holder the
    #: GIL queue), :data:`PG_ANNOTATOR_LANES` on PostgreSQL (row locks, many writers)
    annotator_lanes: int | None = None
    rate_limit: RateLimit = field(default_factory=RateLimit)
    workforce: WorkforceSettings | None = field(default_factory=WorkforceSettings)
    asset_dir: str | None = None
    #: an Idempotency-Key whose request has run this long without an answer may be taken over
    idempotency_takeover_seconds: float = 60.0
    # -- webhooks (issue 17; docs/webhooks.md, docs/configuration.md) --
    #: deliver to loopback addresses (127.0.0.0/8, ::1): local development only; off by default,
    #: on in ``Client.local()``; shown at ``GET /v1/webhooks/settings``
    webhook_allow_loopback: bool = False
    #: the Standard Webhooks retry schedule is multiplied by this (e.g. 0.001 in tests)
    webhook_retry_scale: float = 1.0
    webhook_timeout_seconds: float = 10.0  # connect + send + answer, per attempt
    webhook_max_response_bytes: int = 64 * 1024  # read at most this much of an answer
    webhook_concurrency: int = 16  # deliveries in flight per platform process
    webhook_poll_seconds: float = 0.1  # how often an idle worker looks for work
    #: a claimed delivery not answered within this is taken up again (a crashed process)
    webhook_lease_seconds: float = 60.0
    webhook_worker: bool = True  # run the delivery worker in this process
    #: the 32-byte key that encrypts webhook secrets at rest (created 0600 if missing);
    #: default ``<sqlite file>-platform.key`` or ``~/.cynaps/platform.key``
    platform_key_file: str | None = None

    def __post_init__(self) -> None:
        lanes = self.annotator_lanes
        if lanes is not None and (
            isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1
        ):
            raise ValueError(f"annotator_lanes must be an integer >= 1 (got {lanes!r})")

    def to_json(self) -> str:
        """These settings as JSON (for another process; ``workforce`` included)."""
        import json
        from dataclasses import asdict

        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """The inverse of :meth:`to_json`."""
        import json

        options = json.loads(text)
        options["rate_limit"] = RateLimit(**options["rate_limit"])
        if options.get("workforce") is not None:
            workforce = options["workforce"]
            workforce["accuracy"] = tuple(workforce["accuracy"])
            options["workforce"] = WorkforceSettings(**workforce)
        return cls(**options)
