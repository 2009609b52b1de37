"""pandas, pyarrow, Parquet and ``datasets`` conversions (never imports the client).

:mod:`.schema` encodes task data to JSON and restores the source dtypes; :mod:`.ingest` turns
DataFrames, Parquet files and Hugging Face datasets into task batches.
"""

from __future__ import annotations

from .schema import (
    features_from,
    restore_columns,
    restore_frame,
    source_schema_from,
    table_from_wire,
)

__all__ = [
    "features_from",
    "restore_columns",
    "restore_frame",
    "source_schema_from",
    "table_from_wire",
]
