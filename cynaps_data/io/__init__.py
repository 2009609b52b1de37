"""pandas, pyarrow, Parquet and ``datasets`` conversions (never imports the client).

:mod:`.schema` encodes task data to JSON and restores the source dtypes; :mod:`.sources` reads
DataFrames, Parquet, CSV/JSONL files and Hugging Face datasets as Arrow batches, :mod:`.encoder`
turns batches into the tasks' JSON text, :mod:`.uploader` checks and sends them; :mod:`.export`
reads a project back as a typed table.
"""

from __future__ import annotations

from ..types.multi_label import multi_hot
from ..types.spans_views import to_conll, token_classification
from .export import soft_labels
from .schema import (
    features_from,
    restore_columns,
    restore_frame,
    source_schema_from,
    table_from_wire,
)

__all__ = [
    "features_from",
    "multi_hot",
    "restore_columns",
    "restore_frame",
    "soft_labels",
    "source_schema_from",
    "table_from_wire",
    "to_conll",
    "token_classification",
]
