"""Repeated ids in an upload, found in bounded memory.

Data contract: :func:`id_keys` maps one batch's id column to one ``uint64`` key per row (the
value itself for integer ids, a hash for the rest; a null id gets a key of its own row, never a
repeat). :class:`IdKeys` collects the keys of a whole source and answers
:meth:`IdKeys.repeated`: the keys seen more than once (sorted, unique). A key that repeats may
still be a hash collision: the caller confirms on the real values.

Memory: 8 bytes a row while the source is small (up to :data:`SPILL_ROWS` rows: 128 MB); past
that, the keys go to :data:`BUCKETS` temporary files by a hash of the key (a private temporary
directory, removed afterwards) and each bucket is sorted on its own, so a 100M-row source is
checked in about 50 MB (one bucket) instead of 800 MB.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

__all__ = ["BUCKETS", "SPILL_ROWS", "IdKeys", "id_keys"]

#: Rows kept in memory before the keys spill to bucket files.
SPILL_ROWS = 16_000_000
#: Bucket files when spilling (the top 4 bits of the key times a Fibonacci-hashing constant,
#: so small integer ids spread over every bucket too).
BUCKETS = 16
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def id_keys(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One 64-bit key per row of an id column (``uint64``)."""
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_integer(col.type):
        # uint64 ids keep their bits (past 2**63 a cast to int64 overflows); the rest as int64
        wide = col if col.type == pa.uint64() else col.cast(pa.int64())
        keys = wide.fill_null(0).to_numpy().view(np.uint64).copy()
    else:
        from pandas.util import hash_array

        keys = hash_array(col.to_numpy(zero_copy_only=False), categorize=False)
    nulls = col.is_null().to_numpy(zero_copy_only=False)
    if nulls.any():  # unique per row: the high bit is never set by small row numbers' complement
        keys[nulls] = ~np.flatnonzero(nulls).astype(np.uint64)
    return keys


class IdKeys:
    """The keys of a whole source, in memory (preallocated when the row count is known) or,
    past ``spill_rows`` rows, in ``buckets`` temporary files; :meth:`repeated` answers once and
    frees everything. Use as a context manager (or call :meth:`close`) so the files go."""

    def __init__(
        self, num_rows: int | None, *, spill_rows: int | None = None, buckets: int = BUCKETS
    ) -> None:
        self.spill_rows = SPILL_ROWS if spill_rows is None else spill_rows
        self.shift = np.uint64(64 - max(1, int(buckets - 1).bit_length()))
        self.n_buckets = 1 << (64 - int(self.shift))
        known = num_rows is not None and 0 < num_rows <= self.spill_rows
        self.buffer = np.empty(num_rows, dtype=np.uint64) if known else None
        self.parts: list[np.ndarray] = []
        self.size = 0
        self.directory: Path | None = None

    def __enter__(self) -> IdKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, keys: np.ndarray) -> None:
        """Append one batch's keys (row order)."""
        end = self.size + len(keys)
        if self.directory is not None:
            self._spill(keys)
        elif self.buffer is not None and end <= len(self.buffer):
            self.buffer[self.size : end] = keys
        else:
            if self.buffer is not None:
                self.parts.append(self.buffer[: self.size])
                self.buffer = None
            self.parts.append(keys)
            if end > self.spill_rows:
                self._start_spilling()
        self.size = end

    def repeated(self) -> np.ndarray:
        """The keys seen more than once (sorted, unique ``uint64``); frees the collector."""
        try:
            if self.directory is None:
                if self.buffer is not None:
                    keys = self.buffer[: self.size]
                else:
                    keys = np.concatenate(self.parts) if self.parts else np.empty(0, np.uint64)
                self.buffer, self.parts = None, []
                return _repeats(keys)
            found = [
                _repeats(np.fromfile(path, dtype=np.uint64))
                for path in sorted(self.directory.iterdir())
            ]
            return np.sort(np.concatenate(found)) if found else np.empty(0, np.uint64)
        finally:
            self.close()

    def close(self) -> None:
        self.buffer, self.parts, self.size = None, [], 0
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def _start_spilling(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="cynaps-ids-"))  # mode 0700
        parts, self.parts = self.parts, []
        for keys in parts:
            self._spill(keys)

    def _spill(self, keys: np.ndarray) -> None:
        assert self.directory is not None
        bucket = (np.multiply(keys, _GOLDEN) >> self.shift).astype(np.intp)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(self.n_buckets + 1))
        ordered = keys[order]
        for b in range(self.n_buckets):
            lo, hi = bounds[b], bounds[b + 1]
            if hi > lo:
                with open(self.directory / f"{b:04d}.u64", "ab") as f:
                    ordered[lo:hi].tofile(f)


def _repeats(keys: np.ndarray) -> np.ndarray:
    """The values of ``keys`` that occur more than once (sorted, unique); sorts in place."""
    if keys.size < 2:
        return np.empty(0, np.uint64)
    keys.sort()
    repeated = keys[1:] == keys[:-1]
    return np.unique(keys[1:][repeated]) if repeated.any() else np.empty(0, np.uint64)
