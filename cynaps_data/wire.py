"""Wire constants shared by the client, ``io`` and the platform (stdlib only, defined once).

Both sides import these names; changing one changes the protocol, so a value here is never
redefined elsewhere.
"""

from __future__ import annotations

# -- media types -----------------------------------------------------------------------------
#: an Arrow IPC stream: task batches sent by the typed uploader, table exports read back
ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON = "application/json"

# -- Arrow schema / stream metadata keys -----------------------------------------------------
#: the uploaded table's source schema (JSON), on the first batch of an upload
SOURCE_SCHEMA_KEY = b"cynaps.source_schema"
#: the project description (JSON) in an exported stream's schema metadata
PROJECT_KEY = b"cynaps.project"
#: the next ``since`` cursor, on an export stream's closing empty batch
CURSOR_KEY = b"cynaps.cursor"
#: on a batch that tells the reader to drop what it read and read the stream again
RESTART_KEY = b"cynaps.restart"

# -- HTTP headers ----------------------------------------------------------------------------
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: the longest Idempotency-Key the platform accepts (characters)
MAX_IDEMPOTENCY_KEY = 255
REQUEST_ID_HEADER = "X-Request-Id"
#: the sha256 (hex) of an uploaded asset's bytes
CONTENT_SHA256_HEADER = "X-Content-SHA256"

# -- payment methods -------------------------------------------------------------------------
#: outside methods; in sandbox mode every one is simulated (``livemode: false``)
SIMULATED_PAYMENT_METHODS = frozenset(
    {"razorpay", "card", "stripe", "bank_transfer", "upi", "paypal"}
)
#: pay from the customer's credit balance
CREDITS_METHOD = "credits"
#: sandbox test methods that always decline
DECLINING_PAYMENT_METHODS = frozenset({"test_decline"})
PAYMENT_METHODS = SIMULATED_PAYMENT_METHODS | DECLINING_PAYMENT_METHODS | {CREDITS_METHOD}

# -- quality settings ------------------------------------------------------------------------
#: ``min_annotators`` / ``max_annotators`` lie in this closed range
MIN_ANNOTATORS = 1
MAX_ANNOTATORS = 50

# -- batches and bodies ----------------------------------------------------------------------
#: rows per upload batch the client sends by default
DEFAULT_BATCH_SIZE = 50_000
#: tasks per import batch (Label Studio / JSON imports) the client sends by default
DEFAULT_IMPORT_BATCH_SIZE = 20_000
#: the most tasks the platform takes in one batch (``Settings.max_batch_tasks`` default)
MAX_BATCH_TASKS = 100_000
#: the largest request body the platform takes (``Settings.max_body_bytes`` default)
MAX_BODY_BYTES = 256 * 1024 * 1024
#: the client halves a batch until its body is under this (well below the platform's limit)
CLIENT_BODY_BYTES = 64 * 1024 * 1024
