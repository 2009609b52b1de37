"""Task shards: EM steps run on fixed blocks of tasks, on threads where the machine has cores.

Data contract
-------------
:func:`task_shards` cuts a task x column CSR incidence matrix ``A`` into consecutive row blocks
of :data:`SHARD_ROWS` tasks (the last one shorter). Each :class:`Shard` holds zero-copy views:
its rows of ``A`` (CSR) and their transpose (CSC), so one shard's E-step reads only its tasks and
its M-step contribution ``A_s.T @ q_s`` is a small ``(columns, K)`` array. Shard boundaries
depend only on the number of tasks, never on the number of threads, and the caller adds the
shards' contributions in shard order, so a fit gives bit-identical results for every
``n_jobs``.

numpy's ufuncs and scipy's sparse kernels release the GIL, so shards run in parallel on plain
threads (no processes, no copies). A block of 65,536 tasks keeps one shard's posteriors
(~2.6 MB at K=5) in cache between its softmax and its M-step product.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import scipy.sparse as sp

from ..errors import ValidationError

__all__ = ["SHARD_ROWS", "Shard", "task_shards", "resolve_n_jobs", "shard_runner"]

#: tasks per shard (fixed, so that results never depend on the thread count) ...
SHARD_ROWS = 65_536
#: ... unless that makes more shards than this (then ceil(n_tasks / MAX_SHARDS) rows each), so
#: the per-shard (columns, K) contributions stay few
MAX_SHARDS = 16
#: below this many answers ``n_jobs=None`` runs on one thread (threads would cost more)
AUTO_MIN_ANSWERS = 200_000
#: ``n_jobs=None`` uses at most this many threads
AUTO_MAX_THREADS = 4

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Rows ``start:stop`` of the incidence matrix: ``a`` (CSR view) and ``at`` (its CSC
    transpose, also a view)."""

    start: int
    stop: int
    a: sp.csr_matrix
    at: sp.csc_matrix


def task_shards(a: sp.csr_matrix) -> list[Shard]:
    """Consecutive row blocks of ``a`` (CSR, canonical) as zero-copy :class:`Shard` views; the
    block size depends only on ``a.shape[0]``."""
    a = a.tocsr()
    n = a.shape[0]
    rows = max(SHARD_ROWS, -(-n // MAX_SHARDS))
    out = []
    for start in range(0, max(n, 1), rows):
        stop = min(start + rows, n)
        p0, p1 = int(a.indptr[start]), int(a.indptr[stop])
        block = sp.csr_matrix(
            (a.data[p0:p1], a.indices[p0:p1], a.indptr[start : stop + 1] - p0),
            shape=(stop - start, a.shape[1]),
            copy=False,
        )
        out.append(Shard(start, stop, block, block.T))
    return out


def resolve_n_jobs(n_jobs: int | None, n_answers: int, n_shards: int) -> int:
    """Threads to use: ``None`` = automatic (1 below :data:`AUTO_MIN_ANSWERS` answers, else the
    machine's cores up to :data:`AUTO_MAX_THREADS`); ``-1`` = all cores; never more than the
    shards."""
    if n_jobs is None:
        cores = os.cpu_count() or 1
        n = 1 if n_answers < AUTO_MIN_ANSWERS else min(cores, AUTO_MAX_THREADS)
    elif isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ValidationError(
            f"n_jobs must be a positive int, -1 (all cores) or None (automatic), got {n_jobs!r}",
            param="n_jobs",
        )
    elif n_jobs == -1:
        n = os.cpu_count() or 1
    else:
        n = n_jobs
    return max(1, min(n, n_shards))


@contextmanager
def shard_runner(
    n_threads: int,
) -> Iterator[Callable[[Callable[[Shard], T], list[Shard]], Iterator[T]]]:
    """Yields ``run(fn, shards)``, an iterator over ``fn(s)`` for each shard *in shard order*
    (consume it to add the contributions up deterministically), on a pool of ``n_threads``
    threads that lives as long as the ``with`` block (one thread: no pool, computed lazily)."""
    if n_threads <= 1:
        yield lambda fn, shards: (fn(s) for s in shards)
        return
    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="cynaps-em") as pool:

        def run(fn: Callable[[Shard], Any], shards: list[Shard]) -> Iterator[Any]:
            return pool.map(fn, shards)

        yield run
