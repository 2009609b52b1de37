"""PostgreSQL task assignment for several server processes: ``FOR UPDATE SKIP LOCKED``.

On SQLite every assignment runs under the database's single write lock, so the candidate query
(a task whose judgements plus live assignments are fewer than it needs) cannot race. On
PostgreSQL (READ COMMITTED) two transactions, in the same or in different ``cynaps serve``
processes, could both read the same candidate before either commits its assignment and hand
the task out once too often. :func:`candidate` prevents it:

1. the candidate row is locked with ``FOR UPDATE OF t SKIP LOCKED``: a concurrent assigner
   skips a task being assigned instead of waiting for it (submits lock the same row, so a
   judgement and an assignment of one task also take turns);
2. once the lock is held, the task's count is read again by a new statement (a fresh snapshot,
   which sees every assignment committed before the lock was granted); a task that no longer
   needs anyone is passed over and the next one, in queue order (``queue_order``, then id; id
   order in a fixed-overlap project), is tried.

Data contract: the same ``(id, data, predictions)`` row as the in-process candidate query, or
``None``; ``raw`` is a :class:`~cynaps_data.server.services.fastsql.Raw` inside the caller's
write transaction.
"""

from __future__ import annotations

from typing import Any

__all__ = ["candidate", "CANDIDATE_SQL", "RECHECK_SQL"]

#: (id, data, predictions, queue_order) of the next candidate after ``(:after_order, :after)``
#: in queue order (``queue_order``, then id), locked, or nothing
CANDIDATE_SQL = (
    "SELECT t.id, t.data, t.predictions, t.queue_order FROM tasks t WHERE t.project_id = :pid"
    " AND t.status = 'pending' AND (t.queue_order, t.id) > (:after_order, :after)"
    " AND t.n_judgements"
    " + (SELECT count(*) FROM assignments a WHERE a.task_id = t.id AND a.expires_at > :now) < t.needed"
    " AND NOT EXISTS (SELECT 1 FROM judgements j WHERE j.task_id = t.id AND j.annotator_id = :me)"
    " AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.task_id = t.id AND s.annotator_id = :me)"
    " AND NOT EXISTS (SELECT 1 FROM assignments m WHERE m.task_id = t.id AND m.annotator_id = :me)"
    " ORDER BY t.queue_order, t.id LIMIT 1 FOR UPDATE OF t SKIP LOCKED"
)
#: whether the locked task still needs one more annotator (read in a fresh snapshot)
RECHECK_SQL = (
    "SELECT t.status = 'pending' AND t.n_judgements"
    " + (SELECT count(*) FROM assignments a WHERE a.task_id = t.id AND a.expires_at > :now)"
    " < t.needed FROM tasks t WHERE t.id = :task"
)


def candidate(raw: Any, project_id: str, me: str, now: float) -> tuple | None:
    """The next task of ``project_id`` to assign to ``me``, locked for this transaction."""
    after_order, after = float("-inf"), -1
    while True:
        row = raw.run(
            CANDIDATE_SQL,
            {"pid": project_id, "me": me, "now": now, "after": after, "after_order": after_order},
        ).fetchone()
        if row is None:
            return None
        if raw.run(RECHECK_SQL, {"task": row[0], "now": now}).fetchone()[0]:
            return row[:3]
        after_order, after = row[3], row[0]
