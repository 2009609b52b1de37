"""The platform's schema (SQLAlchemy Core). Money is stored as integer cents."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # acct_…
    sa.Column("role", sa.String(16), nullable=False),  # customer | annotator | expert | admin
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("owner_id", sa.String(40), nullable=True),  # team owner for annotators/experts
    sa.Column("sandbox", sa.Boolean, nullable=False, default=True),
    sa.Column("simulated", sa.Boolean, nullable=False, default=False),  # sandbox workforce member
    sa.Column("created_at", sa.Float, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),  # SHA-256 hex of the whole key
    sa.Column("prefix", sa.String(24), nullable=False),  # shown in listings, e.g. sk_test_AbC1
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # invite session keys expire (migration 0007); null: the key does not expire
    sa.Column("expires_at", sa.Float, nullable=True),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # proj_…
    sa.Column("owner_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False, index=True),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("annotation_type", sa.String(40), nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("instructions", sa.Text, nullable=False, default=""),
    sa.Column("quality_settings", sa.JSON, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("source_schema", sa.JSON, nullable=True),  # Arrow/datasets schema of uploads
    sa.Column("deposit_cents", sa.BigInteger, nullable=True),  # quote fixed at payment
    # tasks in the project, kept by every insert of tasks (migration 0006)
    sa.Column("task_count", sa.BigInteger, nullable=False, default=0, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

#: Ends each entry of ``tasks.vote_values`` / ``tasks.vote_workers`` (U+001E, record separator).
VOTE_SEPARATOR = "\x1e"

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(40), nullable=False),
    sa.Column("external_id", sa.String(200), nullable=True),
    sa.Column("data", sa.Text, nullable=False),  # JSON object text
    sa.Column("gold", sa.Text, nullable=True),  # JSON value text
    sa.Column("predictions", sa.Text, nullable=True),  # JSON text
    # pending -> (disputed) -> completed
    sa.Column("status", sa.String(12), nullable=False, default="pending"),
    sa.Column("n_judgements", sa.Integer, nullable=False, default=0),
    sa.Column("needed", sa.Integer, nullable=False),  # judgements wanted now
    sa.Column("final_label", sa.Text, nullable=True),  # JSON value text
    sa.Column("label_source", sa.String(12), nullable=True),  # consensus | expert | majority
    sa.Column("agreement", sa.Float, nullable=True),
    sa.Column("charged", sa.Boolean, nullable=False, default=False),
    sa.Column("released", sa.Boolean, nullable=False, default=False),
    sa.Column("updated_at", sa.Float, nullable=False, default=0.0),
    # Vote summary (issue 5, kept with every judgement so the wide export never re-reads them):
    # the annotator votes' JSON values and annotator ids in judgement order, each followed by
    # U+001E; the last expert judgement's value and id.
    sa.Column("vote_values", sa.Text, nullable=False, default="", server_default=""),
    sa.Column("vote_workers", sa.Text, nullable=False, default="", server_default=""),
    sa.Column("expert_value", sa.Text, nullable=True),
    sa.Column("expert_worker", sa.String(40), nullable=True),
    sa.UniqueConstraint("project_id", "external_id", name="uq_task_external_id"),
    sa.Index("ix_tasks_project_status", "project_id", "status"),
    # charged tasks not yet released to the annotators: the export's "anything owed?" check
    sa.Index(
        "ix_tasks_unreleased",
        "project_id",
        sqlite_where=sa.text("charged = 1 AND released = 0"),
        postgresql_where=sa.text("charged AND NOT released"),
    ),
)

judgements = sa.Table(
    "judgements",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.Integer, nullable=False),
    sa.Column("project_id", sa.String(40), nullable=False, index=True),
    sa.Column("annotator_id", sa.String(40), nullable=False),
    sa.Column("role", sa.String(12), nullable=False),  # annotator | expert
    sa.Column("value", sa.Text, nullable=False),  # JSON value text
    sa.Column("duration", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    # Billing per judgement (issue 5): charged into escrow / paid out to the annotator. Imported
    # judgements (origin "imported", e.g. from Label Studio) are neither platform work nor billed.
    sa.Column("billed", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("paid", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column(
        "origin", sa.String(12), nullable=False, default="platform", server_default="platform"
    ),
    sa.UniqueConstraint("task_id", "annotator_id", name="uq_judgement_once"),
)

assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("task_id", sa.Integer, primary_key=True),
    sa.Column("annotator_id", sa.String(40), primary_key=True),
    sa.Column("project_id", sa.String(40), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_assignments_annotator", "annotator_id"),
    sa.Index("ix_assignments_expires", "expires_at"),
)

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("txn_id", sa.String(40), nullable=False, index=True),
    sa.Column("account", sa.String(80), nullable=False, index=True),  # e.g. customer:acct_…
    sa.Column("amount_cents", sa.BigInteger, nullable=False),  # signed; each txn sums to 0
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("project_id", sa.String(40), nullable=True, index=True),
    sa.Column("memo", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Derived from ledger_entries and updated in the same transaction as every posting, so a balance
# is one row read instead of a sum over an account's whole history (migration 0004).
ledger_balances = sa.Table(
    "ledger_balances",
    metadata,
    sa.Column("account", sa.String(80), primary_key=True),
    sa.Column("balance_cents", sa.BigInteger, nullable=False),
)

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # pay_…
    sa.Column("account_id", sa.String(40), nullable=False, index=True),
    sa.Column("project_id", sa.String(40), nullable=True),
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # succeeded | declined
    sa.Column("livemode", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),  # api key hash
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),  # null while in flight
    sa.Column("response_body", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    # fencing token of the attempt that owns the key, and whether that attempt's database
    # effects committed (set inside the same transaction as the effects; migration 0002)
    sa.Column("claim", sa.String(32), nullable=True),
    sa.Column("committed", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
)

# Annotator workbench (issue 6): skipped tasks are not offered to that annotator again.
skips = sa.Table(
    "skips",
    metadata,
    sa.Column("task_id", sa.Integer, primary_key=True),
    sa.Column("annotator_id", sa.String(40), primary_key=True),
    sa.Column("project_id", sa.String(40), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# One-time invite tokens (stored as SHA-256), exchanged for an annotator/expert session key.
invites = sa.Table(
    "invites",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("redeemed_at", sa.Float, nullable=True),
)

# Image assets (issue 4): content-addressed files under settings.asset_dir, linked to projects.
assets = sa.Table(
    "assets",
    metadata,
    sa.Column("project_id", sa.String(40), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("content_type", sa.String(40), nullable=False),  # image/png|jpeg|gif|webp
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # pixel size from the image header (migration 0010; null for assets stored before it)
    sa.Column("width", sa.Integer, nullable=True),
    sa.Column("height", sa.Integer, nullable=True),
)

# -- API keys as a resource, webhooks (issue 17; migration 0008) ---------------------------------
# api_keys gains: id (key_…), name, last_used_at, revoked_at (see the migration; expires_at
# came with 0007).
api_keys.append_column(sa.Column("id", sa.String(40), nullable=True))
api_keys.append_column(sa.Column("name", sa.String(200), nullable=True))
api_keys.append_column(sa.Column("last_used_at", sa.Float, nullable=True))
api_keys.append_column(sa.Column("revoked_at", sa.Float, nullable=True))
sa.Index("ix_api_keys_id", api_keys.c.id, unique=True)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # we_…
    sa.Column("account_id", sa.String(40), nullable=False, index=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("description", sa.String(500), nullable=False, default=""),
    sa.Column("project_id", sa.String(40), nullable=True),  # only this project's events
    sa.Column("event_types", sa.JSON, nullable=True),  # null: every event type
    # whsec_ secrets, AES-GCM encrypted with the platform key (never stored in clear)
    sa.Column("secret_enc", sa.Text, nullable=False),
    sa.Column("old_secret_enc", sa.Text, nullable=True),  # during a rotation's grace period
    sa.Column("old_secret_expires_at", sa.Float, nullable=True),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("disabled_reason", sa.String(300), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Events written in the same transaction as the change that causes them; the delivery worker
# turns them into messages (batching task events) and deletes them.
webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("event_type", sa.String(60), nullable=False),
    sa.Column("project_id", sa.String(40), nullable=True),
    sa.Column("data", sa.Text, nullable=False),  # JSON object text
    sa.Column("created_at", sa.Float, nullable=False),
)

webhook_messages = sa.Table(
    "webhook_messages",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # msg_… (the webhook-id header)
    sa.Column("account_id", sa.String(40), nullable=False, index=True),
    sa.Column("event_type", sa.String(60), nullable=False),
    sa.Column("project_id", sa.String(40), nullable=True),
    sa.Column("body", sa.Text, nullable=False),  # the exact JSON payload that is signed
    sa.Column("created_at", sa.Float, nullable=False),  # commit time of its (first) event
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(40), nullable=False),
    sa.Column("endpoint_id", sa.String(40), nullable=False, index=True),
    sa.Column("status", sa.String(12), nullable=False),  # pending | succeeded | failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),  # also the lease of a claimed one
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.UniqueConstraint("message_id", "endpoint_id", name="uq_delivery_once"),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("endpoint_id", sa.String(40), nullable=False),
    sa.Column("message_id", sa.String(40), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),  # 1, 2, … per delivery
    sa.Column("status_code", sa.Integer, nullable=True),  # null: no HTTP answer
    sa.Column("error", sa.String(300), nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("response", sa.String(300), nullable=True),  # first bytes of the answer
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_attempts_endpoint", "endpoint_id", "id"),
)

# -- Adaptive overlap (issue 18; migration 0009) -------------------------------------------------
# tasks gain: stop_reason (why the task stopped collecting judgements; null while it collects),
# queue_order (assignment order within a project, ascending, then id; 0 in fixed-overlap
# projects) and skill_credit (JSON floats: what its voters were credited with in the skill model).
tasks.append_column(sa.Column("stop_reason", sa.String(16), nullable=True))
tasks.append_column(
    sa.Column("queue_order", sa.Float, nullable=False, default=0.0, server_default="0")
)
tasks.append_column(sa.Column("skill_credit", sa.Text, nullable=True))
sa.Index("ix_tasks_queue", tasks.c.project_id, tasks.c.status, tasks.c.queue_order, tasks.c.id)

# The online skill model of a project's annotators (cynaps_data.consensus.online): JSON k × k
# confusion counts (rows: true class, columns: answer) per (project, annotator).
annotator_skills = sa.Table(
    "annotator_skills",
    metadata,
    sa.Column("project_id", sa.String(40), primary_key=True),
    sa.Column("annotator_id", sa.String(40), primary_key=True),
    sa.Column("counts", sa.Text, nullable=False),
    sa.Column("n_judgements", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("updated_at", sa.Float, nullable=False),
)
